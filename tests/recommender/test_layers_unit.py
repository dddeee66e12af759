"""The recommender's layers: ``serving/`` is pure (no I/O client, no outer layer).

Read from the source (``ast``), so a lazy import inside a function counts as much as one at the
top of a module, and so does an import under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import streamrec_recommender

PACKAGE = Path(streamrec_recommender.__file__).parent
IO_LIBRARIES = {"redis", "hiredis", "asyncpg", "aiokafka", "httpx", "fastapi", "starlette",
                "uvicorn", "usearch", "socket", "ssl", "asyncio"}  # fmt: skip
OUTER_LAYERS = ("api", "runtime", "adapters")


def imports_of(path: Path) -> set[str]:
    """Every module a source file imports (absolute names)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            assert node.level == 0, f"{path}: relative import"
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def serving_files() -> list[Path]:
    files = sorted((PACKAGE / "serving").rglob("*.py"))
    assert len(files) >= 10  # engine, ranking, policy, catalog, context, model, scorers, ...
    return files


def test_serving_imports_no_io_library_and_no_outer_layer() -> None:
    problems: list[str] = []
    for path in serving_files():
        for name in imports_of(path):
            root = name.split(".")[0]
            if root in IO_LIBRARIES:
                problems.append(f"{path.relative_to(PACKAGE)} imports {name}")
            if root == "streamrec_recommender":
                parts = name.split(".")
                if len(parts) < 2 or parts[1] != "serving":
                    problems.append(f"{path.relative_to(PACKAGE)} imports {name} (outside serving)")
    assert problems == []


def test_the_layers_depend_inwards() -> None:
    """adapters and runtime may use serving; serving none of them; only api imports api."""
    seen = 0
    for layer in OUTER_LAYERS:
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            seen += 1
            for name in imports_of(path):
                parts = name.split(".")
                if parts[0] == "streamrec_recommender" and len(parts) > 1 and parts[1] == "api":
                    assert layer == "api", f"{path.relative_to(PACKAGE)} imports {name}"
    assert seen >= 10
