// End-to-end run of the storefront and the admin console in headless Debian Chromium
// (playwright-core, executablePath /usr/bin/chromium; nothing downloads a browser).
// Driven by tests/web/test_web_e2e.py against the real local stack. Inputs (env):
//   WEB_URL, ADMIN_KEY, SHOPPER, SEARCH_TYPO, SEARCH_EXPECT, OLD_VERSION, ARTIFACTS
// Each step throws on failure (exit 1); the last stdout line is a JSON summary the pytest
// side checks against Postgres and the APIs.
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing env ${k}`);
  return v;
};
const WEB = env("WEB_URL").replace(/\/$/, "");
const ART = env("ARTIFACTS");
mkdirSync(ART, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const shopper = env("SHOPPER");
await context.addInitScript((u) => localStorage.setItem("streamrec.shopper", u), shopper);
const page = await context.newPage();
const consoleErrors = [];
page.on("console", (m) => {
  if (m.type() === "error") consoleErrors.push(m.text());
});
page.on("pageerror", (e) => consoleErrors.push(`pageerror: ${e.message}`));
page.setDefaultTimeout(15_000);

const shot = (name) => page.screenshot({ path: `${ART}/${name}.png`, fullPage: true });
const stripIds = (testId) =>
  page.locator(`[data-testid="${testId}"] li[data-product-id]`).evaluateAll((els) =>
    els.map((e) => e.getAttribute("data-product-id")),
  );
const summary = {};

async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
    summary[name] = { ok: true, ms: Date.now() - started };
  } catch (err) {
    await shot(`failed-${name}`).catch(() => {});
    summary[name] = { ok: false, error: String(err) };
    console.log(JSON.stringify({ summary, consoleErrors }));
    await browser.close();
    process.exit(1);
  }
}

await step("home", async () => {
  await page.goto(`${WEB}/`);
  await page.locator('[data-testid="recommended"] li[data-product-id]').first().waitFor();
  await page.locator('[data-testid="trending"] li[data-product-id]').first().waitFor();
  await shot("01-home");
});

await step("search_typo", async () => {
  await page.getByLabel("Search products").fill(env("SEARCH_TYPO"));
  await page.getByRole("button", { name: "Search", exact: true }).click();
  const hit = page.locator(`[data-testid="search-results"] li[data-product-id="${env("SEARCH_EXPECT")}"]`);
  await hit.waitFor();
  summary.search_hits = await page
    .locator('[data-testid="search-results"] li[data-product-id]')
    .evaluateAll((els) => els.map((e) => e.getAttribute("data-product-id")));
  await shot("02-search");
});

await step("click_changes_recommendations", async () => {
  await page.goto(`${WEB}/`);
  const first = page.locator('[data-testid="recommended"] li[data-product-id]').first();
  await first.waitFor();
  const before = await stripIds("recommended");
  const clicked = await first.getAttribute("data-product-id");
  // click a recommended product: a click event with rec_id, then the product page's view
  const sent = page.waitForResponse((r) => r.url().includes("/v1/events") && r.request().method() === "POST" && r.status() === 202);
  await first.locator("a").click();
  await page.locator(`article.product[data-product-id="${clicked}"]`).waitFor();
  await sent;
  await page.locator('[data-testid="also-bought"], [role="alert"]').first().waitFor();
  await shot("03-product");
  // back home: "recommended for you" must differ within a second
  await page.getByRole("link", { name: "streamrec shop" }).click();
  await page.waitForFunction(
    (prev) => {
      const ids = [...document.querySelectorAll('[data-testid="recommended"] li[data-product-id]')].map((e) => e.getAttribute("data-product-id"));
      return ids.length > 0 && ids.join(",") !== prev;
    },
    before.join(","),
    { timeout: 1000 },
  );
  summary.recs_before = before;
  summary.recs_after = await stripIds("recommended");
  summary.clicked = clicked;
  summary.why_after = await page.locator('[data-testid="recommended"] [data-testid="why"]').innerText();
  await shot("04-home-after-click");
});

await step("category", async () => {
  await page.getByRole("navigation", { name: "Categories" }).getByRole("link").first().click();
  await page.locator("main li[data-product-id]").first().waitFor();
  await shot("05-category");
});

await step("checkout", async () => {
  const pid = env("SEARCH_EXPECT");
  await page.goto(`${WEB}/product/${encodeURIComponent(pid)}`);
  await page.getByRole("button", { name: "Add to cart" }).click();
  await page.getByTestId("cart-link").click();
  await page.locator(`tr[data-product-id="${pid}"]`).waitFor();
  await shot("06-cart");
  await page.getByRole("button", { name: "Check out" }).click();
  summary.order_id = await page.getByTestId("order-id").innerText();
  summary.order_product = pid;
  await shot("07-order-placed");
});

await step("admin_login", async () => {
  await page.goto(`${WEB}/admin`);
  await shot("08-admin-login");
  await page.getByLabel("Admin API key").fill(env("ADMIN_KEY"));
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByTestId("models-table").waitFor();
  await shot("09-admin-models");
});

await step("admin_activate_older", async () => {
  const v = env("OLD_VERSION");
  await page.getByRole("button", { name: `Activate version ${v}` }).click();
  await page.getByRole("status").filter({ hasText: `Version ${v} is active` }).waitFor();
  await shot("10-admin-activated");
  // the storefront shows the served model_version once the recommender swapped models
  const deadline = Date.now() + 60_000;
  for (;;) {
    await page.goto(`${WEB}/`);
    const tag = page.locator('[data-testid="recommended"] [data-testid="model-version"]');
    await tag.waitFor();
    if ((await tag.innerText()) === `v${v}`) break;
    if (Date.now() > deadline) throw new Error(`storefront still shows ${await tag.innerText()}`);
    await page.waitForTimeout(500);
  }
  summary.storefront_model_version = Number(v);
  await shot("11-home-older-model");
});

await step("admin_campaign_create_delete", async () => {
  await page.goto(`${WEB}/admin/campaigns`);
  await page.getByRole("button", { name: "New campaign" }).click();
  await page.getByLabel("Name").fill("web-e2e-boost");
  await page.getByLabel("Product ids (comma-separated)").fill(env("SEARCH_EXPECT"));
  await page.getByRole("button", { name: "Save campaign" }).click();
  await page.getByRole("button", { name: "Delete web-e2e-boost" }).waitFor();
  await page.getByLabel("User id").fill(shopper);
  await page.locator('[data-testid="campaign-preview"] li[data-product-id]').first().waitFor();
  await shot("12-admin-campaign");
  await page.getByRole("button", { name: "Delete web-e2e-boost" }).click();
  await page.getByRole("button", { name: "Delete web-e2e-boost" }).waitFor({ state: "detached" });
});

for (const [i, section] of ["experiments", "campaigns", "metrics", "training", "catalog", "health"].entries()) {
  await step(`admin_${section}`, async () => {
    await page.goto(`${WEB}/admin/${section}`);
    await page.locator("main h1").first().waitFor();
    await page.waitForLoadState("networkidle").catch(() => {});
    if (section === "catalog") {
      await page.getByLabel("Find products").fill(env("SEARCH_TYPO"));
      await page.getByRole("button", { name: "Search" }).click();
      await page.locator(`tr[data-product-id="${env("SEARCH_EXPECT")}"]`).waitFor();
    }
    if (section === "health") await page.locator("td.good").first().waitFor();
    await shot(`${String(13 + i).padStart(2, "0")}-admin-${section}`);
  });
}

await step("responsive_phone", async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${WEB}/`);
  await page.locator('[data-testid="recommended"] li[data-product-id]').first().waitFor();
  // nothing wider than the screen: no sideways scrolling on a phone
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 1) throw new Error(`page is ${overflow}px wider than a 390px screen`);
  await shot("20-home-phone");
});

summary.console_errors = consoleErrors;
console.log(JSON.stringify(summary));
await browser.close();
