"""wrk as an open-loop load generator, shared by the HTTP benchmarks.

A benchmark writes the Lua that builds its requests (``init`` and ``request``); ``script`` appends
the send schedule and the summary:

- ``delay()``: one arrival schedule per wrk thread (the benchmarks run one), read from the
  monotonic clock (LuaJIT ffi): exactly ``rate x seconds`` requests at independent uniformly
  random times of the phase, i.e. a Poisson process conditioned on its count. Its gaps are those
  of a Poisson process at ``rate`` (the same bursts), but the count does not vary: with free
  exponential gaps a 10 s phase at 100 req/s offered 1,000 +- 32 requests (one standard
  deviation), so a server that kept up with every request could show 96% of the offered load and
  fail the ">= 97% served" rule by the draw alone (batched levels of 2026-12-07: 94-104%).
  A connection that becomes free waits for the next scheduled slot; slots missed while every
  connection was busy are sent at once (at most 1 s of backlog; older ones are dropped and so
  missing from the achieved rate), so slow answers do not lower the offered rate as think-time
  pacing would. wrk measures latency from when a request is written, so at overload the
  achieved rate, not the latency, tells the story.
- ``done()``: prints one ``RESULT {json}`` line: requests, duration, socket errors (connect,
  read, write, timeout), non-2xx/3xx answers, and latency percentiles in ms.

``run`` starts wrk for a bounded time and returns that summary with the offered and achieved
rates; ``cpu_seconds`` samples what the measured processes used meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from streamrec_dev.localstack.stack import SERVICES, LocalStack

SCHEDULE_AND_SUMMARY_LUA = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local bench_ts = ffi.new("bench_timespec")
local function bench_now_ms()
  ffi.C.clock_gettime(1, bench_ts)
  return tonumber(bench_ts.tv_sec) * 1000 + tonumber(bench_ts.tv_nsec) / 1e6
end
local bench_span_ms = tonumber(os.getenv("BENCH_SECONDS")) * 1000
local bench_left = math.floor(tonumber(os.getenv("BENCH_RATE")) * bench_span_ms / 1000 + 0.5)
local bench_start = nil
local bench_at = 0  -- the last slot handed out, as a fraction of the phase

-- the next of bench_left uniform slots in ascending order, as a fraction of the phase: the
-- minimum of n uniforms on (x, 1) is 1 - (1 - x) * (1 - u) ^ (1 / n)
local function bench_next_slot()
  bench_at = 1 - (1 - bench_at) * (1 - math.random()) ^ (1 / bench_left)
  bench_left = bench_left - 1
  return bench_start + bench_at * bench_span_ms
end

delay = function()
  local now = bench_now_ms()
  if bench_start == nil then
    bench_start = now
  end
  local slot = nil
  while bench_left > 0 do
    slot = bench_next_slot()
    if slot >= now - 1000 then
      break
    end
    slot = nil  -- more than 1 s late: dropped
  end
  if slot == nil then  -- every slot handed out: idle until wrk ends the phase
    return math.floor(bench_span_ms + 1000)
  end
  local wait = slot - now
  if wait < 1 then
    return 0
  end
  return math.floor(wait)
end

done = function(summary, latency, requests)
  local socket_errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format(
    "RESULT {\"requests\": %d, \"duration_us\": %d, \"socket_errors\": %d, " ..
    "\"status_errors\": %d, \"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, " ..
    "\"p999_ms\": %.3f, \"max_ms\": %.3f, \"mean_ms\": %.3f}\n",
    summary.requests, summary.duration, socket_errors, summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000, latency.mean / 1000))
end
"""


EVENTS_LUA = r"""
local event_types = {"view", "view", "view", "view", "click", "click", "add_to_cart", "purchase"}
local event_headers = {
  ["Content-Type"] = "application/json", ["X-API-Key"] = os.getenv("BENCH_KEY")}
local event_bodies = {}
local event_counter = 0

-- n bodies of POST /v1/events, each of `batch` events from event() (batch 1: the bare event)
local function make_event_bodies(n, batch, event)
  local bodies = {}
  for i = 1, n do
    if batch == 1 then
      bodies[i] = event()
    else
      local parts = {}
      for j = 1, batch do parts[j] = event() end
      bodies[i] = '{"events":[' .. table.concat(parts, ",") .. ']}'
    end
  end
  return bodies
end

-- the next of event_bodies, round robin
local function post_events()
  event_counter = event_counter + 1
  return wrk.format("POST", "/v1/events", event_headers,
    event_bodies[(event_counter % #event_bodies) + 1])
end
"""
"""Lua for the benchmarks that post events: ``event_types`` (the mix: half views), ``BENCH_KEY``
as the API key, ``make_event_bodies(n, batch, event)`` to fill ``event_bodies`` in ``init`` and
``post_events()`` to send them in turn. Goes before the benchmark's own Lua."""


def script(requests_lua: str) -> str:
    """The whole wrk script: the benchmark's ``init``/``request`` plus schedule and summary."""
    return requests_lua + SCHEDULE_AND_SUMMARY_LUA


def prepare() -> None:
    """Before a wrk benchmark: exit when wrk is missing; SIGTERM and SIGINT end the run through
    its ``finally`` blocks (every stack stopped, nothing left running)."""
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))


@contextlib.contextmanager
def on_stack(
    name: str,
    requests_lua: str,
    services: tuple[str, ...] = tuple(SERVICES),
    *,
    durable_broker: bool = False,
) -> Iterator[tuple[LocalStack, Path]]:
    """A temporary folder holding the wrk script ``<name>.lua`` (``script(requests_lua)``) and a
    local stack of ``services`` started in it (on the durable broker with ``durable_broker``);
    yields both, stops the stack at the end."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        path = Path(tmp) / f"{name}.lua"
        path.write_text(script(requests_lua))
        stack = LocalStack(Path(tmp) / "stack", durable_broker=durable_broker)
        stack.start(services=services)
        try:
            yield stack, path
        finally:
            stack.stop()


def describe(connections: int) -> str:
    return f"wrk -t1 -c{connections}, open-loop Poisson schedule (Lua delay())"


def run(
    url: str,
    script_path: Path,
    *,
    rate: float,
    seconds: int,
    connections: int,
    timeout_s: float = 5.0,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One load level: ``rate`` requests/s offered for ``seconds``; wrk's summary plus rates."""
    full_env = {
        **os.environ,
        **(env or {}),
        "BENCH_RATE": f"{rate:.3f}",
        "BENCH_SECONDS": str(seconds),
    }
    cmd = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", f"{timeout_s:g}s",
        "-s", str(script_path), url,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=seconds + 60)
    m = re.search(r"^RESULT (\{.*\})$", out.stdout, re.M)
    if m is None:
        raise RuntimeError(f"wrk gave no result:\n{out.stdout}\n{out.stderr}")
    res: dict[str, Any] = json.loads(m.group(1))
    res["offered_rps"] = rate
    res["achieved_rps"] = round(res["requests"] / (res["duration_us"] / 1e6), 1)
    return res


def sustained(row: dict[str, Any], p99_limit_ms: float) -> bool:
    """Served >= 97% of the offered load, with no error and p99 within the limit."""
    return (
        row["achieved_rps"] >= 0.97 * row["offered_rps"]
        and row["socket_errors"] == 0
        and row["status_errors"] == 0
        and row["p99_ms"] <= p99_limit_ms
    )


def tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (uvicorn workers, Postgres backends)."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds used so far by ``procs`` (gone ones count as 0)."""
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total
