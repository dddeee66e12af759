import { useEffect, useRef } from "react";
import { useParams } from "react-router-dom";
import { formatPrice } from "../components/ProductCard";
import { QueryStrip } from "../components/ProductStrip";
import { ErrorMessage, QueryState } from "../components/QueryState";
import { useAlsoBought, useProducts, useSendEvent, useSimilar } from "../hooks/api";
import { useApp } from "../state/AppContext";

export default function ProductPage() {
  const { productId = "" } = useParams();
  const { addToCart, shopper } = useApp();
  const details = useProducts([productId]);
  const similar = useSimilar(productId);
  const send = useSendEvent();
  const viewed = useRef<string | null>(null);
  const product = details.data?.get(productId);
  const also = useAlsoBought(shopper, productId);

  useEffect(() => {
    const key = `${shopper}/${productId}`;
    if (viewed.current === key) return;
    viewed.current = key;
    send.mutate([{ event_type: "view", product_id: productId }]);
  }, [productId, shopper, send]);

  const add = () => {
    if (!product) return;
    addToCart({ productId, name: product.name ?? productId, price: product.price ?? 0 });
    send.mutate([{ event_type: "add_to_cart", product_id: productId, price: product.price ?? undefined }]);
  };

  return (
    <>
      <QueryState query={details} what="the product">
        {(map) => {
          const p = map.get(productId);
          if (!p) return <p role="alert">No product {productId} in the catalog.</p>;
          return (
            <article className="product" data-product-id={productId}>
              <h1>{p.name ?? productId}</h1>
              <p className="meta">
                {p.category} · <strong>{formatPrice(p.price)}</strong> · {p.in_stock ? "in stock" : "out of stock"}
              </p>
              <p>{p.description}</p>
              <dl className="attrs">
                {Object.entries(p.attributes).map(([k, v]) => (
                  <div key={k}>
                    <dt>{k}</dt>
                    <dd>{String(v)}</dd>
                  </div>
                ))}
              </dl>
              <button type="button" onClick={add} disabled={!p.in_stock || !p.active}>
                Add to cart
              </button>
              {send.isError ? <ErrorMessage error={send.error} what="the event" action="send" /> : null}
            </article>
          );
        }}
      </QueryState>
      <QueryStrip query={similar} what="similar products" title="Similar products" testId="similar" />
      <QueryStrip query={also} what="products customers also bought" title="Customers also bought" testId="also-bought" />
    </>
  );
}
