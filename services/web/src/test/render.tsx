/** Render a component inside the app's providers with a fake API (pure logic tests only). */
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render } from "@testing-library/react";
import type { ReactNode } from "react";
import { MemoryRouter } from "react-router-dom";
import type { Api } from "../api/endpoints";
import type { AppConfig } from "../config";
import { AppProvider } from "../state/AppContext";

export const testConfig: AppConfig = {
  ingestUrl: "http://ingest.test",
  recommenderUrl: "http://rec.test",
  trainerUrl: "http://trainer.test",
  publishableKey: "pk_test",
};

export function renderWithApp(ui: ReactNode, api: Partial<Api>, opts: { route?: string } = {}) {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  return render(
    <QueryClientProvider client={client}>
      <AppProvider config={testConfig} api={api as Api}>
        <MemoryRouter initialEntries={[opts.route ?? "/"]}>{ui}</MemoryRouter>
      </AppProvider>
    </QueryClientProvider>,
  );
}
