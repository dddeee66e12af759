"""``streamrec-stack up|down|status``: the local stack from the command line (make up/down)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from streamrec_dev.localstack import demo
from streamrec_dev.localstack.stack import SERVICES, LocalStack, StackDescription

DEFAULT_DIR = Path(".streamrec")


def _print_summary(desc: StackDescription, took: float) -> None:
    key = desc.api_keys["admin"]
    ing, rec, tr = desc.urls["ingest"], desc.urls["recommender"], desc.urls["trainer"]
    print(f"\nstreamrec local stack is up ({took:.0f}s). Description: {desc.state_dir}/stack.json")
    for name, url in desc.urls.items():
        if name == "web":
            print(f"  {'web':17s} {url}   (storefront; admin console at {url}/admin)")
            continue
        print(f"  {name:17s} {url}   (docs: {url}/docs)" if name != "stream-processor"
              else f"  {name:17s} {url}   (/healthz /readyz /metrics)")  # fmt: skip
    print(f"  {'kafka':17s} {desc.kafka_bootstrap}")
    print(f"  {'redis':17s} {desc.redis_url}")
    print(f"  {'postgres':17s} {desc.postgres_dsn}")
    print(f"  admin API key     {key}")
    if "web" not in desc.urls:
        print("  web               not built (needs Node.js: make install builds services/web)")
    print("\nTry:")
    print(f"  curl -s {rec}/v1/recommendations/u00001?k=5")
    print(f"  curl -s -X POST {ing}/v1/events -H 'X-API-Key: {key}' -H 'Content-Type: "
          f"application/json' -d '{{\"user_id\":\"u00001\",\"event_type\":\"view\","
          f"\"product_id\":\"p000010\"}}'")  # fmt: skip
    print(f"  curl -s -X POST {tr}/v1/train -H 'X-API-Key: {key}'")
    print("Stop it with: make down")


def up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    stack = LocalStack(
        args.dir, fixed_ports=not args.free_ports, durable_broker=args.durable_broker
    )
    desc = stack.start()
    print("services are healthy; loading demo data..." if args.demo else "services are healthy")
    if args.demo:
        summary = demo.load_sync(desc)
        job = summary["job"]
        print(f"loaded {summary['products']} products, {summary['events']} events; "
              f"training job {job.get('job_id')} -> {job.get('status')} "
              f"(model version {job.get('model_version')})")  # fmt: skip
    for name in SERVICES:
        stack.wait_ready(name, timeout=args.timeout)
    _print_summary(desc, time.monotonic() - started)
    return 0


def down(args: argparse.Namespace) -> int:
    if not (args.dir / "stack.json").exists():
        print(f"no stack running from {args.dir.resolve()}")
        return 0
    LocalStack(args.dir).stop()
    print("streamrec local stack stopped")
    return 0


def status(args: argparse.Namespace) -> int:
    path = args.dir / "stack.json"
    if not path.exists():
        print("not running")
        return 1
    desc = StackDescription.load(args.dir)
    for p in desc.procs:
        print(f"{p.name:17s} pid {p.pid:7d} {'up' if p.alive() else 'DOWN'}  log {p.log}")
    print(json.dumps(desc.urls, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(prog="streamrec-stack", description=__doc__)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state directory")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start broker, Redis, Postgres and the four services")
    p_up.add_argument("--demo", action="store_true", help="load the synthetic demo shop, train")
    p_up.add_argument("--free-ports", action="store_true", help="do not use the default ports")
    p_up.add_argument(
        "--durable-broker",
        action="store_true",
        help="keep the broker's log in a local S3 bucket (moto) so it survives a broker crash",
    )
    p_up.add_argument("--timeout", type=float, default=180.0)
    p_up.set_defaults(func=up)
    sub.add_parser("down", help="stop everything the stack started").set_defaults(func=down)
    sub.add_parser("status", help="show the stack's processes").set_defaults(func=status)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except RuntimeError as exc:  # a missing binary, a process that died during start
        print(f"streamrec-stack: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
