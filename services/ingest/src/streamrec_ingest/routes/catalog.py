"""Catalog and user updates: ``catalog.v1`` (key product_id) and ``users.v1`` (key user_id).

Each update is published first (Kafka is the source of truth) and, once acknowledged, upserted
into Postgres for the trainer (products with their category, users with their attributes).
If the upsert fails the client gets 503 and retries; republishing the same state is harmless.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path

from streamrec_ingest.deps import CatalogKey, IngestState, State
from streamrec_ingest.publisher import keyed
from streamrec_ingest.routes.schemas import ProductsAccepted, UserAccepted, error_responses
from streamrec_shared import metrics, topics
from streamrec_shared.errors import NotFound
from streamrec_shared.events import (
    Id,
    ProductBatchIn,
    ProductIn,
    ProductRecord,
    UserIn,
    UserRecord,
)

router = APIRouter(tags=["catalog"])

ProductIdPath = Annotated[Id, Path(description="1..128 characters, no whitespace")]
UserIdPath = Annotated[Id, Path(description="1..128 characters, no whitespace")]
_ERRORS = error_responses(400, 401, 403, 413, 422, 429, 503)


async def _publish_products(
    state: IngestState, records: list[ProductRecord], kind: str
) -> ProductsAccepted:
    if state.settings.ingest.store_catalog:
        state.store.require()
    await state.publisher.publish(topics.CATALOG, keyed(records, "product_id"))
    metrics.INGEST_CATALOG_UPDATES.labels(kind).inc(len(records))
    if state.settings.ingest.store_catalog:
        await state.store.upsert_products(records)
    state.known.add([r.product_id for r in records])
    return ProductsAccepted(accepted=len(records), product_ids=[r.product_id for r in records])


@router.put(
    "/v1/products/{product_id}",
    status_code=202,
    responses=_ERRORS,
    summary="Create or replace a product",
)
async def put_product(
    product_id: ProductIdPath, product: ProductIn, _key: CatalogKey, state: State
) -> ProductsAccepted:
    """Publish the product's full state to ``catalog.v1``; then upsert it into Postgres."""
    record = product.to_record(product_id, datetime.now(UTC))
    return await _publish_products(state, [record], "product")


@router.post(
    "/v1/products", status_code=202, responses=_ERRORS, summary="Create or replace products"
)
async def post_products(batch: ProductBatchIn, _key: CatalogKey, state: State) -> ProductsAccepted:
    """``{"products": [...]}`` (1..1000, each with its ``product_id``); all or nothing."""
    now = datetime.now(UTC)
    records = [p.to_record(p.product_id, now) for p in batch.products]
    return await _publish_products(state, records, "product")


@router.delete(
    "/v1/products/{product_id}",
    status_code=202,
    responses=error_responses(401, 403, 404, 422, 429, 503),
    summary="Deactivate a product",
)
async def delete_product(
    product_id: ProductIdPath, _key: CatalogKey, state: State
) -> ProductsAccepted:
    """Publish the product with ``active=false``: it is never recommended afterwards.

    The product must be known (stored from the catalog or from an event referencing it).
    """
    row = await state.store.get_product(product_id)
    if row is None:
        raise NotFound(
            f"product_id: product '{product_id}' is not known",
            details={"field": "product_id", "product_id": product_id},
        )
    record = ProductRecord.model_construct(
        product_id=product_id,
        name=row["name"] or "",
        category=row["category_id"] or "",
        price=row["price"] or 0.0,
        in_stock=row["in_stock"],
        active=False,
        attributes=row["attributes"],
        description=row["description"],
        updated_at=datetime.now(UTC),
    )
    await state.publisher.publish(topics.CATALOG, keyed([record], "product_id"))
    metrics.INGEST_CATALOG_UPDATES.labels("product_delete").inc()
    await state.store.deactivate(product_id, record.updated_at)
    return ProductsAccepted(accepted=1, product_ids=[product_id])


@router.put(
    "/v1/users/{user_id}", status_code=202, responses=_ERRORS, summary="Set a user's attributes"
)
async def put_user(
    user_id: UserIdPath, user: UserIn, _key: CatalogKey, state: State
) -> UserAccepted:
    """Publish ``{attributes}`` to ``users.v1``; then upsert the user into Postgres."""
    record = UserRecord(user_id=user_id, attributes=user.attributes, updated_at=datetime.now(UTC))
    if state.settings.ingest.store_catalog:
        state.store.require()
    await state.publisher.publish(topics.USERS, keyed([record], "user_id"))
    metrics.INGEST_CATALOG_UPDATES.labels("user").inc()
    if state.settings.ingest.store_catalog:
        await state.store.upsert_user(record)
    return UserAccepted(accepted=1, user_id=user_id)
