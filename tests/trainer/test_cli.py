"""The ``streamrec`` command as a user runs it (a subprocess): help without markup, a version,
and for every user error one line on stderr, a non-zero exit status and no traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _streamrec(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamrec_trainer.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def _one_line_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    (line,) = lines
    assert line.startswith("streamrec"), line
    assert ": error: " in line, line
    for word in words:
        assert word in line, line
    return line


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "log.jsonl"
    rows = [{"user_id": f"u{i % 3}", "event_type": "view", "product_id": f"p{i}",
             "timestamp": 1294135200 + i} for i in range(12)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def postgres_down() -> dict[str, str]:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {"STREAMREC_POSTGRES__DSN": f"postgresql://streamrec@127.0.0.1:{port}/streamrec"}


def test_version() -> None:
    result = _streamrec("--version")
    assert result.returncode == 0
    assert result.stdout.strip().startswith("streamrec ")


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["eval"],
        ["load"],
        ["export", "interactions"],
        ["export", "snapshots"],
        ["import", "interactions"],
        ["convert"],
    ],
)
def test_help_has_no_markup(command: list[str]) -> None:
    result = _streamrec(*command, "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "Usage: streamrec" in result.stdout
    for markup in ("``", ":func:", ":class:", "[bold", "[/"):
        assert markup not in result.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["eval", "missing.jsonl"], ["streamrec eval", "no such file", "missing.jsonl"]),
        (["load", "missing.jsonl", "--dry-run"], ["streamrec load", "no such file"]),
        (["import", "interactions", "missing.jsonl"], ["streamrec import", "no such file"]),
        (["convert", "missing.pkl", "--out", "x.jsonl"], ["streamrec convert", "no such file"]),
    ],
)
def test_missing_input_file(args: list[str], words: list[str], tmp_path: Path) -> None:
    _one_line_error(_streamrec(*[str(tmp_path / a) if "missing" in a else a for a in args]), 2,
                    *words)  # fmt: skip


def test_unknown_algorithm(log: Path) -> None:
    _one_line_error(_streamrec("eval", str(log), "--algorithms", "foo"), 2,
                    "unknown algorithm foo", "als")  # fmt: skip


@pytest.mark.parametrize("value", ["2", "0", "-0.5", "abc"])
def test_test_fraction_out_of_range(log: Path, value: str) -> None:
    _one_line_error(_streamrec("eval", str(log), "--test-fraction", value), 2, "--test-fraction")


def test_unknown_option_and_bad_time(tmp_path: Path) -> None:
    _one_line_error(_streamrec("eval", "x", "--bogus"), 2, "--bogus")
    _one_line_error(
        _streamrec("export", "interactions", "--out", str(tmp_path / "x"), "--since", "yesterday"),
        2,
        "--since",
        "yesterday",
    )


@pytest.mark.parametrize(
    "args",
    [["export", "interactions"], ["export", "snapshots"]],
)
def test_export_with_the_database_down(
    args: list[str], tmp_path: Path, postgres_down: dict[str, str]
) -> None:
    result = _streamrec(*args, "--out", str(tmp_path / "out.jsonl"), env=postgres_down)
    _one_line_error(result, 1, "cannot reach Postgres at 127.0.0.1")
    assert not (tmp_path / "out.jsonl").exists()


def test_import_with_the_database_down(
    log: Path, tmp_path: Path, postgres_down: dict[str, str]
) -> None:
    export = tmp_path / "export.jsonl"
    header = {"streamrec_export": "interactions", "schema_version": 1,
              "exported_at": "2026-01-01T00:00:00+00:00", "meta": {}}  # fmt: skip
    export.write_text(json.dumps(header) + "\n")
    result = _streamrec("import", "interactions", str(export), env=postgres_down)
    _one_line_error(result, 1, "cannot reach Postgres")
