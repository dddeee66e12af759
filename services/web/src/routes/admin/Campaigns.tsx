import { useState, type FormEvent } from "react";
import { DataTable } from "../../components/DataTable";
import { QueryStrip } from "../../components/ProductStrip";
import { ErrorMessage, QueryState } from "../../components/QueryState";
import { useCampaigns, useDeleteCampaign, usePutCampaign, useRecommendations } from "../../hooks/api";
import type { Campaign } from "../../api/types";

const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);
const toLocal = (unix: number) => new Date(unix * 1000 - new Date().getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
const fromLocal = (s: string) => new Date(s).getTime() / 1000;

function blank(): Campaign {
  const now = Math.floor(Date.now() / 1000);
  return { name: "", boost: 1, start: now, end: now + 7 * 86_400, product_ids: [], categories: [], segment: null, enabled: true };
}

function CampaignForm(props: { initial: Campaign; onDone: () => void }) {
  const put = usePutCampaign();
  const [c, setC] = useState(props.initial);
  const [products, setProducts] = useState(props.initial.product_ids.join(", "));
  const [categories, setCategories] = useState(props.initial.categories.join(", "));
  const submit = (e: FormEvent) => {
    e.preventDefault();
    put.mutate(
      {
        name: c.name,
        body: {
          boost: c.boost,
          start: c.start,
          end: c.end,
          segment: c.segment,
          enabled: c.enabled,
          product_ids: list(products),
          categories: list(categories),
        },
      },
      { onSuccess: props.onDone },
    );
  };
  return (
    <form onSubmit={submit} className="form" aria-label="Campaign">
      <label htmlFor="c-name">Name</label>
      <input id="c-name" value={c.name} onChange={(e) => setC({ ...c, name: e.target.value })} required />
      <label htmlFor="c-boost">Boost (-1..10)</label>
      <input id="c-boost" type="number" step="0.1" min={-1} max={10} value={c.boost} onChange={(e) => setC({ ...c, boost: Number(e.target.value) })} />
      <label htmlFor="c-start">Start</label>
      <input id="c-start" type="datetime-local" value={toLocal(c.start)} onChange={(e) => setC({ ...c, start: fromLocal(e.target.value) })} />
      <label htmlFor="c-end">End</label>
      <input id="c-end" type="datetime-local" value={toLocal(c.end)} onChange={(e) => setC({ ...c, end: fromLocal(e.target.value) })} />
      <label htmlFor="c-products">Product ids (comma-separated)</label>
      <input id="c-products" value={products} onChange={(e) => setProducts(e.target.value)} />
      <label htmlFor="c-cats">Categories (comma-separated)</label>
      <input id="c-cats" value={categories} onChange={(e) => setCategories(e.target.value)} />
      <label htmlFor="c-seg">Segment</label>
      <select id="c-seg" value={c.segment ?? ""} onChange={(e) => setC({ ...c, segment: (e.target.value || null) as Campaign["segment"] })}>
        <option value="">everyone</option>
        <option value="new">new</option>
        <option value="light">light</option>
        <option value="heavy">heavy</option>
      </select>
      <label>
        <input type="checkbox" checked={c.enabled} onChange={(e) => setC({ ...c, enabled: e.target.checked })} /> enabled
      </label>
      <button type="submit" disabled={put.isPending}>
        Save campaign
      </button>
      {put.isError ? <ErrorMessage error={put.error} what="the campaign" action="save" /> : null}
    </form>
  );
}

function Preview() {
  const [user, setUser] = useState("u00001");
  const recs = useRecommendations(user);
  return (
    <section aria-labelledby="preview-h">
      <h2 id="preview-h">Live preview</h2>
      <label htmlFor="preview-user">User id</label>
      <input id="preview-user" value={user} onChange={(e) => setUser(e.target.value)} />
      <button type="button" onClick={() => void recs.refetch()}>
        Refresh
      </button>
      {user ? (
        <QueryStrip preview query={recs} what="the preview" title={`What ${user} sees`} testId="campaign-preview" />
      ) : null}
    </section>
  );
}

export default function Campaigns() {
  const campaigns = useCampaigns();
  const del = useDeleteCampaign();
  const [editing, setEditing] = useState<Campaign | null>(null);
  return (
    <section aria-labelledby="camp-h">
      <h1 id="camp-h">Campaigns</h1>
      <button type="button" onClick={() => setEditing(blank())}>
        New campaign
      </button>
      {editing ? <CampaignForm key={editing.name || "new"} initial={editing} onDone={() => setEditing(null)} /> : null}
      <QueryState query={campaigns} what="campaigns">
        {(d) =>
          d.campaigns.length === 0 ? (
            <p>No campaigns.</p>
          ) : (
            <DataTable caption="Campaigns" columns={["Name", "Boost", "Window", "Targets", "Segment", "Enabled", "Actions"]}>
              {d.campaigns.map((c) => (
                <tr key={c.name}>
                  <td>{c.name}</td>
                  <td>{c.boost}</td>
                  <td>
                    {new Date(c.start * 1000).toLocaleString()} – {new Date(c.end * 1000).toLocaleString()}
                  </td>
                  <td>{[...c.categories, ...c.product_ids].join(", ")}</td>
                  <td>{c.segment ?? "everyone"}</td>
                  <td>{c.enabled ? "yes" : "no"}</td>
                  <td>
                    <button type="button" onClick={() => setEditing(c)} aria-label={`Edit ${c.name}`}>
                      Edit
                    </button>{" "}
                    <button type="button" onClick={() => del.mutate(c.name)} aria-label={`Delete ${c.name}`}>
                      Delete
                    </button>
                  </td>
                </tr>
              ))}
            </DataTable>
          )
        }
      </QueryState>
      {del.isError ? <ErrorMessage error={del.error} what="the campaign" action="delete" /> : null}
      <Preview />
    </section>
  );
}
