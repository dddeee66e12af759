import { screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { ApiError } from "../api/client";
import type { Api } from "../api/endpoints";
import type { Product } from "../api/types";
import { renderWithApp } from "../test/render";
import { BarChart } from "./BarChart";
import { ProductStrip, WhyTag } from "./ProductStrip";
import { QueryState } from "./QueryState";

const product = (id: string, name: string): Product => ({
  product_id: id,
  name,
  category: "kitchen",
  price: 12.5,
  in_stock: true,
  active: true,
  attributes: {},
  description: "",
});

describe("WhyTag", () => {
  it("names the algorithm, strategy and model version", () => {
    renderWithApp(<WhyTag algorithm="als" strategy="personal" modelVersion={3} />, {});
    expect(screen.getByTestId("why")).toHaveTextContent("why: als · personal · model v3");
    expect(screen.getByTestId("model-version")).toHaveTextContent("v3");
  });
});

describe("ProductStrip", () => {
  it("renders every product with data-product-id and its catalog name", async () => {
    const api: Partial<Api> = {
      products: vi.fn(async () => ({ products: [product("p1", "red kettle"), product("p2", "blue mug")] })),
    };
    const { container } = renderWithApp(
      <ProductStrip title="Recommended for you" testId="recommended" items={[{ product_id: "p1", score: 1 }, { product_id: "p2", score: 0.5 }]} algorithm="als" strategy="personal" recId="r1" />,
      api,
    );
    expect(await screen.findByText("red kettle")).toBeInTheDocument();
    const ids = [...container.querySelectorAll("li[data-product-id]")].map((e) => e.getAttribute("data-product-id"));
    expect(ids).toEqual(["p1", "p2"]);
    expect(screen.getByRole("heading", { name: "Recommended for you" })).toBeInTheDocument();
  });

  it("sends a click event carrying the rec_id when a recommended product is opened", async () => {
    const sendEvents = vi.fn(async () => ({ accepted: 1, event_ids: ["e"] }));
    const api: Partial<Api> = {
      products: vi.fn(async () => ({ products: [product("p1", "red kettle")] })),
      sendEvents,
    };
    renderWithApp(
      <ProductStrip title="Recs" testId="recs" items={[{ product_id: "p1", score: 1 }]} strategy="personal" recId="rec-42" />,
      api,
    );
    await userEvent.click(await screen.findByRole("link", { name: /red kettle/ }));
    await waitFor(() => expect(sendEvents).toHaveBeenCalled());
    expect(sendEvents).toHaveBeenCalledWith([
      { event_type: "click", product_id: "p1", rec_id: "rec-42", user_id: "u00001" },
    ]);
  });
});

describe("QueryState", () => {
  it("shows a loading state, then an error message naming what failed", () => {
    const { rerender } = renderWithApp(
      <QueryState query={{ isPending: true, isError: false, error: null, data: undefined }} what="recommendations">
        {() => <p>data</p>}
      </QueryState>,
      {},
    );
    expect(screen.getByRole("status")).toHaveTextContent("Loading recommendations");
    rerender(
      <QueryState
        query={{ isPending: false, isError: true, error: new ApiError(503, "unavailable", "Postgres unreachable"), data: undefined }}
        what="search results"
      >
        {() => <p>data</p>}
      </QueryState>,
    );
    expect(screen.getByRole("alert")).toHaveTextContent("Could not load search results: Postgres unreachable (HTTP 503)");
  });
});

describe("BarChart", () => {
  it("draws one bar per value with an accessible title", () => {
    const { container } = renderWithApp(
      <BarChart title="HR per version" groups={[{ label: "v1", values: [{ name: "@5", value: 0.1 }, { name: "@10", value: 0.2 }] }]} />,
      {},
    );
    expect(screen.getByRole("img", { name: "HR per version" })).toBeInTheDocument();
    expect(container.querySelectorAll("rect")).toHaveLength(2);
  });
});
