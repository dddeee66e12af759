"""``streamrec-recommender``: uvicorn with httptools + uvloop, workers from settings."""

from __future__ import annotations

import uvicorn

from streamrec_recommender.settings import get_settings
from streamrec_shared import logs


def main() -> None:
    settings = get_settings()
    logs.configure("recommender", settings.log.level, json_format=settings.log.json_format)
    workers = max(1, settings.http.workers)
    uvicorn.run(
        "streamrec_recommender.app:create_server",
        factory=True,
        host=settings.http.host,
        port=settings.http.port,
        workers=workers,
        http="httptools",
        loop="uvloop",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=5,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
