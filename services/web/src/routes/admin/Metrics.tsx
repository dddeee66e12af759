import { useState } from "react";
import { BarChart } from "../../components/BarChart";
import { QueryState } from "../../components/QueryState";
import { useOnlineMetrics } from "../../hooks/api";
import type { Tally } from "../../api/types";

const WINDOWS = [
  [3600, "last hour"],
  [6 * 3600, "last 6 hours"],
  [86_400, "last 24 hours"],
  [7 * 86_400, "last 7 days"],
] as const;

const pct = (x: number) => `${(x * 100).toFixed(2)}%`;

function TallyRows(props: { rows: [string, Tally][] }) {
  return (
    <tbody>
      {props.rows.map(([name, t]) => (
        <tr key={name}>
          <td>{name}</td>
          <td>{t.impressions}</td>
          <td>{t.clicks}</td>
          <td>{pct(t.ctr)}</td>
          <td>{pct(t.hit_rate)}</td>
          <td>{pct(t.conversion_rate)}</td>
        </tr>
      ))}
    </tbody>
  );
}

const HEAD = (
  <thead>
    <tr>
      <th scope="col">Algorithm / variant</th>
      <th scope="col">Impressions</th>
      <th scope="col">Clicks</th>
      <th scope="col">CTR</th>
      <th scope="col">Hit rate</th>
      <th scope="col">Conversion</th>
    </tr>
  </thead>
);

export default function Metrics() {
  const [window, setWindow] = useState<number>(3600);
  const metrics = useOnlineMetrics(window);
  return (
    <section aria-labelledby="metrics-h">
      <h1 id="metrics-h">Online metrics</h1>
      <label htmlFor="window">Window</label>{" "}
      <select id="window" value={window} onChange={(e) => setWindow(Number(e.target.value))}>
        {WINDOWS.map(([s, label]) => (
          <option key={s} value={s}>
            {label}
          </option>
        ))}
      </select>
      <QueryState query={metrics} what="online metrics">
        {(m) => (
          <>
            <BarChart
              title="CTR, hit rate and conversion per algorithm"
              groups={Object.entries(m.algorithms).map(([a, t]) => ({
                label: a,
                values: [
                  { name: "CTR", value: t.ctr },
                  { name: "hit rate", value: t.hit_rate },
                  { name: "conversion", value: t.conversion_rate },
                ],
              }))}
            />
            <table className="table">
              <caption>Per algorithm (total {m.total.impressions} impressions)</caption>
              {HEAD}
              <TallyRows rows={Object.entries(m.algorithms)} />
            </table>
            {Object.entries(m.experiments).map(([name, exp]) => (
              <table className="table" key={name}>
                <caption>Experiment {name}</caption>
                {HEAD}
                <TallyRows rows={Object.entries(exp.variants)} />
              </table>
            ))}
          </>
        )}
      </QueryState>
    </section>
  );
}
