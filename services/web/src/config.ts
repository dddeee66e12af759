/** Runtime configuration, read from /config.json next to the bundle (no rebuild per
 * environment). Holds public URLs and the publishable key only: never an admin key. */
export interface AppConfig {
  ingestUrl: string;
  recommenderUrl: string;
  trainerUrl: string;
  publishableKey: string;
}

function isConfig(value: unknown): value is AppConfig {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return ["ingestUrl", "recommenderUrl", "trainerUrl", "publishableKey"].every(
    (k) => typeof v[k] === "string",
  );
}

export async function loadConfig(fetchImpl: typeof fetch = fetch): Promise<AppConfig> {
  const res = await fetchImpl("/config.json", { cache: "no-store" });
  if (!res.ok) throw new Error(`config.json: HTTP ${res.status}`);
  const body: unknown = await res.json();
  if (!isConfig(body)) {
    throw new Error("config.json: needs ingestUrl, recommenderUrl, trainerUrl, publishableKey");
  }
  const trim = (u: string) => u.replace(/\/+$/, "");
  return {
    ingestUrl: trim(body.ingestUrl),
    recommenderUrl: trim(body.recommenderUrl),
    trainerUrl: trim(body.trainerUrl),
    publishableKey: body.publishableKey,
  };
}
