"""The local stack starts what works behind the request path at a lower CPU priority."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil
import pytest

from streamrec_dev.localstack.processes import spawn, stop, wait_until
from streamrec_dev.localstack.stack import BACKGROUND_NICE, background_nice

SLEEPER = "import time; time.sleep(30)"
PARENT = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {SLEEPER!r}]); {SLEEPER}"


def test_consumers_and_postgres_yield_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMREC_LOCAL_NICE", raising=False)
    assert BACKGROUND_NICE > 0
    for name in ("stream-processor", "trainer", "postgres"):
        assert background_nice(name) == BACKGROUND_NICE
    for name in ("ingest", "recommender", "broker", "redis", "web"):
        assert background_nice(name) == 0
    monkeypatch.setenv("STREAMREC_LOCAL_NICE", "0")
    assert background_nice("trainer") == 0


def test_a_spawned_process_and_its_children_run_at_the_given_nice(tmp_path: Path) -> None:
    proc = spawn("niced", [sys.executable, "-c", PARENT], log_dir=tmp_path, nice=7)
    try:
        handle = proc.handle()
        assert handle is not None  # nice execs the command: the pid is the command's

        def started() -> bool:  # nice has set the priority and exec'd the command
            return bool(handle.cmdline()) and handle.cmdline()[0] == sys.executable

        wait_until(started, timeout=10.0, what="the command", interval=0.01)
        wait_until(lambda: bool(handle.children()), timeout=10.0, what="its child", interval=0.01)
        assert handle.nice() == psutil.Process().nice() + 7
        assert [c.nice() for c in handle.children()] == [handle.nice()]
    finally:
        stop(proc)
