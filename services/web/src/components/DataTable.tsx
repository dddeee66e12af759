/** The console's and the cart's tables: one caption (read to screen readers only unless
 * `showCaption`), a header row of column titles, and the caller's rows as the body. */
import type { ReactNode } from "react";

export function DataTable(props: {
  caption: ReactNode;
  showCaption?: boolean;
  columns: readonly ReactNode[];
  testId?: string;
  children: ReactNode;
}) {
  return (
    <table className="table" data-testid={props.testId}>
      <caption className={props.showCaption ? undefined : "sr-only"}>{props.caption}</caption>
      <thead>
        <tr>
          {props.columns.map((c, i) => (
            <th scope="col" key={i}>
              {c}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>{props.children}</tbody>
    </table>
  );
}
