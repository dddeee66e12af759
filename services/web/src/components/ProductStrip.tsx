/** A row of products with a heading and a "why" tag saying which algorithm / strategy
 * produced it. Clicking a product in a recommendation strip sends a click event with its
 * rec_id (awaited, so the next page's recommendations already see it). */
import type { ScoredItem } from "../api/types";
import { useProducts, useSendEvent } from "../hooks/api";
import { ErrorMessage, QueryState, type QueryLike } from "./QueryState";
import { ProductCard } from "./ProductCard";

export function WhyTag(props: { algorithm?: string; strategy: string; modelVersion?: number | null }) {
  const parts = [props.algorithm, props.strategy].filter(Boolean).join(" · ");
  return (
    <span className="why" data-testid="why">
      why: {parts}
      {props.modelVersion != null ? (
        <>
          {" · model "}
          <span data-testid="model-version">v{props.modelVersion}</span>
        </>
      ) : null}
    </span>
  );
}

export function ProductStrip(props: {
  title: string;
  testId: string;
  items: ScoredItem[];
  algorithm?: string;
  strategy: string;
  modelVersion?: number | null;
  recId?: string;
}) {
  const ids = props.items.map((i) => i.product_id);
  const products = useProducts(ids);
  const send = useSendEvent();
  return (
    <section className="strip" aria-labelledby={`${props.testId}-h`} data-testid={props.testId}>
      <header>
        <h2 id={`${props.testId}-h`}>{props.title}</h2>
        <WhyTag algorithm={props.algorithm} strategy={props.strategy} modelVersion={props.modelVersion} />
      </header>
      {products.isError ? <ErrorMessage error={products.error} what="product details" /> : null}
      {ids.length === 0 ? <p className="empty">Nothing to show yet.</p> : null}
      <ul className="grid">
        {ids.map((id) => (
          <ProductCard
            key={id}
            productId={id}
            product={products.data?.get(id)}
            onOpen={
              props.recId
                ? () => send.mutate([{ event_type: "click", product_id: id, rec_id: props.recId }])
                : undefined
            }
          />
        ))}
      </ul>
    </section>
  );
}

/** What a strip shows of an answer that lists products: recommendations, similar, trending. */
interface StripAnswer {
  items: ScoredItem[];
  strategy: string;
  algorithm?: string;
  model_version?: number | null; // similar answers 0 when no model is loaded
  rec_id?: string;
}

/** A ProductStrip for a query's answer, with its loading and error states. `strategy`
 * rewrites the answer's strategy tag; `preview` shows it without sending click events. */
export function QueryStrip<T extends StripAnswer>(props: {
  query: QueryLike<T>;
  what: string;
  title: string;
  testId: string;
  strategy?: (answer: T) => string;
  preview?: boolean;
}) {
  return (
    <QueryState query={props.query} what={props.what}>
      {(r) => (
        <ProductStrip
          title={props.title}
          testId={props.testId}
          items={r.items}
          algorithm={r.algorithm}
          strategy={props.strategy ? props.strategy(r) : r.strategy}
          modelVersion={r.model_version || null}
          recId={props.preview ? undefined : r.rec_id}
        />
      )}
    </QueryState>
  );
}
