/** Loading and error states for a query: every call shows one, never a blank area. */
import type { ReactNode } from "react";
import { ApiError } from "../api/client";

export function errorText(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 0) return error.message;
    return `${error.message} (HTTP ${error.status})`;
  }
  return error instanceof Error ? error.message : String(error);
}

export function ErrorMessage(props: { error: unknown; what: string; action?: string }) {
  return (
    <p role="alert" className="error">
      Could not {props.action ?? "load"} {props.what}: {errorText(props.error)}
    </p>
  );
}

/** The part of a react-query result that QueryState reads. */
export interface QueryLike<T> {
  isPending: boolean;
  isError: boolean;
  error: unknown;
  data: T | undefined;
}

export function QueryState<T>(props: {
  query: QueryLike<T>;
  what: string;
  children: (data: T) => ReactNode;
}) {
  const q = props.query;
  if (q.isError) return <ErrorMessage error={q.error} what={props.what} />;
  if (q.isPending || q.data === undefined) {
    return (
      <p className="loading" role="status" aria-live="polite">
        Loading {props.what}…
      </p>
    );
  }
  return <>{props.children(q.data)}</>;
}
