import { useState, type FormEvent } from "react";
import { DataTable } from "../../components/DataTable";
import { formatPrice } from "../../components/ProductCard";
import { ErrorMessage, QueryState } from "../../components/QueryState";
import { useSearch, useUpdateProduct } from "../../hooks/api";
import type { Product } from "../../api/types";

export default function Catalog() {
  const [input, setInput] = useState("");
  const [q, setQ] = useState("");
  const result = useSearch(q, { inactive: true, k: 50 });
  const update = useUpdateProduct();
  const submit = (e: FormEvent) => {
    e.preventDefault();
    setQ(input.trim());
  };
  const toggleStock = (p: Product) =>
    update.mutate({
      id: p.product_id,
      body: {
        name: p.name ?? p.product_id,
        category: p.category ?? "",
        price: p.price ?? 0,
        in_stock: !p.in_stock,
        active: p.active,
        attributes: p.attributes,
        description: p.description,
      },
    });
  return (
    <section aria-labelledby="cat-h">
      <h1 id="cat-h">Catalog</h1>
      <form role="search" onSubmit={submit}>
        <label htmlFor="cat-q">Find products</label>{" "}
        <input id="cat-q" type="search" value={input} onChange={(e) => setInput(e.target.value)} />
        <button type="submit">Search</button>
      </form>
      {update.isError ? <ErrorMessage error={update.error} what="the product change" action="send" /> : null}
      {update.isSuccess ? <p role="status">Change sent; the search index follows once ingest stored it.</p> : null}
      {q ? (
        <QueryState query={result} what="products">
          {(r) => (
            <DataTable caption="Matching products" columns={["Id", "Name", "Category", "Price", "Stock", "Active", "Actions"]}>
              {r.items.map((p) => (
                <tr key={p.product_id} data-product-id={p.product_id}>
                  <td>{p.product_id}</td>
                  <td>{p.name}</td>
                  <td>{p.category}</td>
                  <td>{formatPrice(p.price)}</td>
                  <td>
                    <button type="button" onClick={() => toggleStock(p)} aria-label={`Mark ${p.product_id} ${p.in_stock ? "out of stock" : "in stock"}`}>
                      {p.in_stock ? "in stock" : "out of stock"}
                    </button>
                  </td>
                  <td>{p.active ? "yes" : "no"}</td>
                  <td>
                    {p.active ? (
                      <button type="button" onClick={() => update.mutate({ id: p.product_id, deactivate: true })} aria-label={`Deactivate ${p.product_id}`}>
                        Deactivate
                      </button>
                    ) : (
                      "—"
                    )}
                  </td>
                </tr>
              ))}
            </DataTable>
          )}
        </QueryState>
      ) : null}
    </section>
  );
}
