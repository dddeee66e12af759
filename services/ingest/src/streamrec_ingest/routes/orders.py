"""``POST /v1/orders``: stored as an order (Postgres) and emitted as one purchase per line."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from streamrec_ingest.deps import OrdersKey, State
from streamrec_ingest.orders import accept_order
from streamrec_ingest.routes.schemas import OrderAccepted, error_responses
from streamrec_shared.events import OrderIn

router = APIRouter(tags=["orders"])


@router.post(
    "/v1/orders",
    status_code=202,
    responses=error_responses(400, 401, 403, 409, 413, 422, 429, 503),
    summary="Record an order",
)
async def post_orders(order: OrderIn, _key: OrdersKey, state: State) -> OrderAccepted:
    """Store the order and its lines, then publish purchase event ``{order_id}:{line}`` per line.

    Idempotent on ``order_id``: a retry (after a 503, a timeout, a lost answer) stores nothing
    twice and republishes the same event_ids. 409 if the order_id holds a different order.
    """
    body = await accept_order(
        order, store=state.store, publisher=state.publisher, received_at=datetime.now(UTC)
    )
    return OrderAccepted(**body)
