"""Where the web app and its browser tooling are, and whether they are usable here."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "services" / "web"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = os.environ.get("STREAMREC_CHROMIUM", "/usr/bin/chromium")


def missing() -> str | None:
    """What is missing to build and drive the web app, or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (WEB / "node_modules" / "playwright-core").is_dir():
        return "services/web/node_modules missing (make install runs npm ci)"
    return None


def require(*, browser: bool = False, bundle: bool = False) -> None:
    """Skip (outside CI) or fail (in CI) when the web tooling is missing."""
    why = missing()
    if why is None and browser and not Path(CHROMIUM).exists():
        why = f"{CHROMIUM} missing (make install installs Debian's chromium)"
    if why is None and bundle and not (WEB / "dist" / "index.html").is_file():
        why = "services/web/dist not built (make install runs the vite build)"
    if why is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"web tests cannot run in CI: {why}")
    pytest.skip(why)
