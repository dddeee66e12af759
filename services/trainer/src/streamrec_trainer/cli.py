"""The ``streamrec`` command line (typer): offline evaluation, bulk load, exports.

Every user error (a missing file, a bad option value, an unknown algorithm, a database that
cannot be reached) ends with one line on stderr, ``streamrec <command>: error: <what>``, and a
non-zero exit status: 2 for usage and input errors, 1 for failures of the systems it talks to.
Long commands show a progress bar on a terminal (``--no-progress`` turns it off).

Each command's module is imported only when it runs, after ``OPENBLAS_NUM_THREADS=1`` is set
(numpy reads it when it loads OpenBLAS), so that ``streamrec --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from typer.exceptions import TyperException

if TYPE_CHECKING:
    from streamrec_trainer.settings import TrainerSettings

stderr = Console(stderr=True)


class UserError(Exception):
    """An error the user can fix: printed as one line, exit status ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


app = typer.Typer(
    name="streamrec",
    help="streamrec tools: offline evaluation, bulk history load, exports of the archive and "
    "of recommendation lists.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
export_app = typer.Typer(help="Export archived interactions or recommendation snapshots.")
import_app = typer.Typer(help="Import an export (JSON lines or a signed pickle).")
app.add_typer(export_app, name="export")
app.add_typer(import_app, name="import")


def _version() -> str:
    try:
        return version("streamrec-trainer")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        print(f"streamrec {_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    _version_flag: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")


# ------------------------------------------------------------------------------ shared pieces

ProgressOption = Annotated[
    bool,
    typer.Option("--progress/--no-progress", help="Show a progress bar (default: on a terminal)."),
]


@contextmanager
def _bar(what: str, enabled: bool, total: float | None = None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr (on a terminal, when ``enabled``); yields ``update(n)``."""
    show = enabled and stderr.is_terminal
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn()]  # fmt: skip
    with Progress(*columns, console=stderr, disable=not show, transient=False) as progress:
        task = progress.add_task(what, total=total)
        yield lambda done: progress.update(task, completed=done)


def _input_file(path: Path) -> Path:
    if not path.exists():
        raise UserError(f"no such file: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a file")
    return path


def _fraction(value: float) -> float:
    if not 0.0 < value < 1.0:
        raise typer.BadParameter(f"{value} is not between 0 and 1 (exclusive)")
    return value


def _iso_time(value: str | None) -> str | None:
    """Option callback: refuse a ``--since``/``--until`` that is no ISO-8601 time."""
    _event_time(value)
    return value


def _event_time(value: str | None) -> datetime | None:
    """``--since`` / ``--until``: ISO-8601; without an offset, UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"not an ISO-8601 time: {value!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _settings() -> TrainerSettings:
    from pydantic import ValidationError

    from streamrec_trainer.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"invalid setting STREAMREC_{where.upper()}: {first['msg']}") from None


def _where(dsn: str) -> str:
    """host:port/db of a DSN, without credentials."""
    parts = urlsplit(dsn)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


@asynccontextmanager
async def _pool(settings: TrainerSettings) -> AsyncIterator[Any]:
    """A Postgres pool for the command's duration (a clear error when Postgres is down)."""
    import asyncpg

    from streamrec_shared.postgres import create_pool

    try:
        pool = await create_pool(settings.postgres, attempts=3)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        where = _where(settings.postgres.dsn.get_secret_value())
        reason = str(exc) or type(exc).__name__
        raise UserError(f"cannot reach Postgres at {where}: {reason}", code=1) from None
    try:
        yield pool
    finally:
        await pool.close()


# ---------------------------------------------------------------------------------- eval


class LogFormat(StrEnum):
    events = "events"
    online_retail = "online-retail"


class ExportFormat(StrEnum):
    json = "json"
    pickle = "pickle"


ExportFile = Annotated[Path, typer.Option(help="File to write.")]
ExportFormatOption = Annotated[
    ExportFormat,
    typer.Option(
        "--format",
        help="json (JSON lines) or pickle (HMAC-signed; needs STREAMREC_EXPORTS__HMAC_KEY).",
    ),
]


def _export_key(settings: TrainerSettings, fmt: ExportFormat) -> bytes | None:
    """The exports' signing key; a pickle export refuses to start without one."""
    from streamrec_trainer import exports

    key = exports.signing_key(settings.exports)
    if fmt is ExportFormat.pickle:
        exports._require_key(key, "write")
    return key


@app.command("eval")
def eval_command(
    path: Annotated[
        Path,
        typer.Argument(
            help="Event log: JSON lines (--format events) or the Online Retail CSV (.gz accepted)."
        ),
    ],
    fmt: Annotated[LogFormat, typer.Option("--format", help="Format of the log.")] = (
        LogFormat.events
    ),
    out: Annotated[Path, typer.Option(help="Markdown report; its JSON is written beside it.")] = (
        Path("eval.md")
    ),
    test_fraction: Annotated[
        float, typer.Option(callback=_fraction, help="Last share of the time span held out.")
    ] = 0.2,
    val_fraction: Annotated[
        float, typer.Option(callback=_fraction, help="Share of the training span for tuning.")
    ] = 0.2,
    all_items: Annotated[
        bool,
        typer.Option(help="Keep items seen in training as targets (default: novel items only)."),
    ] = False,
    threads: Annotated[int, typer.Option(min=1, help="implicit's threads (BLAS stays at 1).")] = 2,
    algorithms: Annotated[
        str | None, typer.Option(help="Comma-separated list (default: all).")
    ] = None,
    progress: ProgressOption = True,
) -> int:
    """Offline evaluation of every algorithm on a temporal holdout."""
    _input_file(path)
    from streamrec_trainer.offline import algorithm_order, render_markdown, run_eval

    known = algorithm_order()

    chosen = [a.strip() for a in algorithms.split(",") if a.strip()] if algorithms else None
    unknown = sorted(set(chosen or ()) - set(known))
    if unknown:
        raise UserError(f"unknown algorithm {', '.join(unknown)}; known: {', '.join(known)}")
    try:
        report = run_eval(
            str(path), fmt.value, str(out), test_fraction=test_fraction,
            val_fraction=val_fraction, novel_only=not all_items, threads=threads,
            algorithms=chosen, progress=progress and stderr.is_terminal,
        )  # fmt: skip
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot evaluate {path}: {exc}") from None
    print(render_markdown(report))
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


# ---------------------------------------------------------------------------------- load


@app.command("load")
def load_command(
    path: Annotated[Path, typer.Argument(help="The history log (.gz accepted).")],
    fmt: Annotated[
        LogFormat | None,
        typer.Option("--format", help="Format of the log (default: from the file name)."),
    ] = None,
    id_prefix: Annotated[
        str | None,
        typer.Option(help="Prefix of generated event ids (default: the file name's stem)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Events per acknowledged batch.")] = 5000,
    dry_run: Annotated[bool, typer.Option(help="Validate and count only; produce nothing.")] = (
        False
    ),
    progress: ProgressOption = True,
) -> int:
    """Bulk-load a history log into events.v1, the path of live events (Kafka from
    STREAMREC_KAFKA__BOOTSTRAP_SERVERS)."""
    _input_file(path)
    from aiokafka.errors import KafkaError

    from streamrec_trainer.bulkload import guess_format, load_file

    try:
        chosen = fmt.value if fmt else guess_format(path)
        stats = load_file(
            path, chosen, None if dry_run else _settings().kafka, id_prefix=id_prefix,
            batch_size=batch_size, progress=progress and stderr.is_terminal,
        )  # fmt: skip
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from None
    except KafkaError as exc:
        raise UserError(
            f"Kafka error ({exc!r}); re-run to resume (event ids dedupe)", code=1
        ) from None
    print(json.dumps({"dry_run": dry_run, **stats.summary()}))
    return 0


# ------------------------------------------------------------------------- export / import


@export_app.command("interactions")
def export_interactions_command(
    out: ExportFile,
    fmt: ExportFormatOption = ExportFormat.json,
    since: Annotated[
        str | None,
        typer.Option(callback=_iso_time, help="Event time >= (ISO-8601; no offset: UTC)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(callback=_iso_time, help="Event time < (ISO-8601; no offset: UTC)."),
    ] = None,
    progress: ProgressOption = True,
) -> int:
    """Archived events of an event-time window."""
    start, end = _event_time(since), _event_time(until)
    settings = _settings()
    from streamrec_trainer import exports

    key = _export_key(settings, fmt)

    async def run() -> int:
        async with _pool(settings) as pool:
            with _bar("exporting interactions", progress) as update:
                return await exports.export_interactions(
                    pool, out, fmt.value, key=key, since=start, until=end, progress=update
                )

    n = asyncio.run(run())
    print(f"exported {n} interactions to {out} ({fmt.value})")
    return 0


@export_app.command("snapshots")
def export_snapshots_command(
    out: ExportFile,
    fmt: ExportFormatOption = ExportFormat.json,
    model_version: Annotated[
        int | None, typer.Option("--version", help="Model version (default: the active one).")
    ] = None,
    artifact: Annotated[
        str | None,
        typer.Option(help="A model version's URI (file:// or s3://), without the registry."),
    ] = None,
    k: Annotated[int | None, typer.Option("--k", min=1, help="At most K items per user.")] = None,
    progress: ProgressOption = True,
) -> int:
    """A model version's precomputed top-N lists."""
    if model_version is not None and artifact is not None:
        raise UserError("--version and --artifact exclude each other")
    settings = _settings()
    from streamrec_shared.artifact_store import local_copy
    from streamrec_shared.artifacts import ModelBundle
    from streamrec_trainer import exports

    key = _export_key(settings, fmt)  # before downloading a model for nothing
    uri = artifact
    if uri is None:

        async def registry_uri() -> str:
            async with _pool(settings):  # a clear error when Postgres is down
                pass
            return (await exports._model_uri(settings, model_version))[1]

        uri = asyncio.run(registry_uri())
    directory = local_copy(
        uri, settings.artifacts.cache_dir, endpoint_url=settings.artifacts.endpoint_url
    )
    bundle = ModelBundle.load(directory)
    with _bar("exporting snapshots", progress) as update:
        n = exports.write_export(
            out, fmt.value, "snapshots",
            exports.counted(exports.snapshots_from_bundle(bundle, k=k), update),
            key=key, meta={"model_version": bundle.version, "artifact_uri": uri},
        )  # fmt: skip
    print(f"exported {n} recommendation snapshots of model {bundle.version} to {out}")
    return 0


@import_app.command("interactions")
def import_interactions_command(
    file: Annotated[Path, typer.Argument(help="An interactions export (JSON or signed pickle).")],
    progress: ProgressOption = True,
) -> int:
    """Archive the events of an export (idempotent on event_id)."""
    _input_file(file)
    settings = _settings()
    from streamrec_trainer import exports

    key = exports.signing_key(settings.exports)
    exports.detect_format(file)  # refuse an unsigned pickle before connecting anywhere

    async def run() -> exports.ImportResult:
        async with _pool(settings) as pool:
            with _bar(f"importing {file.name}", progress) as update:
                return await exports.import_interactions(
                    pool, file, key=key, batch=settings.exports.import_batch, progress=update
                )

    result = asyncio.run(run())
    print(
        f"imported {result.read} events from {file}: {result.inserted} new, "
        f"{result.duplicates} already archived"
    )
    return 0


@app.command("convert")
def convert_command(
    file: Annotated[Path, typer.Argument(help="A signed pickle export.")],
    out: Annotated[Path, typer.Option(help="JSON lines file to write.")],
    progress: ProgressOption = True,
) -> int:
    """Convert a signed pickle export to JSON lines."""
    _input_file(file)
    settings = _settings()
    from streamrec_trainer import exports

    with _bar(f"converting {file.name}", progress) as update:
        n = exports.convert_to_json(
            file, out, key=exports.signing_key(settings.exports), progress=update
        )
    print(f"converted {n} records from {file} to {out} (json)")
    return 0


# ------------------------------------------------------------------------------------ main


def _error(command: str, message: str) -> None:
    text = " ".join(message.split())  # one line, whatever the message
    print(f"{command}: error: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``streamrec``; returns the exit status. Usage errors raise ``SystemExit(2)``."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(app)
    name = "streamrec" + (f" {args[0]}" if args and not args[0].startswith("-") else "")
    try:
        result = command.main(args=args, prog_name="streamrec", standalone_mode=False)
    except typer.Abort:
        _error(name, "aborted")
        return 130
    except TyperException as exc:  # click's usage errors, as typer vendors them
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else name
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if message:  # (no arguments at all: the help was shown instead)
            _error(where, message)
        raise SystemExit(getattr(exc, "exit_code", 2)) from None
    except UserError as exc:
        _error(name, str(exc))
        return exc.code
    except Exception as exc:
        from streamrec_shared.artifacts import ArtifactError
        from streamrec_trainer.exports import ExportError

        if not isinstance(exc, ExportError | ArtifactError | OSError):
            raise
        _error(name, str(exc) or type(exc).__name__)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
