import { useState, type FormEvent } from "react";
import { Link, NavLink } from "react-router-dom";
import { PageFrame } from "../../components/Layout";
import { ErrorMessage } from "../../components/QueryState";
import { useApp } from "../../state/AppContext";

function Login() {
  const { api, setAdminKey } = useApp();
  const [key, setKey] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.campaigns(key.trim()); // an admin-only read: proves the key
      setAdminKey(key.trim());
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main id="main" className="login">
      <h1>streamrec admin</h1>
      <form onSubmit={submit}>
        <label htmlFor="admin-key">Admin API key</label>
        <input
          id="admin-key"
          type="password"
          autoComplete="off"
          value={key}
          onChange={(e) => setKey(e.target.value)}
          required
        />
        <button type="submit" disabled={busy}>
          {busy ? "Checking…" : "Log in"}
        </button>
        <p className="hint">The key stays in this tab (sessionStorage) and is sent only to the streamrec APIs.</p>
      </form>
      {error ? <ErrorMessage error={error} what="the console (key refused?)" action="open" /> : null}
      <Link to="/">Back to the shop</Link>
    </main>
  );
}

/** The console's sections: the navigation here and the routes (App.tsx) follow this list. */
export const SECTIONS = [
  ["models", "Models"],
  ["experiments", "Experiments"],
  ["campaigns", "Campaigns"],
  ["metrics", "Online metrics"],
  ["training", "Training"],
  ["catalog", "Catalog"],
  ["health", "Health"],
] as const;
export type Section = (typeof SECTIONS)[number][0];

export default function AdminLayout() {
  const { adminKey, setAdminKey } = useApp();
  if (!adminKey) return <Login />;
  return (
    <div className="admin">
      <PageFrame brand="streamrec admin" home="/admin">
        <nav aria-label="Console sections" className="adminnav">
          {SECTIONS.map(([path, label]) => (
            <NavLink key={path} to={`/admin/${path}`}>
              {label}
            </NavLink>
          ))}
        </nav>
        <Link to="/">Shop</Link>
        <button type="button" onClick={() => setAdminKey(null)}>
          Log out
        </button>
      </PageFrame>
    </div>
  );
}
