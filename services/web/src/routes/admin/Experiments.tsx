import { useState, type FormEvent } from "react";
import { DataTable } from "../../components/DataTable";
import { ErrorMessage, QueryState } from "../../components/QueryState";
import { useExperiment, useOnlineMetrics, usePutExperiment } from "../../hooks/api";
import type { Experiment } from "../../api/types";

const ALGORITHMS = ["als", "itemknn", "content", "popular", "hybrid"];

interface VariantRowIn {
  name: string;
  algorithm: string;
  weight: number;
}

function ExperimentForm(props: { onSaved: (name: string) => void }) {
  const put = usePutExperiment();
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [variants, setVariants] = useState<VariantRowIn[]>([
    { name: "control", algorithm: "als", weight: 1 },
    { name: "treatment", algorithm: "hybrid", weight: 1 },
  ]);
  const set = (i: number, patch: Partial<VariantRowIn>) =>
    setVariants((vs) => vs.map((v, j) => (j === i ? { ...v, ...patch } : v)));
  const submit = (e: FormEvent) => {
    e.preventDefault();
    put.mutate(
      { name, body: { variants, status: "running", description } },
      { onSuccess: () => props.onSaved(name) },
    );
  };
  return (
    <form onSubmit={submit} className="form" aria-labelledby="exp-new-h">
      <h2 id="exp-new-h">Start an experiment</h2>
      <label htmlFor="exp-name">Name</label>
      <input id="exp-name" value={name} onChange={(e) => setName(e.target.value)} required pattern="[A-Za-z0-9_.-]+" />
      <label htmlFor="exp-desc">Description</label>
      <input id="exp-desc" value={description} onChange={(e) => setDescription(e.target.value)} />
      <fieldset>
        <legend>Variants (the first is the control)</legend>
        {variants.map((v, i) => (
          <div key={i} className="row">
            <label htmlFor={`v-name-${i}`}>Variant {i + 1} name</label>
            <input id={`v-name-${i}`} value={v.name} onChange={(e) => set(i, { name: e.target.value })} required />
            <label htmlFor={`v-algo-${i}`}>algorithm</label>
            <select id={`v-algo-${i}`} value={v.algorithm} onChange={(e) => set(i, { algorithm: e.target.value })}>
              {ALGORITHMS.map((a) => (
                <option key={a}>{a}</option>
              ))}
            </select>
            <label htmlFor={`v-weight-${i}`}>weight</label>
            <input
              id={`v-weight-${i}`}
              type="number"
              min={0}
              step="0.1"
              value={v.weight}
              onChange={(e) => set(i, { weight: Number(e.target.value) })}
            />
          </div>
        ))}
        <button type="button" onClick={() => setVariants((vs) => [...vs, { name: `v${vs.length + 1}`, algorithm: "popular", weight: 1 }])}>
          Add variant
        </button>
      </fieldset>
      <button type="submit" disabled={put.isPending}>
        Start
      </button>
      {put.isError ? <ErrorMessage error={put.error} what="the experiment" action="save" /> : null}
    </form>
  );
}

function ExperimentCard(props: { name: string }) {
  const exp = useExperiment(props.name);
  const put = usePutExperiment();
  const stop = (e: Experiment) =>
    put.mutate({
      name: e.name,
      body: { variants: e.variants, status: "stopped", description: e.description },
    });
  return (
    <QueryState query={exp} what={`experiment ${props.name}`}>
      {(e) => (
        <div>
          <p>
            <strong>{e.name}</strong> — {e.status} — control: {e.control}; variants:{" "}
            {e.variants.map((v) => `${v.name} (${v.algorithm}, weight ${v.weight})`).join(", ")}
          </p>
          {e.status === "running" ? (
            <button type="button" onClick={() => stop(e)} disabled={put.isPending}>
              Stop {e.name}
            </button>
          ) : null}
          {put.isError ? <ErrorMessage error={put.error} what="the change" action="save" /> : null}
        </div>
      )}
    </QueryState>
  );
}

export default function Experiments() {
  const metrics = useOnlineMetrics(86_400);
  const [names, setNames] = useState<string[]>(() => JSON.parse(sessionStorage.getItem("streamrec.exps") ?? "[]"));
  const remember = (n: string) => {
    const next = Array.from(new Set([...names, n]));
    sessionStorage.setItem("streamrec.exps", JSON.stringify(next));
    setNames(next);
  };
  const known = Array.from(new Set([...names, ...Object.keys(metrics.data?.experiments ?? {})]));
  return (
    <section aria-labelledby="exp-h">
      <h1 id="exp-h">Experiments</h1>
      <ExperimentForm onSaved={remember} />
      <h2>Experiments</h2>
      {known.length === 0 ? <p>No experiments seen yet (started here or with traffic in the last 24 h).</p> : null}
      {known.map((n) => (
        <ExperimentCard key={n} name={n} />
      ))}
      <h2>Results (last 24 h)</h2>
      <QueryState query={metrics} what="experiment results">
        {(m) =>
          Object.keys(m.experiments).length === 0 ? (
            <p>No experiment traffic yet.</p>
          ) : (
            Object.entries(m.experiments).map(([name, exp]) => (
              <DataTable
                key={name}
                showCaption
                caption={`${name} (${exp.status}; control ${exp.control})`}
                columns={["Variant", "Impressions", "CTR", "Hit rate", "Lift", "p-value", "Significant"]}
              >
                {Object.entries(exp.variants).map(([v, row]) => (
                  <tr key={v}>
                    <td>{v}{row.control ? " (control)" : ""}</td>
                    <td>{row.impressions}</td>
                    <td>{(row.ctr * 100).toFixed(2)}%</td>
                    <td>{(row.hit_rate * 100).toFixed(2)}%</td>
                    <td>{row.significance?.lift != null ? `${(row.significance.lift * 100).toFixed(1)}%` : "—"}</td>
                    <td>{row.significance ? row.significance.p_value.toFixed(4) : "—"}</td>
                    <td>{row.significance ? (row.significance.significant ? "yes" : "no") : "—"}</td>
                  </tr>
                ))}
              </DataTable>
            ))
          )
        }
      </QueryState>
    </section>
  );
}
