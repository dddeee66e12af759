"""Bring the whole local stack up and down; describe it in ``<state dir>/stack.json``."""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.server
import io
import json
import logging
import os
import secrets
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from streamrec_client import AsyncStreamrecClient
from streamrec_dev.localstack import infra
from streamrec_dev.localstack.processes import (
    Proc,
    free_port,
    port_open,
    spawn,
    stop,
    tail,
    wait_until,
)
from streamrec_shared import topics
from streamrec_shared.settings import KafkaSettings, PostgresSettings, hash_key

logger = logging.getLogger(__name__)

SERVICES = {
    # name: (python module, default port)
    "ingest": ("streamrec_ingest.main", 8000),
    "recommender": ("streamrec_recommender.main", 8001),
    "trainer": ("streamrec_trainer.main", 8002),
    "stream-processor": ("streamrec_stream_processor.main", 8003),
}
INFRA_PORTS = {"broker": 9092, "redis": 6379, "postgres": 5432}
# Tansu completes a group join after about half the rebalance timeout: keep them short locally.
WEB_PORT = 8080
# The publishable (browser) key: events and orders only, rate-limited per client address.
PUBLISHABLE_RATE = {"rate_per_s": 50, "burst": 200}
LOCAL_KAFKA_TIMING = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000,
                      "rebalance_timeout_ms": 3000}  # fmt: skip


