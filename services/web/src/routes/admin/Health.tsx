import { DataTable } from "../../components/DataTable";
import { ApiError } from "../../api/client";
import type { Readiness } from "../../api/types";
import { errorText } from "../../components/QueryState";
import { useReadiness } from "../../hooks/api";

function Service(props: { name: "ingest" | "recommender" | "trainer" }) {
  const q = useReadiness(props.name);
  const checks: Record<string, boolean> | undefined =
    q.data?.checks ??
    (q.error instanceof ApiError ? (q.error.details as Readiness | undefined)?.checks : undefined);
  const state = q.isPending ? "checking…" : q.isError ? "not ready" : "ready";
  return (
    <tr>
      <th scope="row">{props.name}</th>
      <td className={q.isError ? "bad" : q.isPending ? "" : "good"}>{state}</td>
      <td>
        {checks
          ? Object.entries(checks)
              .map(([k, ok]) => `${k}: ${ok ? "ok" : "DOWN"}`)
              .join(", ")
          : q.isError
            ? errorText(q.error)
            : ""}
      </td>
    </tr>
  );
}

export default function Health() {
  return (
    <section aria-labelledby="health-h">
      <h1 id="health-h">Service health</h1>
      <DataTable caption="Readiness of each service (every 5 s)" columns={["Service", "Ready", "Checks"]}>
        <Service name="ingest" />
        <Service name="recommender" />
        <Service name="trainer" />
      </DataTable>
    </section>
  );
}
