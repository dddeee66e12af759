import { useState, type FormEvent, type ReactNode } from "react";
import { Link, NavLink, Outlet, useNavigate } from "react-router-dom";
import { useCategories } from "../hooks/api";
import { DEMO_SHOPPERS, useApp } from "../state/AppContext";

function SearchBox() {
  const [q, setQ] = useState("");
  const navigate = useNavigate();
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (q.trim()) navigate(`/search?q=${encodeURIComponent(q.trim())}`);
  };
  return (
    <form role="search" onSubmit={submit} className="search">
      <label htmlFor="search-q" className="sr-only">
        Search products
      </label>
      <input
        id="search-q"
        type="search"
        placeholder="Search products (typos are fine)"
        value={q}
        onChange={(e) => setQ(e.target.value)}
      />
      <button type="submit">Search</button>
    </form>
  );
}

function ShopperSwitch() {
  const { shopper, setShopper } = useApp();
  return (
    <div className="shopper">
      <label htmlFor="shopper">Demo shopper</label>
      <select id="shopper" value={shopper} onChange={(e) => setShopper(e.target.value)}>
        {(DEMO_SHOPPERS.includes(shopper as never) ? [...DEMO_SHOPPERS] : [...DEMO_SHOPPERS, shopper]).map((u) => (
          <option key={u} value={u}>
            {u}
          </option>
        ))}
      </select>
    </div>
  );
}

/** The frame both the shop and the admin console use: a skip link, the top bar (the brand,
 * linking home, then the layout's own controls), what goes under it, and the routed page. */
export function PageFrame(props: { brand: string; home: string; children: ReactNode; below?: ReactNode }) {
  return (
    <>
      <a href="#main" className="skip">
        Skip to content
      </a>
      <header className="top">
        <Link to={props.home} className="brand">
          {props.brand}
        </Link>
        {props.children}
      </header>
      {props.below}
      <main id="main">
        <Outlet />
      </main>
    </>
  );
}

export function ShopLayout() {
  const { cart } = useApp();
  const categories = useCategories();
  const count = cart.reduce((n, l) => n + l.quantity, 0);
  const nav = (
    <nav aria-label="Categories" className="cats">
      {categories.isError ? <span className="error">categories unavailable</span> : null}
      {categories.data?.categories.map((c) => (
        <NavLink key={c.category} to={`/category/${encodeURIComponent(c.category)}`}>
          {c.category}
        </NavLink>
      ))}
    </nav>
  );
  return (
    <PageFrame brand="streamrec shop" home="/" below={nav}>
      <SearchBox />
      <ShopperSwitch />
      <Link to="/cart" className="cartlink" data-testid="cart-link">
        Cart ({count})
      </Link>
      <Link to="/admin" className="adminlink">
        Admin
      </Link>
    </PageFrame>
  );
}
