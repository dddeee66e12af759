/** App-wide state: the runtime config and API, the demo shopper, the cart, the admin key. */
import { createContext, useCallback, useContext, useMemo, useState, type ReactNode } from "react";
import type { Api } from "../api/endpoints";
import type { AppConfig } from "../config";

export const DEMO_SHOPPERS = ["u00001", "u00002", "u00003", "u00042", "guest-visitor"] as const;

export interface CartLine {
  productId: string;
  name: string;
  price: number;
  quantity: number;
  recId?: string;
}

interface AppState {
  config: AppConfig;
  api: Api;
  shopper: string;
  setShopper: (id: string) => void;
  cart: CartLine[];
  addToCart: (line: Omit<CartLine, "quantity">) => void;
  removeFromCart: (productId: string) => void;
  clearCart: () => void;
  adminKey: string | null;
  setAdminKey: (key: string | null) => void;
}

const Ctx = createContext<AppState | null>(null);

const SHOPPER_KEY = "streamrec.shopper";
const ADMIN_KEY = "streamrec.adminKey"; // sessionStorage only: gone when the tab closes

function initialShopper(): string {
  return localStorage.getItem(SHOPPER_KEY) ?? DEMO_SHOPPERS[0];
}

export function AppProvider(props: { config: AppConfig; api: Api; children: ReactNode }) {
  const [shopper, setShopperState] = useState(initialShopper);
  const [cart, setCart] = useState<CartLine[]>([]);
  const [adminKey, setAdminKeyState] = useState<string | null>(() =>
    sessionStorage.getItem(ADMIN_KEY),
  );
  const setShopper = useCallback((id: string) => {
    localStorage.setItem(SHOPPER_KEY, id);
    setShopperState(id);
    setCart([]);
  }, []);
  const setAdminKey = useCallback((key: string | null) => {
    if (key) sessionStorage.setItem(ADMIN_KEY, key);
    else sessionStorage.removeItem(ADMIN_KEY);
    setAdminKeyState(key);
  }, []);
  const addToCart = useCallback((line: Omit<CartLine, "quantity">) => {
    setCart((c) => {
      const found = c.find((l) => l.productId === line.productId);
      if (found) {
        return c.map((l) => (l.productId === line.productId ? { ...l, quantity: l.quantity + 1 } : l));
      }
      return [...c, { ...line, quantity: 1 }];
    });
  }, []);
  const removeFromCart = useCallback(
    (productId: string) => setCart((c) => c.filter((l) => l.productId !== productId)),
    [],
  );
  const clearCart = useCallback(() => setCart([]), []);
  const value = useMemo(
    () => ({
      config: props.config,
      api: props.api,
      shopper,
      setShopper,
      cart,
      addToCart,
      removeFromCart,
      clearCart,
      adminKey,
      setAdminKey,
    }),
    [props.config, props.api, shopper, setShopper, cart, addToCart, removeFromCart, clearCart, adminKey, setAdminKey],
  );
  return <Ctx.Provider value={value}>{props.children}</Ctx.Provider>;
}

export function useApp(): AppState {
  const v = useContext(Ctx);
  if (!v) throw new Error("useApp outside AppProvider");
  return v;
}
