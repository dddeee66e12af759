import { useSearchParams } from "react-router-dom";
import { ProductCard } from "../components/ProductCard";
import { QueryState } from "../components/QueryState";
import { WhyTag } from "../components/ProductStrip";
import { useSearch } from "../hooks/api";
import { useApp } from "../state/AppContext";

export default function Search() {
  const [params] = useSearchParams();
  const q = params.get("q") ?? "";
  const { shopper } = useApp();
  const result = useSearch(q, { userId: shopper });
  return (
    <section aria-labelledby="search-h" data-testid="search-results">
      <h1 id="search-h">Results for “{q}”</h1>
      {!q ? <p>Type something in the search box.</p> : null}
      {q ? (
        <QueryState query={result} what="search results">
          {(r) => (
            <>
              <WhyTag strategy={r.personalized ? `trigram match, re-ranked for ${shopper}` : "trigram match"} />
              {r.items.length === 0 ? <p className="empty">No products match “{q}”.</p> : null}
              <ul className="grid">
                {r.items.map((p) => (
                  <ProductCard key={p.product_id} productId={p.product_id} product={p} />
                ))}
              </ul>
            </>
          )}
        </QueryState>
      ) : null}
    </section>
  );
}
