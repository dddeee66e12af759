"""Entry point: ``streamrec-stream-processor`` / ``python -m streamrec_stream_processor.main``."""

from __future__ import annotations

import faust

from streamrec_shared import logs
from streamrec_stream_processor.app import create_app
from streamrec_stream_processor.settings import get_settings


def main() -> None:
    """Start one faust worker with the settings from the environment; runs until SIGTERM/INT."""
    settings = get_settings()
    logs.configure("stream-processor", settings.log.level, json_format=settings.log.json_format)
    app = create_app(settings)
    worker = faust.Worker(
        app,
        loglevel=settings.log.level,
        override_logging=False,
        redirect_stdouts=False,
        quiet=True,
    )
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
