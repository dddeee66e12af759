// Generate TypeScript types from the services' OpenAPI documents (openapi/*.json, written by
// scripts/dump_openapi.py) into src/api/generated/. Run: npm run gen:api
import { execFileSync } from "node:child_process";
for (const name of ["ingest", "recommender", "trainer"]) {
  execFileSync(
    "npx",
    ["openapi-typescript", `openapi/${name}.json`, "-o", `src/api/generated/${name}.ts`],
    { stdio: "inherit" },
  );
}
