/** Response shapes of the recommender and trainer.
 *
 * Request bodies come from the services' OpenAPI (src/api/generated/, `npm run gen:api`), but
 * the recommender and trainer document most responses as `schema: {}` today, so the shapes
 * they answer with are typed by hand here, in this one module (keep them in step with
 * services/recommender/.../routes.py, search.py and services/trainer/.../app.py). */
import type { components as IngestComponents } from "./generated/ingest";
import type { components as RecommenderComponents } from "./generated/recommender";

type RawEventIn = IngestComponents["schemas"]["EventIn"];
/** An event as sent: the generated schema marks fields with defaults as required. */
export type EventIn = Pick<RawEventIn, "user_id" | "event_type" | "product_id"> &
  Partial<Omit<RawEventIn, "user_id" | "event_type" | "product_id">>;
export type EventType = RawEventIn["event_type"];
export type OrderIn = IngestComponents["schemas"]["OrderIn"];
export type ProductIn = IngestComponents["schemas"]["ProductIn"];
export type ExperimentIn = RecommenderComponents["schemas"]["ExperimentIn"];
export type CampaignIn = RecommenderComponents["schemas"]["CampaignIn"];

export interface ScoredItem {
  product_id: string;
  score: number;
}

export interface Recommendations {
  user_id: string;
  rec_id: string;
  algorithm: string;
  strategy: string;
  model_version: number | null;
  items: ScoredItem[];
  segment?: string;
  cached?: boolean;
  experiment?: { name: string; variant: string };
  latency_ms: number;
}

export interface Similar {
  product_id: string;
  strategy: string;
  model_version: number;
  items: ScoredItem[];
}

export interface Trending {
  category: string | null;
  strategy: string;
  items: ScoredItem[];
}

export interface Product {
  product_id: string;
  name: string | null;
  category: string | null;
  price: number | null;
  in_stock: boolean;
  active: boolean;
  attributes: Record<string, unknown>;
  description: string;
}

export interface SearchHit extends Product {
  similarity: number;
  score: number;
}

export interface SearchResult {
  q: string | null;
  category: string | null;
  user_id: string | null;
  personalized: boolean;
  items: SearchHit[];
  latency_ms: number;
}

export interface Category {
  category: string;
  products: number;
}

export interface Experiment {
  name: string;
  status: "draft" | "running" | "stopped";
  description: string;
  variants: { name: string; algorithm: string; weight: number }[];
  control: string | null;
}

export interface Campaign {
  name: string;
  boost: number;
  start: number;
  end: number;
  product_ids: string[];
  categories: string[];
  segment: "new" | "light" | "heavy" | null;
  enabled: boolean;
}

export interface Tally {
  impressions: number;
  clicks: number;
  hits: number;
  conversions: number;
  ctr: number;
  hit_rate: number;
  conversion_rate: number;
}

export interface VariantRow extends Tally {
  control: boolean;
  significance?: {
    test: string;
    control: string;
    z: number;
    p_value: number;
    lift: number | null;
    significant: boolean;
    better: boolean;
  };
}

export interface OnlineMetrics {
  window_s: number;
  total: Tally;
  algorithms: Record<string, Tally>;
  segments: Record<string, Record<string, Tally>>;
  experiments: Record<string, { control: string; status: string; variants: Record<string, VariantRow> }>;
}

export interface ModelVersion {
  version: number;
  status: string;
  active: boolean;
  params: Record<string, unknown>;
  metrics: {
    gate?: { passed: boolean; reason: string };
    algorithms?: Record<string, Record<string, number>>;
    [key: string]: unknown;
  };
  n_interactions: number | null;
  created_at: string;
  activated_at: string | null;
  notes?: string | null;
  /** Canary rollout of this version (trainer ``rollout.Rollouts``), null when it had none. */
  rollout?: { state: string; share: number; evidence?: Record<string, unknown> } | null;
}

export interface ModelList {
  active_version: number | null;
  canary_version?: number | null;
  models: ModelVersion[];
}

export interface TrainJob {
  job_id: string;
  status: "queued" | "running" | "published" | "rejected" | "failed";
  reason: string | null;
  model_version: number | null;
  metrics: Record<string, unknown>;
  error: string | null;
  created_at: string;
  updated_at: string;
}

export interface Readiness {
  status: "ready" | "not_ready";
  checks: Record<string, boolean>;
}