@dataclass
class StackDescription:
    """What ``stack.json`` holds: how to reach every part of a running stack."""

    state_dir: str
    urls: dict[str, str]
    kafka_bootstrap: str
    redis_url: str
    postgres_dsn: str
    artifacts_uri: str
    api_keys: dict[str, str]
    rec_id_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    """Signs rec ids (recommender) and verifies them (processor): STREAMREC_FEEDBACK__REC_ID_KEY."""
    processes: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)

    @property
    def procs(self) -> list[Proc]:
        return [Proc(**p) for p in self.processes]

    def save(self) -> Path:
        path = Path(self.state_dir) / "stack.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.chmod(0o600)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, state_dir: Path) -> StackDescription:
        return cls(**json.loads((state_dir / "stack.json").read_text()))

    def client(self, key: str = "admin", **kwargs: Any) -> AsyncStreamrecClient:
        """A client for the stack's ingest, recommender and trainer, keyed with ``key``."""
        return AsyncStreamrecClient(
            ingest_url=self.urls["ingest"],
            recommender_url=self.urls["recommender"],
            trainer_url=self.urls["trainer"],
            api_key=self.api_keys[key],
            **kwargs,
        )

    def env(self) -> dict[str, str]:
        """Environment for a service process of this stack."""
        keys = [
            {"name": "admin", "sha256": hash_key(self.api_keys["admin"]),
             "scopes": ["admin", "events:write", "catalog:write"],
             "rate_per_s": 100000, "burst": 200000},
            {"name": "writer", "sha256": hash_key(self.api_keys["writer"]),
             "scopes": ["events:write", "catalog:write"], "rate_per_s": 100000, "burst": 200000},
            {"name": "reader", "sha256": hash_key(self.api_keys["reader"]),
             "scopes": ["profiles:read"], "rate_per_s": 100000, "burst": 200000},
        ]  # fmt: skip
        if "publishable" in self.api_keys:
            keys.append({"name": "publishable", "sha256": hash_key(self.api_keys["publishable"]),
                         "scopes": ["publishable"], **PUBLISHABLE_RATE})  # fmt: skip
        env = {
            "STREAMREC_KAFKA__BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "STREAMREC_KAFKA__ENABLE_IDEMPOTENCE": "false",
            "STREAMREC_REDIS__URL": self.redis_url,
            "STREAMREC_POSTGRES__DSN": self.postgres_dsn,
            "STREAMREC_ARTIFACTS__URI": self.artifacts_uri,
            "STREAMREC_AUTH__API_KEYS": json.dumps(keys),
            "STREAMREC_FEEDBACK__REC_ID_KEY": self.rec_id_key,
            "STREAMREC_LOG__LEVEL": os.environ.get("STREAMREC_LOG__LEVEL", "INFO"),
            "STREAMREC_HTTP__CORS_ORIGINS": json.dumps(
                [self.urls["web"], self.urls["web"].replace("127.0.0.1", "localhost")]
                if "web" in self.urls
                else []
            ),
            # the test session and the benchmarks read from one address: no read limit here
            "STREAMREC_RECOMMENDER__READ_RATE_PER_S": "0",
            "OPENBLAS_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        for k, v in LOCAL_KAFKA_TIMING.items():
            env[f"STREAMREC_KAFKA__{k.upper()}"] = str(v)
        return env


TRAINER_TRIGGERS = {
    "STREAMREC_TRAINING__INTERVAL_S": "600",
    "STREAMREC_TRAINING__AFTER_EVENTS": "20000",
    "STREAMREC_TRAINING__ROLLOUT_CHECK_S": "10",
    "STREAMREC_TRAINING__ROLLOUT_MIN_IMPRESSIONS": "200",
}
"""Retraining by itself in the local stack: every 10 minutes and after 20k newly archived events,
each new version first a canary (10% of users, decided after 200 impressions per side: a laptop
demo; the environment overrides any of it, 0 turns a trigger off)."""
NO_TRIGGERS = {
    "STREAMREC_TRAINING__INTERVAL_S": "0",
    "STREAMREC_TRAINING__AFTER_EVENTS": "0",
    "STREAMREC_TRAINING__CANARY_SHARE": "0",
}
"""Models trained only on request and activated at once when published (the test session)."""

BACKGROUND = ("stream-processor", "trainer", "postgres")
BACKGROUND_NICE = 10
"""CPU priority (``nice``) of what works behind the request path: the consumers (the stream
processor and the trainer's archive and retrains catch up on a backlog) and Postgres (mostly the
archive's writes). On one machine they yield the cores to ingest, the recommender, the broker
and Redis whenever both want them and use the idle cores as before; measured under batched
writes on two cores (README, ingest). ``STREAMREC_LOCAL_NICE`` overrides it (0: all equal).
In Kubernetes each part has CPU requests and limits of its own instead."""


def background_nice(name: str) -> int:
    """The ``nice`` a stack part starts with (``BACKGROUND_NICE`` for ``BACKGROUND``, else 0)."""
    if name not in BACKGROUND:
        return 0
    return int(os.environ.get("STREAMREC_LOCAL_NICE", BACKGROUND_NICE))


def _port(preferred: int, fixed: bool) -> int:
    return preferred if fixed and not port_open(preferred) else free_port()


class LocalStack:
    """Owns the processes of one stack under ``state_dir``.

    ``fixed_ports`` uses the default ports where free (``make up``); tests use free ports.
    ``durable_broker`` keeps the broker's log in a local S3 bucket (see ``infra``) so that it
    survives a broker crash; the default in-memory log is faster and dies with the broker.
    ``triggers``: the trainer retrains by itself and rolls new versions out gradually
    (``TRAINER_TRIGGERS``); off, it trains only on request and activates what it publishes at
    once (``NO_TRIGGERS``: the test session, whose tests decide when a model is trained).
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        fixed_ports: bool = False,
        durable_broker: bool = False,
        triggers: bool = True,
    ) -> None:
        self.triggers = triggers
        self.state_dir = state_dir.resolve()
        self.log_dir = self.state_dir / "logs"
        self.fixed_ports = fixed_ports
        self.durable_broker = durable_broker
        self.broker_storage = infra.MEMORY
        self.desc: StackDescription | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self, *, services: tuple[str, ...] = tuple(SERVICES)) -> StackDescription:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        if (self.state_dir / "stack.json").exists():
            previous = StackDescription.load(self.state_dir)
            if any(p.alive() for p in previous.procs):
                raise RuntimeError(
                    f"a stack is running from {self.state_dir}; run 'make down' first"
                )
            # Left by a crash or a reboot: nothing of it runs any more. Start again on its data.
            logger.warning("removing the stale stack description in %s", self.state_dir)
            (self.state_dir / "stack.json").unlink()
        ports = {n: _port(p, self.fixed_ports) for n, p in INFRA_PORTS.items()}
        svc_ports = {n: _port(p, self.fixed_ports) for n, (_, p) in SERVICES.items()}
        urls = {n: f"http://127.0.0.1:{p}" for n, p in svc_ports.items()}
        dist = web_dist()
        if dist is not None:
            urls["web"] = f"http://127.0.0.1:{_port(WEB_PORT, self.fixed_ports)}"
        desc = self.desc = StackDescription(
            state_dir=str(self.state_dir),
            urls=urls,
            kafka_bootstrap=f"127.0.0.1:{ports['broker']}",
            redis_url=f"redis://127.0.0.1:{ports['redis']}/0",
            postgres_dsn=f"postgresql://streamrec@127.0.0.1:{ports['postgres']}/streamrec",
            artifacts_uri=(self.state_dir / "artifacts").as_uri(),
            api_keys={
                n: secrets.token_urlsafe(24) for n in ("admin", "writer", "reader", "publishable")
            },
        )
        desc.save()
        try:
            if self.durable_broker:
                store, self.broker_storage = infra.start_object_store(free_port(), self.log_dir)
                self._record(store)
            self._record(infra.start_broker(ports["broker"], self.log_dir, self.broker_storage))
            self._record(infra.start_redis(ports["redis"], self.state_dir / "redis", self.log_dir))
            self._record(
                infra.start_postgres(
                    ports["postgres"],
                    self.state_dir / "pg",
                    self.log_dir,
                    nice=background_nice("postgres"),
                )
            )
            asyncio.run(self._prepare())
            for name in services:
                self.start_service(name)
            if dist is not None:
                self.start_web(dist)
            self.wait_healthy(services)
        except BaseException:
            self.stop()
            raise
        return desc

    async def _prepare(self) -> None:
        """Create topics and apply migrations before the services race to do the same."""
        from streamrec_shared import postgres
        from streamrec_shared.kafka import ensure_topics

        assert self.desc is not None
        kafka = KafkaSettings(bootstrap_servers=self.desc.kafka_bootstrap)
        await ensure_topics(kafka, topics.topic_specs(kafka.events_partitions))
        pool = await postgres.create_pool(
            PostgresSettings(dsn=SecretStr(self.desc.postgres_dsn), min_size=1, max_size=2)
        )
        await pool.close()

    def start_service(self, name: str, *, extra_env: dict[str, str] | None = None) -> Proc:
        assert self.desc is not None
        port = self.desc.urls[name].rsplit(":", 1)[1]
        defaults = (TRAINER_TRIGGERS if self.triggers else NO_TRIGGERS) if name == "trainer" else {}
        env = {
            **defaults,
            **os.environ,
            **self.desc.env(),
            "STREAMREC_HTTP__PORT": port,
            **(extra_env or {}),
        }
        return self._spawn_service(name, name, env)

    def _spawn_service(self, service: str, name: str, env: dict[str, str]) -> Proc:
        """Start a process of ``service`` named ``name`` (at its ``background_nice``), recorded."""
        module, _ = SERVICES[service]
        proc = spawn(
            name,
            [sys.executable, "-m", module],
            log_dir=self.log_dir,
            env=env,
            nice=background_nice(service),
        )
        self._record(proc)
        return proc

    def start_web(self, dist: Path) -> Proc:
        """Serve the web app's bundle ``dist`` with this stack's ``config.json`` (service URLs
        and the publishable key only: admin keys never reach the browser)."""
        assert self.desc is not None
        config = self.state_dir / "web-config.json"
        config.write_text(json.dumps(web_config(self.desc), indent=2))
        port = self.desc.urls["web"].rsplit(":", 1)[1]
        cmd = [sys.executable, "-m", __name__, "--dist", str(dist), "--config", str(config),
               "--port", port]  # fmt: skip
        proc = spawn("web", cmd, log_dir=self.log_dir, env=dict(os.environ))
        self._record(proc)
        wait_until(lambda: port_open(int(port)), timeout=30.0, what="web server", interval=0.1)
        return proc

    def _record(self, proc: Proc) -> None:
        assert self.desc is not None
        self.desc.processes = [p for p in self.desc.processes if p["name"] != proc.name]
        self.desc.processes.append(asdict(proc))
        self.desc.save()

    def proc(self, name: str) -> Proc:
        assert self.desc is not None
        return next(p for p in self.desc.procs if p.name == name)

    def stop_process(self, name: str) -> None:
        stop(self.proc(name))

    def restart_broker(self) -> Proc:
        """Start the broker again on its port, on the same storage (after a stop or a kill)."""
        assert self.desc is not None
        port = int(self.desc.kafka_bootstrap.rsplit(":", 1)[1])
        proc = infra.start_broker(port, self.log_dir, self.broker_storage)
        self._record(proc)
        return proc

    def restart_postgres(self) -> Proc:
        """Start Postgres again on its port and data directory (after a stop or a kill)."""
        assert self.desc is not None
        port = int(self.desc.postgres_dsn.rsplit(":", 1)[1].split("/", 1)[0])
        proc = infra.start_postgres(
            port, self.state_dir / "pg", self.log_dir, nice=background_nice("postgres")
        )
        self._record(proc)
        return proc

    def start_worker(self, service: str, name: str) -> tuple[Proc, str]:
        """One more process of ``service`` named ``name`` on a free port (another consumer of
        the service's group: a rebalance); recorded, so ``stop`` stops it. Returns its URL."""
        assert self.desc is not None
        url = f"http://127.0.0.1:{free_port()}"
        env = {**os.environ, **self.desc.env(), "STREAMREC_HTTP__PORT": url.rsplit(":", 1)[1]}
        proc = self._spawn_service(service, name, env)
        return proc, url

    def wait_healthy(self, services: tuple[str, ...], timeout: float = 120.0) -> None:
        for name in services:
            self.wait_ready(name, path="/healthz", timeout=timeout)

    def wait_ready(self, name: str, *, path: str = "/readyz", timeout: float = 120.0) -> None:
        assert self.desc is not None
        proc = self.proc(name)
        url = self.desc.urls[name] + path

        def ok() -> bool:
            if not proc.alive():
                raise RuntimeError(f"{name} exited during start:\n{tail(proc.log, 60)}")
            try:
                return httpx.get(url, timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ok, timeout=timeout, what=f"{name} {path}", interval=0.2)

    def stop(self) -> None:
        """Stop every process this stack started (services first), remove stack.json."""
        desc = self.desc
        if desc is None and (self.state_dir / "stack.json").exists():
            desc = self.desc = StackDescription.load(self.state_dir)
        if desc is None:
            return
        order = {
            name: i
            for i, name in enumerate(
                ["web", *SERVICES, "broker", "object-store", "redis", "postgres"]
            )
        }
        for proc in sorted(desc.procs, key=lambda p: order.get(p.name, 0)):
            # Postgres: SIGINT is its fast shutdown (SIGTERM waits for clients to leave).
            stop(proc, sig=signal.SIGINT if proc.name == "postgres" else signal.SIGTERM)
        (self.state_dir / "stack.json").unlink(missing_ok=True)
        self.desc = None


def web_dist() -> Path | None:
    """The built web app (``services/web/dist`` with an ``index.html``), found from
    ``STREAMREC_WEB_DIST`` or by walking up from this file to the repo; None when not built."""
    env = os.environ.get("STREAMREC_WEB_DIST")
    candidates = [Path(env)] if env else [
        parent / "services" / "web" / "dist" for parent in Path(__file__).resolve().parents
    ]  # fmt: skip
    return next((c for c in candidates if (c / "index.html").is_file()), None)


def web_config(desc: StackDescription) -> dict[str, Any]:
    """What the browser app reads from ``/config.json``: public API URLs, publishable key."""
    return {
        "ingestUrl": desc.urls["ingest"],
        "recommenderUrl": desc.urls["recommender"],
        "trainerUrl": desc.urls["trainer"],
        "publishableKey": desc.api_keys.get("publishable", ""),
    }


class _WebHandler(http.server.SimpleHTTPRequestHandler):
    """The bundle's files; ``/config.json`` from the stack; other paths -> ``index.html``
    (client-side routes)."""

    config: Path

    def __init__(self, *args: Any, config: Path, **kwargs: Any) -> None:
        self.config = config
        super().__init__(*args, **kwargs)

    def send_head(self) -> Any:
        path = self.path.split("?", 1)[0]
        if path == "/config.json":
            body = self.config.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            return io.BytesIO(body)
        if not Path(self.translate_path(path)).exists():
            self.path = "/index.html"
        return super().send_head()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_web(dist: Path, config: Path, port: int) -> None:
    handler = functools.partial(_WebHandler, directory=str(dist), config=config)
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="serve the web app of a local stack")
    parser.add_argument("--dist", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    a = parser.parse_args()
    serve_web(a.dist, a.config, a.port)
