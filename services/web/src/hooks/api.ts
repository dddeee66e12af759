/** The one hooks layer: every server call of the app goes through a hook here (TanStack
 * Query), so loading, error and cache behaviour are defined in one place. */
import { useMutation, useQuery, useQueryClient, type QueryKey, type UseQueryOptions } from "@tanstack/react-query";
import { ApiError } from "../api/client";
import type { Api } from "../api/endpoints";
import type { Similar } from "../api/types";
import type { CampaignIn, EventIn, ExperimentIn, OrderIn, Product, ProductIn } from "../api/types";
import { useApp } from "../state/AppContext";

export const keys = {
  recs: (user: string) => ["recs", user] as const,
  trending: (category?: string) => ["trending", category ?? ""] as const,
  similar: (id: string) => ["similar", id] as const,
  search: (q: string, category: string | undefined, user: string | undefined, inactive: boolean) =>
    ["search", q, category ?? "", user ?? "", inactive] as const,
  products: (ids: string[]) => ["products", ...ids] as const,
  categories: ["categories"] as const,
  models: ["models"] as const,
  campaigns: ["campaigns"] as const,
  experiment: (name: string) => ["experiment", name] as const,
  online: (window: number) => ["online", window] as const,
  job: (id: string) => ["job", id] as const,
  ready: (svc: string) => ["ready", svc] as const,
};

// --- storefront ------------------------------------------------------------------------------
export function useRecommendations(userId: string, k = 8) {
  const { api } = useApp();
  return useQuery({
    queryKey: keys.recs(userId),
    queryFn: () => api.recommendations(userId, k),
    staleTime: 0,
    refetchOnMount: "always",
  });
}

/** "Customers also bought": item-kNN (co-interaction neighbours) from the shopper's recent
 * items, this product (just viewed) among them; a recommendation with its own rec_id. */
export function useAlsoBought(userId: string, productId: string, k = 8) {
  const { api } = useApp();
  return useQuery({
    queryKey: [...keys.recs(userId), "also", productId],
    queryFn: () => api.recommendations(userId, k, { algorithm: "itemknn", exclude: [productId] }),
  });
}

export function useTrending(category?: string, k = 8) {
  const { api } = useApp();
  return useQuery({ queryKey: keys.trending(category), queryFn: () => api.trending(k, category) });
}

/** Products bought together with one product; a product the model does not know yet (new
 * since the last training) has none: an empty strip saying so, not an error. */
export function useSimilar(productId: string, k = 8) {
  const { api } = useApp();
  return useQuery({
    queryKey: keys.similar(productId),
    queryFn: async (): Promise<Similar> => {
      try {
        return await api.similar(productId, k);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) {
          return { product_id: productId, strategy: "not in the model yet", model_version: 0, items: [] };
        }
        throw err;
      }
    },
  });
}

export function useSearch(
  q: string,
  opts: { category?: string; userId?: string; inactive?: boolean; k?: number } = {},
) {
  const { api } = useApp();
  const enabled = q.trim().length > 0 || Boolean(opts.category);
  return useQuery({
    queryKey: keys.search(q, opts.category, opts.userId, Boolean(opts.inactive)),
    queryFn: () => api.search(q, opts),
    enabled,
  });
}

/** Catalog rows for ids a page shows (names, prices), in the order asked. */
export function useProducts(ids: string[]) {
  const { api } = useApp();
  return useQuery({
    queryKey: keys.products(ids),
    queryFn: async () => {
      const { products } = await api.products(ids);
      return new Map<string, Product>(products.map((p) => [p.product_id, p]));
    },
    enabled: ids.length > 0,
    staleTime: 30_000,
  });
}

export function useCategories() {
  const { api } = useApp();
  return useQuery({ queryKey: keys.categories, queryFn: () => api.categories(), staleTime: 60_000 });
}

/** Send shopper events (view, click, add_to_cart, ...) with the publishable key; the
 * shopper's recommendations are refetched once ingest has accepted them. */
export function useSendEvent() {
  const { api, shopper } = useApp();
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (events: Omit<EventIn, "user_id">[]) =>
      api.sendEvents(events.map((e) => ({ ...e, user_id: shopper }) as EventIn)),
    onSuccess: () => qc.invalidateQueries({ queryKey: keys.recs(shopper) }),
  });
}

