"""Request dependencies: the service state and API-key checks per scope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from streamrec_ingest.catalog_db import CatalogDb
from streamrec_ingest.known_products import KnownProducts
from streamrec_ingest.orders import OrderReconciler
from streamrec_ingest.publisher import Publisher
from streamrec_ingest.settings import IngestSettings
from streamrec_shared import metrics
from streamrec_shared.errors import Forbidden, RateLimited, Unauthorized
from streamrec_shared.http import KeyRing, require_scope
from streamrec_shared.settings import ApiKey


@dataclass(frozen=True)
class IngestState:
    """What the lifespan opens and every route uses."""

    settings: IngestSettings
    publisher: Publisher
    store: CatalogDb
    reconciler: OrderReconciler
    known: KnownProducts


async def _state(request: Request) -> IngestState:
    # async: FastAPI runs a plain ``def`` dependency in a worker thread, a costly hop per request
    state: IngestState = request.app.state.ingest
    return state


def authorize_events(
    ring: KeyRing, presented: str | None, client: str | None = None
) -> ApiKey | None:
    """``events:write`` for the presented ``X-API-Key`` value; refusals are counted as
    rejected events (reason = the refusal).

    The events route and its fast path call it themselves: resolving it and the state through
    ``Depends`` was about a third of the gateway's own CPU for a single-event request.
    """
    try:
        return ring.authorize(presented, "events:write", client)
    except Unauthorized:
        metrics.INGEST_EVENTS_REJECTED.labels("unauthorized").inc()
        raise
    except Forbidden:
        metrics.INGEST_EVENTS_REJECTED.labels("forbidden").inc()
        raise
    except RateLimited:
        metrics.INGEST_EVENTS_REJECTED.labels("rate_limited").inc()
        raise


State = Annotated[IngestState, Depends(_state)]
CatalogKey = Annotated[ApiKey | None, require_scope("catalog:write")]
OrdersKey = Annotated[ApiKey | None, require_scope("events:write")]
ImportKey = Annotated[ApiKey | None, require_scope("import")]
