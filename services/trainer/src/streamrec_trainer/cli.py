"""``streamrec`` command line: ``streamrec eval ...`` (more subcommands can be added here).

Each subcommand's module is imported only when it runs, after ``OPENBLAS_NUM_THREADS=1`` is set
(numpy reads it when it loads OpenBLAS), and so that ``streamrec --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamrec", description="streamrec tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    sub.add_parser(
        "eval",
        add_help=False,  # its own parser (streamrec_trainer.offline) handles --help
        help="offline evaluation of every algorithm on a temporal holdout "
        "(streamrec eval --help for options)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    args, rest = build_parser().parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "eval":
        from streamrec_trainer.offline import main as eval_main

        return eval_main(rest)
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse enforces choices


if __name__ == "__main__":
    raise SystemExit(main())
