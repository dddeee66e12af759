"""The web app's own checks, run from pytest so that ``make test`` and CI include them:
TypeScript type-check (tsc, strict) and the Vitest unit tests of components and API hooks."""

from __future__ import annotations

import subprocess

from .webapp import WEB, require


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=WEB, capture_output=True, text=True, timeout=600, check=False)


def test_typescript_typechecks() -> None:
    require()
    generated = _run("node", "scripts/gen-api.mjs")  # src/api/generated/ is built, not tracked
    assert generated.returncode == 0, generated.stderr[-2000:]
    result = _run("npx", "--no-install", "tsc", "-p", ".")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_vitest_components_and_hooks() -> None:
    require()
    result = _run("npx", "--no-install", "vitest", "run", "--reporter=dot")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:]
    assert "passed" in out
