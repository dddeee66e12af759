import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { useState, type ReactElement } from "react";
import { BrowserRouter, Navigate, Route, Routes } from "react-router-dom";
import type { Api } from "./api/endpoints";
import { ShopLayout } from "./components/Layout";
import type { AppConfig } from "./config";
import Cart from "./routes/Cart";
import Category from "./routes/Category";
import Home from "./routes/Home";
import NotFound from "./routes/NotFound";
import ProductPage from "./routes/Product";
import Search from "./routes/Search";
import AdminLayout, { SECTIONS, type Section } from "./routes/admin/AdminLayout";
import Campaigns from "./routes/admin/Campaigns";
import Catalog from "./routes/admin/Catalog";
import Experiments from "./routes/admin/Experiments";
import Health from "./routes/admin/Health";
import Metrics from "./routes/admin/Metrics";
import Models from "./routes/admin/Models";
import Training from "./routes/admin/Training";
import { AppProvider } from "./state/AppContext";

export function makeQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: { retry: 1, refetchOnWindowFocus: false, staleTime: 5_000 },
    },
  });
}

const ADMIN_PAGES: Record<Section, ReactElement> = {
  models: <Models />,
  experiments: <Experiments />,
  campaigns: <Campaigns />,
  metrics: <Metrics />,
  training: <Training />,
  catalog: <Catalog />,
  health: <Health />,
};

export function AppRoutes() {
  return (
    <Routes>
      <Route element={<ShopLayout />}>
        <Route index element={<Home />} />
        <Route path="category/:category" element={<Category />} />
        <Route path="product/:productId" element={<ProductPage />} />
        <Route path="search" element={<Search />} />
        <Route path="cart" element={<Cart />} />
        <Route path="*" element={<NotFound />} />
      </Route>
      <Route path="admin" element={<AdminLayout />}>
        <Route index element={<Navigate to={SECTIONS[0][0]} replace />} />
        {SECTIONS.map(([path]) => (
          <Route key={path} path={path} element={ADMIN_PAGES[path]} />
        ))}
      </Route>
    </Routes>
  );
}

export default function App(props: { config: AppConfig; api: Api }) {
  const [client] = useState(makeQueryClient);
  return (
    <QueryClientProvider client={client}>
      <AppProvider config={props.config} api={props.api}>
        <BrowserRouter>
          <AppRoutes />
        </BrowserRouter>
      </AppProvider>
    </QueryClientProvider>
  );
}
