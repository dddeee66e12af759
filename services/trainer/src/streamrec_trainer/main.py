"""``streamrec-trainer``: run the trainer service (uvicorn, one process)."""

from __future__ import annotations

import os

from streamrec_shared import http
from streamrec_trainer.app import create_app
from streamrec_trainer.settings import get_settings


def main() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    settings = get_settings()
    http.serve(create_app(settings), "trainer", settings.http, settings.log)


if __name__ == "__main__":
    main()
