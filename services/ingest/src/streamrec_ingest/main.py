"""``streamrec-ingest``: serve the gateway with uvicorn (httptools + uvloop)."""

from __future__ import annotations

from starlette.types import ASGIApp

from streamrec_ingest.app import create_app
from streamrec_ingest.fastpath import with_fast_path
from streamrec_ingest.settings import get_settings
from streamrec_shared import http, logs


def app_factory() -> ASGIApp:
    """What each uvicorn worker builds: logging configured, app from the environment, behind
    the fast path for single and batched events."""
    settings = get_settings()
    logs.configure("ingest", settings.log.level, json_format=settings.log.json_format)
    return with_fast_path(create_app(settings))


def main() -> None:
    settings = get_settings()
    http.serve(
        "streamrec_ingest.main:app_factory",
        "ingest",
        settings.http,
        settings.log,
        factory=True,
        workers=settings.http.workers,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
