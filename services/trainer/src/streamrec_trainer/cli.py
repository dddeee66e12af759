"""``streamrec`` command line.

- ``streamrec eval ...``: offline evaluation (``streamrec_trainer.offline``);
- ``streamrec load LOG [--format events|online-retail]``: bulk history into events.v1, the path
  of live events (``streamrec_trainer.bulkload``; Kafka from ``TrainerSettings``:
  ``STREAMREC_KAFKA__BOOTSTRAP_SERVERS``...);
- ``streamrec export interactions|snapshots --format json|pickle --out F``,
  ``streamrec import interactions F``, ``streamrec convert F.pkl --out F.json``: exports of the
  archive and of recommendation lists (``streamrec_trainer.exports``), with the service's
  settings (``TrainerSettings``: ``STREAMREC_POSTGRES__DSN``, ``STREAMREC_EXPORTS__HMAC_KEY``...).

Each subcommand's module is imported only when it runs, after ``OPENBLAS_NUM_THREADS=1`` is set
(numpy reads it when it loads OpenBLAS), and so that ``streamrec --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamrec", description="streamrec tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    sub.add_parser(
        "eval",
        add_help=False,  # its own parser (streamrec_trainer.offline) handles --help
        help="offline evaluation of every algorithm on a temporal holdout "
        "(streamrec eval --help for options)",
    )
    sub.add_parser(
        "load",
        add_help=False,  # its own parser (streamrec_trainer.bulkload) handles --help
        help="bulk-load a history log (events JSON lines, Online Retail CSV) into events.v1 "
        "(streamrec load --help for options)",
    )
    _add_export_commands(sub)
    return parser


def _event_time(value: str) -> datetime:
    """``--since`` / ``--until``: ISO-8601; without an offset, UTC."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {value!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _add_export_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def output(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--format",
            dest="fmt",
            choices=("json", "pickle"),
            default="json",
            help="json (JSON lines) or pickle (HMAC-signed; needs STREAMREC_EXPORTS__HMAC_KEY)",
        )
        parser.add_argument("--out", type=Path, required=True)

    export = sub.add_parser("export", help="export interactions or recommendation snapshots")
    what = export.add_subparsers(dest="what", required=True, metavar="what")
    inter = what.add_parser("interactions", help="archived events of an event-time window")
    output(inter)
    inter.add_argument("--since", type=_event_time, help="event time >= (ISO-8601; default UTC)")
    inter.add_argument("--until", type=_event_time, help="event time < (ISO-8601; default UTC)")
    snaps = what.add_parser("snapshots", help="a model version's precomputed top-N lists")
    output(snaps)
    source = snaps.add_mutually_exclusive_group()
    source.add_argument("--version", type=int, help="model version (default: the active one)")
    source.add_argument("--artifact", help="a model version URI (file:// or s3://), no registry")
    snaps.add_argument("--k", type=int, default=None, help="at most K items per user")

    imp = sub.add_parser("import", help="import an export (JSON or signed pickle)")
    imp_what = imp.add_subparsers(dest="what", required=True, metavar="what")
    imp_inter = imp_what.add_parser(
        "interactions", help="archive the events of an export (idempotent on event_id)"
    )
    imp_inter.add_argument("file", type=Path)

    convert = sub.add_parser("convert", help="convert a signed pickle export to JSON lines")
    convert.add_argument("file", type=Path)
    convert.add_argument("--out", type=Path, required=True)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    parser = build_parser()
    args, rest = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "eval":
        from streamrec_trainer.offline import main as eval_main

        return eval_main(rest)
    if args.command == "load":
        from streamrec_trainer.bulkload import main as load_main

        return load_main(rest)
    if args.command in ("export", "import", "convert"):
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        from streamrec_trainer.exports import run_command
        from streamrec_trainer.settings import get_settings

        return run_command(args, get_settings())
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse enforces choices


if __name__ == "__main__":
    raise SystemExit(main())
