import { describe, expect, it, vi } from "vitest";
import { loadConfig } from "./config";

describe("loadConfig", () => {
  it("reads config.json and trims trailing slashes", async () => {
    const f = vi.fn(async () =>
      new Response(JSON.stringify({ ingestUrl: "http://i/", recommenderUrl: "http://r", trainerUrl: "http://t//", publishableKey: "pk" })),
    );
    await expect(loadConfig(f as unknown as typeof fetch)).resolves.toEqual({
      ingestUrl: "http://i",
      recommenderUrl: "http://r",
      trainerUrl: "http://t",
      publishableKey: "pk",
    });
  });

  it("refuses a config without the publishable key", async () => {
    const f = vi.fn(async () => new Response(JSON.stringify({ ingestUrl: "x", recommenderUrl: "y", trainerUrl: "z" })));
    await expect(loadConfig(f as unknown as typeof fetch)).rejects.toThrow(/publishableKey/);
  });
});
