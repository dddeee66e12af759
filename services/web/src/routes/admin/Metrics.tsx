import { useState } from "react";
import { BarChart } from "../../components/BarChart";
import { DataTable } from "../../components/DataTable";
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

function TallyTable(props: { caption: string; rows: [string, Tally][] }) {
  return (
    <DataTable showCaption caption={props.caption} columns={COLUMNS}>
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
    </DataTable>
  );
}

const COLUMNS = ["Algorithm / variant", "Impressions", "Clicks", "CTR", "Hit rate", "Conversion"];

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
            <TallyTable
              caption={`Per algorithm (total ${m.total.impressions} impressions)`}
              rows={Object.entries(m.algorithms)}
            />
            {Object.entries(m.experiments).map(([name, exp]) => (
              <TallyTable key={name} caption={`Experiment ${name}`} rows={Object.entries(exp.variants)} />
            ))}
          </>
        )}
      </QueryState>
    </section>
  );
}
