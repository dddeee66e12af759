import { useState } from "react";
import { Link } from "react-router-dom";
import { DataTable } from "../components/DataTable";
import { formatPrice } from "../components/ProductCard";
import { ErrorMessage } from "../components/QueryState";
import { usePlaceOrder, useSendEvent } from "../hooks/api";
import { useApp } from "../state/AppContext";

function newOrderId(): string {
  return `web-${crypto.randomUUID()}`;
}

export default function Cart() {
  const { cart, removeFromCart, clearCart, shopper } = useApp();
  const order = usePlaceOrder();
  const send = useSendEvent();
  const [placed, setPlaced] = useState<string | null>(null);
  const total = cart.reduce((s, l) => s + l.price * l.quantity, 0);

  const checkout = () => {
    const orderId = newOrderId();
    order.mutate(
      {
        order_id: orderId,
        user_id: shopper,
        items: cart.map((l) => ({ product_id: l.productId, quantity: l.quantity, price: l.price })),
        timestamp: new Date().toISOString(),
      },
      {
        onSuccess: () => {
          setPlaced(orderId);
          clearCart();
        },
      },
    );
  };

  const remove = (productId: string) => {
    removeFromCart(productId);
    send.mutate([{ event_type: "remove_from_cart", product_id: productId }]);
  };

  return (
    <section aria-labelledby="cart-h">
      <h1 id="cart-h">Your cart</h1>
      {placed ? (
        <p role="status" className="ok">
          Thank you! Order <code data-testid="order-id">{placed}</code> was placed.
        </p>
      ) : null}
      {cart.length === 0 ? (
        <p>
          Your cart is empty. <Link to="/">Keep shopping</Link>
        </p>
      ) : (
        <>
          <DataTable caption="Cart lines" columns={["Product", "Qty", "Price", <span className="sr-only">Actions</span>]}>
            {cart.map((l) => (
              <tr key={l.productId} data-product-id={l.productId}>
                <td>{l.name}</td>
                <td>{l.quantity}</td>
                <td>{formatPrice(l.price * l.quantity)}</td>
                <td>
                  <button type="button" onClick={() => remove(l.productId)} aria-label={`Remove ${l.name}`}>
                    Remove
                  </button>
                </td>
              </tr>
            ))}
          </DataTable>
          <p>
            Total: <strong>{formatPrice(total)}</strong>
          </p>
          <button type="button" onClick={checkout} disabled={order.isPending}>
            {order.isPending ? "Placing order…" : "Check out"}
          </button>
        </>
      )}
      {order.isError ? <ErrorMessage error={order.error} what="the order" action="place" /> : null}
    </section>
  );
}
