/** One function per public endpoint the web app calls. Hooks (src/hooks/) call these. */
import type { AppConfig } from "../config";
import { request } from "./client";
import type {
  Campaign,
  CampaignIn,
  Category,
  EventIn,
  Experiment,
  ExperimentIn,
  ModelList,
  ModelVersion,
  OnlineMetrics,
  OrderIn,
  Product,
  ProductIn,
  Readiness,
  Recommendations,
  SearchResult,
  Similar,
  TrainJob,
  Trending,
} from "./types";

const enc = encodeURIComponent;

export function createApi(cfg: AppConfig) {
  const rec = cfg.recommenderUrl;
  const ing = cfg.ingestUrl;
  const tr = cfg.trainerUrl;
  const pub = cfg.publishableKey;
  return {
    // --- storefront (open reads; events and orders with the publishable key) ---
    recommendations: (
      userId: string,
      k = 8,
      opts: { category?: string; algorithm?: string; exclude?: string[] } = {},
    ) =>
      request<Recommendations>(rec, `/v1/recommendations/${enc(userId)}`, {
        query: { k, category: opts.category, algorithm: opts.algorithm, exclude: opts.exclude?.join(",") },
      }),
    trending: (k = 8, category?: string) =>
      request<Trending>(rec, "/v1/trending", { query: { k, category } }),
    similar: (productId: string, k = 8) =>
      request<Similar>(rec, `/v1/products/${enc(productId)}/similar`, { query: { k } }),
    search: (q: string, opts: { category?: string; k?: number; userId?: string; inactive?: boolean } = {}) =>
      request<SearchResult>(rec, "/v1/products/search", {
        query: {
          q,
          category: opts.category,
          k: opts.k ?? 24,
          user_id: opts.userId,
          include_inactive: opts.inactive ? true : undefined,
        },
      }),
    products: (ids: string[]) =>
      request<{ products: Product[] }>(rec, "/v1/products", { query: { ids: ids.join(",") } }),
    categories: () => request<{ categories: Category[] }>(rec, "/v1/categories"),
    sendEvents: (events: EventIn[]) =>
      request<{ accepted: number; event_ids: string[] }>(ing, "/v1/events", {
        method: "POST",
        body: { events },
        apiKey: pub,
      }),
    placeOrder: (order: OrderIn) =>
      request<{ order_id: string }>(ing, "/v1/orders", { method: "POST", body: order, apiKey: pub }),

    // --- admin console (admin key from the login form, never from config.json) ---
    campaigns: (key: string) =>
      request<{ campaigns: Campaign[] }>(rec, "/v1/campaigns", { apiKey: key }),
    putCampaign: (key: string, name: string, body: CampaignIn) =>
      request<Campaign>(rec, `/v1/campaigns/${enc(name)}`, { method: "PUT", body, apiKey: key }),
    deleteCampaign: (key: string, name: string) =>
      request<{ deleted: string }>(rec, `/v1/campaigns/${enc(name)}`, {
        method: "DELETE",
        apiKey: key,
      }),
    experiment: (key: string, name: string) =>
      request<Experiment>(rec, `/v1/experiments/${enc(name)}`, { apiKey: key }),
    putExperiment: (key: string, name: string, body: ExperimentIn) =>
      request<Experiment>(rec, `/v1/experiments/${enc(name)}`, {
        method: "PUT",
        body,
        apiKey: key,
      }),
    onlineMetrics: (key: string, window: number) =>
      request<OnlineMetrics>(rec, "/v1/metrics/online", { query: { window }, apiKey: key }),
    models: () => request<ModelList>(tr, "/v1/models"),
    activate: (key: string, version: number) =>
      request<ModelVersion>(tr, `/v1/models/${version}/activate`, { method: "POST", apiKey: key }),
    train: (key: string) =>
      request<{ job_id: string }>(tr, "/v1/train", { method: "POST", apiKey: key }),
    trainJob: (key: string, jobId: string) =>
      request<TrainJob>(tr, `/v1/train/${enc(jobId)}`, { apiKey: key }),
    putProduct: (key: string, productId: string, body: ProductIn) =>
      request<unknown>(ing, `/v1/products/${enc(productId)}`, { method: "PUT", body, apiKey: key }),
    deactivateProduct: (key: string, productId: string) =>
      request<unknown>(ing, `/v1/products/${enc(productId)}`, { method: "DELETE", apiKey: key }),
    readiness: (service: "ingest" | "recommender" | "trainer") =>
      request<Readiness>({ ingest: ing, recommender: rec, trainer: tr }[service], "/readyz"),
  };
}

export type Api = ReturnType<typeof createApi>;
