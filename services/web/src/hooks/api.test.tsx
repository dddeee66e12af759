import { screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { ApiError } from "../api/client";
import type { Api } from "../api/endpoints";
import type { Recommendations } from "../api/types";
import { renderWithApp } from "../test/render";
import { useRecommendations, useSendEvent, useSimilar } from "./api";

function Recs() {
  const recs = useRecommendations("u00001");
  const send = useSendEvent();
  return (
    <div>
      <p data-testid="ids">{recs.data?.items.map((i) => i.product_id).join(",") ?? "loading"}</p>
      <button type="button" onClick={() => send.mutate([{ event_type: "view", product_id: "p9" }])}>
        view
      </button>
    </div>
  );
}

const answer = (ids: string[]): Recommendations => ({
  user_id: "u00001",
  rec_id: "r",
  algorithm: "als",
  strategy: "personal",
  model_version: 1,
  items: ids.map((product_id) => ({ product_id, score: 1 })),
  latency_ms: 1,
});

describe("useSendEvent", () => {
  it("refetches the shopper's recommendations once ingest accepted the event", async () => {
    const recommendations = vi
      .fn()
      .mockResolvedValueOnce(answer(["p1", "p2"]))
      .mockResolvedValueOnce(answer(["p9", "p3"]));
    const api: Partial<Api> = {
      recommendations,
      sendEvents: vi.fn(async () => ({ accepted: 1, event_ids: ["e"] })),
    };
    renderWithApp(<Recs />, api);
    await waitFor(() => expect(screen.getByTestId("ids")).toHaveTextContent("p1,p2"));
    await userEvent.click(screen.getByRole("button", { name: "view" }));
    await waitFor(() => expect(screen.getByTestId("ids")).toHaveTextContent("p9,p3"));
    expect(api.sendEvents).toHaveBeenCalledWith([{ event_type: "view", product_id: "p9", user_id: "u00001" }]);
  });
});

function SimilarProbe() {
  const q = useSimilar("new-product");
  return <p data-testid="s">{q.isError ? "error" : (q.data?.strategy ?? "loading")}</p>;
}

describe("useSimilar", () => {
  it.each([
    [
      "treats a product the model does not know as an empty list, not an error",
      new ApiError(404, "not_found", "product_id: unknown"),
      "not in the model yet",
    ],
    ["keeps other failures as errors", new ApiError(503, "unavailable", "no model loaded yet"), "error"],
  ])("%s", async (_case, failure, shown) => {
    const api: Partial<Api> = {
      similar: vi.fn(async () => {
        throw failure;
      }),
    };
    renderWithApp(<SimilarProbe />, api);
    await waitFor(() => expect(screen.getByTestId("s")).toHaveTextContent(shown));
  });
});
