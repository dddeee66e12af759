import { Link } from "react-router-dom";
import type { Product } from "../api/types";

export function formatPrice(price: number | null | undefined): string {
  return price == null ? "—" : `€${price.toFixed(2)}`;
}

/** One product tile; carries data-product-id. ``onOpen`` runs before navigating (clicks). */
export function ProductCard(props: {
  productId: string;
  product?: Product;
  onOpen?: () => void;
}) {
  const p = props.product;
  const name = p?.name ?? props.productId;
  return (
    <li className="card" data-product-id={props.productId}>
      <Link to={`/product/${encodeURIComponent(props.productId)}`} onClick={props.onOpen}>
        <span className="thumb" aria-hidden="true">
          {(p?.category ?? "?").slice(0, 2).toUpperCase()}
        </span>
        <span className="name">{name}</span>
      </Link>
      <span className="meta">
        {p?.category ?? ""} · {formatPrice(p?.price)}
        {p && !p.in_stock ? " · out of stock" : ""}
      </span>
    </li>
  );
}
