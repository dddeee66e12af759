"""The recommender's uvicorn workers: one listening socket each, one CPU each.

The stack test runs against the real local stack (two workers by default); the CPU choice is
pure logic tested with stand-in siblings.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any, cast

import psutil
import pytest

from streamrec_dev.localstack.stack import LocalStack, StackDescription
from streamrec_recommender.main import ReusePortWorker

from ..polling import eventually, now


def _listening(proc: psutil.Process, port: int) -> int:
    try:
        conns = proc.net_connections(kind="tcp")
    except psutil.Error:
        return 0
    return sum(1 for c in conns if c.status == psutil.CONN_LISTEN and c.laddr.port == port)


async def test_each_worker_listens_on_its_own_socket_and_cpu(
    local_stack: LocalStack, stack: StackDescription
) -> None:
    if "recommender" not in stack.urls:
        pytest.skip("the stack runs without the recommender")
    port = int(stack.urls["recommender"].rsplit(":", 1)[1])
    parent = psutil.Process(local_stack.proc("recommender").pid)

    def workers() -> list[psutil.Process]:
        return [c for c in parent.children() if _listening(c, port) == 1]

    await eventually(now(lambda: len(workers()) >= 2), timeout=60, what="two listening workers")
    # The supervisor holds no listener: were the socket shared (bound by the parent and
    # inherited), connections would keep queueing on it after its worker died.
    assert _listening(parent, port) == 0
    if len(os.sched_getaffinity(0)) >= 2:
        cpus = [tuple(w.cpu_affinity()) for w in workers()]
        assert all(len(c) == 1 for c in cpus), cpus
        assert len(set(cpus)) == len(cpus), cpus


def _worker(cpu: int | None, exitcode: int | None = None) -> ReusePortWorker:
    w = object.__new__(ReusePortWorker)
    w.cpu = cpu
    cast(Any, w).process = SimpleNamespace(exitcode=exitcode)
    return w


def test_a_worker_takes_the_cpu_fewest_live_siblings_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    monkeypatch.setattr(ReusePortWorker, "siblings", [])
    new = object.__new__(ReusePortWorker)
    assert new._free_cpu() == 0
    ReusePortWorker.siblings.append(_worker(0))
    assert new._free_cpu() == 1
    ReusePortWorker.siblings.append(_worker(1))
    assert new._free_cpu() == 0
    # the worker on CPU 1 died: its replacement takes CPU 1, and the dead one is forgotten
    ReusePortWorker.siblings[1] = _worker(1, exitcode=-9)
    assert new._free_cpu() == 1
    assert [w.cpu for w in ReusePortWorker.siblings] == [0]
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {3})
    assert new._free_cpu() is None  # one CPU: nothing to pin
