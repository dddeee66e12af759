"""``DELETE /v1/users/{user_id}``: erase a user (the right to be forgotten).

In one Postgres transaction the id is recorded in ``erased_users`` (the trainer's window skips
it, also for events of the user still in flight and archived later), the user's orders are
given to the ``erased user`` row, the archived events and the ``users`` row are deleted; then
the erasure record (``UserErased``) is published on ``users.v1`` under the user's key, which
compaction keeps instead of the user's attributes and on which the stream processor deletes the
live profile. Idempotent: a retry after a 503 does the same again.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from streamrec_ingest.deps import State
from streamrec_ingest.publisher import keyed
from streamrec_ingest.routes.catalog import UserIdPath
from streamrec_ingest.routes.schemas import UserErasedBody, error_responses
from streamrec_shared import metrics, topics
from streamrec_shared.events import UserErased
from streamrec_shared.http import AdminKey

router = APIRouter(tags=["users"])


@router.delete(
    "/v1/users/{user_id}",
    status_code=202,
    responses=error_responses(401, 403, 422, 429, 503),
    summary="Erase a user",
)
async def erase_user(user_id: UserIdPath, _key: AdminKey, state: State) -> UserErasedBody:
    """Delete the user's attributes and archived events, anonymise their orders, and publish
    the erasure on ``users.v1``; the next trained model no longer carries the user. Needs the
    admin scope."""
    erased_at = datetime.now(UTC)
    counts = await state.store.erase_user(user_id, erased_at)
    record = UserErased(user_id=user_id, erased_at=erased_at)
    await state.publisher.publish(topics.USERS, keyed([record], "user_id"))
    metrics.INGEST_CATALOG_UPDATES.labels("user_erased").inc()
    return UserErasedBody(
        erased=True,
        user_id=user_id,
        orders_anonymised=counts["orders"],
        interactions_deleted=counts["interactions"],
        users_deleted=counts["users"],
    )
