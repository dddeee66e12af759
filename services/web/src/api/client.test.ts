import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiError, buildUrl, request } from "./client";
import { createApi } from "./endpoints";

afterEach(() => vi.unstubAllGlobals());

function stubFetch(status: number, body: unknown) {
  const fn = vi.fn(async (_url: string, _init?: RequestInit) =>
    new Response(body === undefined ? null : JSON.stringify(body), { status }),
  );
  vi.stubGlobal("fetch", fn);
  return fn;
}

describe("buildUrl", () => {
  it("drops empty query values and encodes the rest", () => {
    expect(buildUrl("http://x", "/v1/a", { q: "red kettle", k: 5, c: undefined, d: "" })).toBe(
      "http://x/v1/a?q=red+kettle&k=5",
    );
  });
});

describe("request", () => {
  it("turns the services' error format into an ApiError", async () => {
    stubFetch(422, { error: { code: "invalid_request", message: "k: too big", details: [{ field: "k" }] } });
    const err = await request("http://x", "/v1/a").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 422, code: "invalid_request", message: "k: too big" });
  });

  it("reports an unreachable service as status 0", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => Promise.reject(new TypeError("Failed to fetch"))));
    const err = await request("http://down", "/readyz").catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 0, code: "unreachable" });
  });
});

describe("createApi", () => {
  const api = createApi({
    ingestUrl: "http://ing",
    recommenderUrl: "http://rec",
    trainerUrl: "http://tr",
    publishableKey: "pk_1",
  });

  it("sends events with the publishable key only", async () => {
    const fetchMock = stubFetch(202, { accepted: 1, event_ids: ["e1"] });
    await api.sendEvents([{ user_id: "u1", event_type: "view", product_id: "p1" }]);
    const [url, init] = fetchMock.mock.calls[0];
    expect(url).toBe("http://ing/v1/events");
    expect((init?.headers as Record<string, string>)["X-API-Key"]).toBe("pk_1");
    expect(JSON.parse(String(init?.body))).toEqual({
      events: [{ user_id: "u1", event_type: "view", product_id: "p1" }],
    });
  });

  it("sends the admin key given by the console, not the publishable one", async () => {
    const fetchMock = stubFetch(200, { version: 2 });
    await api.activate("admin_secret", 2);
    const [url, init] = fetchMock.mock.calls[0];
    expect(url).toBe("http://tr/v1/models/2/activate");
    expect(init?.method).toBe("POST");
    expect((init?.headers as Record<string, string>)["X-API-Key"]).toBe("admin_secret");
  });

  it("asks the search endpoint with the shopper for re-ranking", async () => {
    const fetchMock = stubFetch(200, { items: [] });
    await api.search("ketle", { userId: "u7", k: 10 });
    expect(fetchMock.mock.calls[0][0]).toBe("http://rec/v1/products/search?q=ketle&k=10&user_id=u7");
  });
});
