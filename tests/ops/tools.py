"""External tools the operations tests run (uv, kustomize, helm, promtool) and where they come
from. Where a tool cannot be had, a test skips locally; under CI (``CI=true``) it fails instead,
so a CI run never passes by skipping what it exists to check."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STATE = REPO / ".streamrec" / "tools"  # the repo's ignored state directory


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(what: str) -> None:
    """Skip (locally) or fail (CI) a test whose tool is not there."""
    if in_ci():
        pytest.fail(f"{what} is required in CI", pytrace=False)
    pytest.skip(f"{what} not available")


def uv() -> list[str]:
    """How to run uv: the ``uv`` on PATH, else ``python3 -m uv`` (what the Makefile uses)."""
    found = shutil.which("uv")
    if found:
        return [found]
    for python in (sys.executable, shutil.which("python3")):
        if python and subprocess.run([python, "-m", "uv", "--version"],
                                     capture_output=True).returncode == 0:  # fmt: skip
            return [python, "-m", "uv"]
    missing("uv")
    raise AssertionError("unreachable")
