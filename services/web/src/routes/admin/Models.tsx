import { BarChart } from "../../components/BarChart";
import { DataTable } from "../../components/DataTable";
import { ErrorMessage, QueryState } from "../../components/QueryState";
import { useActivateModel, useModels } from "../../hooks/api";
import type { ModelVersion } from "../../api/types";

const CUTOFFS = [5, 10, 20] as const;

function servedMetrics(m: ModelVersion): Record<string, number> {
  const algos = m.metrics.algorithms ?? {};
  return algos.als ?? Object.values(algos)[0] ?? {};
}

export default function Models() {
  const models = useModels();
  const activate = useActivateModel();
  return (
    <section aria-labelledby="models-h">
      <h1 id="models-h">Model registry</h1>
      <p className="hint">
        A newly published version first serves a canary share of users; the trainer promotes it or
        rolls it back from the online hit rates (Rollout column). Activate any published version to
        promote or roll back by hand.
      </p>
      <QueryState query={models} what="model versions">
        {(list) => {
          const ordered = [...list.models].sort((a, b) => a.version - b.version);
          return (
            <>
              <div className="charts">
                {(["hr", "ndcg", "recall"] as const).map((metric) => (
                  <BarChart
                    key={metric}
                    title={`ALS ${metric}@5/10/20 per version (holdout)`}
                    groups={ordered.map((m) => ({
                      label: `v${m.version}`,
                      values: CUTOFFS.map((k) => ({ name: `@${k}`, value: servedMetrics(m)[`${metric}@${k}`] ?? 0 })),
                    }))}
                  />
                ))}
              </div>
              <DataTable
                caption="Model versions"
                testId="models-table"
                columns={["Version", "Status", "Created", "Interactions", "HR@10", "NDCG@10", "Gate", "Rollout", "Action"]}
              >
                {list.models.map((m) => (
                  <tr key={m.version} data-version={m.version}>
                    <td>v{m.version}</td>
                    <td>{m.active ? <strong>active</strong> : m.status}</td>
                    <td>{new Date(m.created_at).toLocaleString()}</td>
                    <td>{m.n_interactions ?? "—"}</td>
                    <td>{(servedMetrics(m)["hr@10"] ?? 0).toFixed(3)}</td>
                    <td>{(servedMetrics(m)["ndcg@10"] ?? 0).toFixed(3)}</td>
                    <td>{m.metrics.gate ? (m.metrics.gate.passed ? "passed" : "failed") : "—"}</td>
                    <td>
                      {m.rollout
                        ? `${m.rollout.state}${m.rollout.state === "canary" ? ` (${Math.round(m.rollout.share * 100)}%)` : ""}`
                        : "—"}
                    </td>
                    <td>
                      {m.active ? (
                        "serving"
                      ) : !["published", "retired"].includes(m.status) ? (
                        "—"
                      ) : (
                        <button
                          type="button"
                          onClick={() => activate.mutate(m.version)}
                          disabled={activate.isPending}
                          aria-label={`Activate version ${m.version}`}
                        >
                          {m.version < (list.active_version ?? 0) ? "Roll back" : "Activate"}
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </DataTable>
            </>
          );
        }}
      </QueryState>
      {activate.isError ? <ErrorMessage error={activate.error} what="that version" action="activate" /> : null}
      {activate.isSuccess ? (
        <p role="status" className="ok">
          Version {activate.data.version} is active.
        </p>
      ) : null}
    </section>
  );
}
