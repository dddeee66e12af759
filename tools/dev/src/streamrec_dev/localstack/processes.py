"""Starting, tracking and stopping local processes (each in its own session/process group)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

# Children started by this process, kept so they are reaped (no zombies) and never garbage-collected
# while running. Processes of a stack started by another process (make up) are found by pid.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Proc:
    """A process the stack started: enough to find it again and stop only it."""

    name: str
    pid: int
    create_time: float
    log: str

    def handle(self) -> psutil.Process | None:
        """The live process, if this pid still is the process we started."""
        try:
            p = psutil.Process(self.pid)
            if abs(p.create_time() - self.create_time) > 0.5:
                return None  # pid reused by something else: not ours
            if p.status() == psutil.STATUS_ZOMBIE:
                return None
            return p
        except psutil.NoSuchProcess:
            return None

    def alive(self) -> bool:
        return self.handle() is not None


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    nice: int = 0,
) -> Proc:
    """Start ``argv`` detached in a new session, stdout/stderr to ``log_dir/name.log``; ``nice``
    > 0 runs it (and every thread and child it starts) at that lower CPU priority."""
    if nice > 0:
        argv = [shutil.which("nice") or "nice", "-n", str(nice), *argv]
    log_path = log_dir / f"{name}.log"
    log = log_path.open("ab")
    drop: dict[str, Any] = {"user": user, "group": user, "extra_groups": []} if user else {}
    try:
        popen = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            **drop,
        )
    finally:
        log.close()
    _CHILDREN[popen.pid] = popen
    created = psutil.Process(popen.pid).create_time()
    return Proc(name=name, pid=popen.pid, create_time=created, log=str(log_path))


def stop(proc: Proc, *, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Signal the process group, wait, then SIGKILL what is left. Only our own processes."""
    p = proc.handle()
    if p is None:
        return
    members = [p, *p.children(recursive=True)]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    for m in members:
        with contextlib.suppress(psutil.NoSuchProcess):
            m.send_signal(sig)
    _, alive = psutil.wait_procs(members, timeout=timeout)
    for m in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            m.kill()
    psutil.wait_procs(alive, timeout=5)
    child = _CHILDREN.pop(proc.pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)


def kill(proc: Proc) -> None:
    """SIGKILL at once (failure tests)."""
    stop(proc, timeout=5, sig=signal.SIGKILL)


def wait_until(predicate: object, *, timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``predicate()`` until true or raise TimeoutError naming ``what``."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def tail(path: str, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
