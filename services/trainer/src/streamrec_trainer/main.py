"""``streamrec-trainer``: run the trainer service (uvicorn, one process)."""

from __future__ import annotations

import os

import uvicorn

from streamrec_shared import logs
from streamrec_trainer.app import create_app
from streamrec_trainer.settings import get_settings


def main() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    settings = get_settings()
    logs.configure("trainer", settings.log.level, json_format=settings.log.json_format)
    uvicorn.run(
        create_app(settings),
        host=settings.http.host,
        port=settings.http.port,
        http="httptools",
        loop="uvloop",
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
