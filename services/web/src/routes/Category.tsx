import { useParams } from "react-router-dom";
import { ProductCard } from "../components/ProductCard";
import { QueryStrip } from "../components/ProductStrip";
import { QueryState } from "../components/QueryState";
import { useSearch, useTrending } from "../hooks/api";
import { useApp } from "../state/AppContext";

export default function Category() {
  const { category = "" } = useParams();
  const { shopper } = useApp();
  const trending = useTrending(category);
  const list = useSearch("", { category, userId: shopper, k: 48 });
  return (
    <>
      <h1>{category}</h1>
      <QueryStrip query={trending} what={`trending in ${category}`} title={`Trending in ${category}`} testId="category-trending" />
      <section aria-labelledby="all-h">
        <h2 id="all-h">All {category} products</h2>
        <QueryState query={list} what="products">
          {(r) => (
            <ul className="grid">
              {r.items.map((p) => (
                <ProductCard key={p.product_id} productId={p.product_id} product={p} />
              ))}
            </ul>
          )}
        </QueryState>
      </section>
    </>
  );
}