export function usePlaceOrder() {
  const { api, shopper } = useApp();
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (order: OrderIn) => api.placeOrder(order),
    onSuccess: () => qc.invalidateQueries({ queryKey: keys.recs(shopper) }),
  });
}

// --- admin console ---------------------------------------------------------------------------
function useKey(): string {
  const { adminKey } = useApp();
  return adminKey ?? "";
}

/** A console read sent with the admin key (the other options as useQuery's). */
function useAdminQuery<R>(
  queryKey: QueryKey,
  read: (api: Api, key: string) => Promise<R>,
  opts: Omit<UseQueryOptions<R, Error, R, QueryKey>, "queryKey" | "queryFn"> = {},
) {
  const { api } = useApp();
  const key = useKey();
  return useQuery({ ...opts, queryKey, queryFn: () => read(api, key) });
}

/** A console change sent with the admin key; on success the queries under each key that
 * `invalidates` names are refetched (awaited before the change counts as done with `wait`). */
function useAdminMutation<V, R>(
  send: (api: Api, key: string, v: V) => Promise<R>,
  opts: { invalidates?: (v: V) => QueryKey[]; wait?: boolean } = {},
) {
  const { api } = useApp();
  const key = useKey();
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (v: V) => send(api, key, v),
    onSuccess: (_d: R, v: V) => {
      const refetched = Promise.all((opts.invalidates?.(v) ?? []).map((k) => qc.invalidateQueries({ queryKey: k })));
      return opts.wait ? refetched : undefined;
    },
  });
}

export function useModels() {
  const { api } = useApp();
  return useQuery({ queryKey: keys.models, queryFn: () => api.models() });
}

export function useActivateModel() {
  return useAdminMutation((api, key, version: number) => api.activate(key, version), {
    invalidates: () => [keys.models],
    wait: true,
  });
}

export function useStartTraining() {
  return useAdminMutation((api, key, _v: void) => api.train(key));
}

export function useTrainJob(jobId: string) {
  return useAdminQuery(keys.job(jobId), (api, key) => api.trainJob(key, jobId), {
    refetchInterval: (q) =>
      q.state.data && !["queued", "running"].includes(q.state.data.status) ? false : 1000,
  });
}

export function useCampaigns() {
  return useAdminQuery(keys.campaigns, (api, key) => api.campaigns(key));
}

/** Campaign changes refetch the list and every recommendation (the live preview). */
const CAMPAIGN_VIEWS = () => [keys.campaigns, ["recs"]];

export function usePutCampaign() {
  return useAdminMutation(
    (api, key, v: { name: string; body: CampaignIn }) => api.putCampaign(key, v.name, v.body),
    { invalidates: CAMPAIGN_VIEWS },
  );
}

export function useDeleteCampaign() {
  return useAdminMutation((api, key, name: string) => api.deleteCampaign(key, name), { invalidates: CAMPAIGN_VIEWS });
}

export function useExperiment(name: string) {
  return useAdminQuery(keys.experiment(name), (api, key) => api.experiment(key, name), {
    enabled: name.length > 0,
    retry: false,
  });
}

export function usePutExperiment() {
  return useAdminMutation(
    (api, key, v: { name: string; body: ExperimentIn }) => api.putExperiment(key, v.name, v.body),
    { invalidates: (v) => [keys.experiment(v.name), ["online"]] },
  );
}

export function useOnlineMetrics(window: number) {
  return useAdminQuery(keys.online(window), (api, key) => api.onlineMetrics(key, window), {
    refetchInterval: 10_000,
  });
}

export function useUpdateProduct() {
  return useAdminMutation(
    (api, key, v: { id: string; body: ProductIn } | { id: string; deactivate: true }) =>
      "deactivate" in v ? api.deactivateProduct(key, v.id) : api.putProduct(key, v.id, v.body),
    { invalidates: () => [["search"], ["products"]] },
  );
}

export function useReadiness(service: "ingest" | "recommender" | "trainer") {
  const { api } = useApp();
  return useQuery({
    queryKey: keys.ready(service),
    queryFn: () => api.readiness(service),
    refetchInterval: 5000,
    retry: false,
  });
}
