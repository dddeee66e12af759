"""Where a benchmark writes its results: ``--out`` / ``--no-write`` and the JSON file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_args(parser: argparse.ArgumentParser, default: Path) -> None:
    """``--out PATH`` (default ``default``) and ``--no-write``."""
    parser.add_argument("--out", type=Path, default=default, help="results JSON path")
    parser.add_argument("--no-write", action="store_true", help="do not write results JSON")


def write(path: Path, results: dict[str, Any]) -> None:
    """``results`` as indented JSON at ``path`` (its folder created); says where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"results: {path}")
