import { useState } from "react";
import { ErrorMessage, QueryState } from "../../components/QueryState";
import { useModels, useStartTraining, useTrainJob } from "../../hooks/api";

const JOBS_KEY = "streamrec.jobs";

function Job(props: { id: string }) {
  const job = useTrainJob(props.id);
  return (
    <li>
      <code>{props.id.slice(0, 8)}</code>{" "}
      <QueryState query={job} what="job status">
        {(j) => (
          <span role="status">
            {j.status}
            {j.status === "queued" || j.status === "running" ? <progress aria-label="training progress" /> : null}
            {j.model_version != null ? ` → model v${j.model_version}` : ""}
            {j.reason ? ` (${j.reason})` : ""}
            {j.error ? ` error: ${j.error}` : ""} · updated {new Date(j.updated_at).toLocaleTimeString()}
          </span>
        )}
      </QueryState>
    </li>
  );
}

export default function Training() {
  const start = useStartTraining();
  const models = useModels();
  const [jobs, setJobs] = useState<string[]>(() => JSON.parse(sessionStorage.getItem(JOBS_KEY) ?? "[]"));
  const run = () =>
    start.mutate(undefined, {
      onSuccess: ({ job_id }) => {
        const next = [job_id, ...jobs];
        sessionStorage.setItem(JOBS_KEY, JSON.stringify(next));
        setJobs(next);
      },
    });
  return (
    <section aria-labelledby="train-h">
      <h1 id="train-h">Training jobs</h1>
      <button type="button" onClick={run} disabled={start.isPending}>
        Start training
      </button>
      {start.isError ? <ErrorMessage error={start.error} what="a training job" action="start" /> : null}
      <h2>Started from this console</h2>
      {jobs.length === 0 ? <p>None yet.</p> : null}
      <ul>
        {jobs.map((id) => (
          <Job key={id} id={id} />
        ))}
      </ul>
      <h2>History (published versions)</h2>
      <QueryState query={models} what="model history">
        {(d) => (
          <ul>
            {d.models.map((m) => (
              <li key={m.version}>
                v{m.version}: {m.status}, {m.n_interactions ?? "?"} interactions, {new Date(m.created_at).toLocaleString()}
              </li>
            ))}
          </ul>
        )}
      </QueryState>
    </section>
  );
}
