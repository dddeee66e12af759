"""Entry point: ``streamrec-stream-processor`` / ``python -m streamrec_stream_processor.main``."""

from __future__ import annotations

import gc

import uvicorn

from streamrec_shared import logs
from streamrec_stream_processor.app import create_app
from streamrec_stream_processor.settings import get_settings

GC_THRESHOLD0 = 20_000


def main() -> None:
    """Run one processor worker (uvicorn, one process) until SIGTERM/INT."""
    settings = get_settings()
    logs.configure("stream-processor", settings.log.level, json_format=settings.log.json_format)
    app = create_app(settings)
    # A batch keeps a few thousand container objects alive at once, which refcounting frees
    # afterwards; at the default gen0 threshold (700) the cycle collector ran every ~50 events,
    # walking the objects of aiokafka and pydantic on each older-generation pass. The startup
    # objects are frozen out of collection; the young generation is collected every
    # GC_THRESHOLD0 net allocations, so cyclic garbage is still reclaimed.
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD0, *gc.get_threshold()[1:])
    uvicorn.run(
        app,
        host=settings.http.host,
        port=settings.http.port,
        http="httptools",
        loop="uvloop",
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
