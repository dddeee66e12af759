/** A small accessible SVG bar chart: groups of bars (e.g. metric @5/10/20 per version). */
export interface BarGroup {
  label: string;
  values: { name: string; value: number }[];
}

const COLORS = ["#1d4ed8", "#b45309", "#047857", "#7c3aed", "#be123c"];

export function BarChart(props: { title: string; groups: BarGroup[]; max?: number }) {
  const names = Array.from(new Set(props.groups.flatMap((g) => g.values.map((v) => v.name))));
  const max = props.max ?? Math.max(1e-9, ...props.groups.flatMap((g) => g.values.map((v) => v.value)));
  const barW = 14;
  const groupW = names.length * barW + 16;
  const h = 120;
  const width = Math.max(200, props.groups.length * groupW + 40);
  return (
    <figure className="chart">
      <figcaption>{props.title}</figcaption>
      <svg role="img" aria-label={props.title} width={width} height={h + 40} viewBox={`0 0 ${width} ${h + 40}`}>
        {props.groups.map((g, gi) => (
          <g key={g.label} transform={`translate(${30 + gi * groupW},0)`}>
            {g.values.map((v) => {
              const bh = (v.value / max) * h;
              const i = names.indexOf(v.name);
              return (
                <rect key={v.name} x={i * barW} y={h - bh + 5} width={barW - 2} height={bh} fill={COLORS[i % COLORS.length]}>
                  <title>{`${g.label} ${v.name}: ${v.value.toFixed(3)}`}</title>
                </rect>
              );
            })}
            <text x={0} y={h + 20} fontSize="11" fill="#111">
              {g.label}
            </text>
          </g>
        ))}
      </svg>
      <ul className="legend">
        {names.map((n, i) => (
          <li key={n}>
            <span className="swatch" style={{ background: COLORS[i % COLORS.length] }} aria-hidden="true" /> {n}
          </li>
        ))}
      </ul>
    </figure>
  );
}
