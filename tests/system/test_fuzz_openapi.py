"""schemathesis against the OpenAPI documents of the live ingest, trainer and recommender.

Every operation is fuzzed with inputs its schema allows (positive) and with inputs it forbids
(negative), with the admin key and without a key, a bounded number of examples per operation
and mode (``FUZZ_EXAMPLES``, default 25) so it fits in CI. Every answer must be no server error
and conform to the document: a documented status code, content type and response schema.

The stack is shared with the rest of the session, so a keyed fuzz never does what would change
other tests' state in bulk: erasing users and activating model versions are fuzzed with the key
in negative mode only (every such request must be refused with a 4xx), training runs are not
queued with the key at all (``tests/trainer/test_trainer_hardening_stack.py`` sends the bad
parameters by hand); all of them are fuzzed in both modes without a key (401).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import hypothesis
import hypothesis.errors
import pytest
import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from streamrec_client import AsyncStreamrecClient
from streamrec_dev import synthetic
from streamrec_dev.localstack.stack import StackDescription
from streamrec_dev.synthetic_model import make_bundle

from ..bundles import activate_new, wait_served

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# the probes come from the shared HTTP layer (streamrec_shared.http.install_common)
PROBES = {"/healthz", "/readyz", "/metrics"}
# what a keyed positive fuzz must not do to the shared stack
STATEFUL = {
    ("DELETE", "/v1/users/{user_id}"),
    ("POST", "/v1/models/{version}/activate"),
    ("POST", "/v1/models/{version}/promote"),
    ("POST", "/v1/models/{version}/abort"),
    # experiments and campaigns would change other tests' answers (auto, boosts)
    ("PUT", "/v1/experiments/{name}"),
    ("PUT", "/v1/campaigns/{name}"),
    ("DELETE", "/v1/campaigns/{name}"),
}
NOT_KEYED = {("POST", "/v1/train")}


def _fuzz(service: str, stack: StackDescription) -> Counter[str]:
    base = stack.urls[service]
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    admin = {"X-API-Key": stack.api_keys["admin"]}
    tally: Counter[str] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in PROBES:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for headers in (admin, {}):
                route = (operation.method.upper(), operation.path)
                if headers and (
                    route in NOT_KEYED or (route in STATEFUL and mode is GenerationMode.POSITIVE)
                ):
                    continue
                strategy = operation.as_strategy(generation_mode=mode, headers=headers or None)
                _run(strategy, base, tally, operation.label)
    return tally


def _run(strategy: Any, base: str, tally: Counter[str], label: str) -> None:
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.generate],
    )
    @hypothesis.given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        response = case.call(base_url=base, timeout=30)
        tally[f"{label} {response.status_code}"] += 1
        case.validate_response(response, checks=CHECKS)

    run: Callable[[], None] = check
    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        # e.g. no input of a GET without parameters can break its schema: nothing to send
        tally[f"{label}: no case"] += 0


@pytest.mark.timeout(600)
def test_ingest_openapi_fuzz_has_no_server_errors(stack: StackDescription) -> None:
    tally = _fuzz("ingest", stack)
    print(f"\ningest: {sum(tally.values())} cases", dict(sorted(tally.items())))
    assert sum(tally.values()) > 0


@pytest.mark.timeout(600)
def test_trainer_openapi_fuzz_has_no_server_errors(stack: StackDescription) -> None:
    tally = _fuzz("trainer", stack)
    print(f"\ntrainer: {sum(tally.values())} cases", dict(sorted(tally.items())))
    assert sum(tally.values()) > 0


@pytest_asyncio.fixture(loop_scope="session")
async def model_served(stack: StackDescription, client: AsyncStreamrecClient) -> int:
    """A model the recommender serves (a small synthetic one when the stack has none yet):
    without one, ``/similar`` is rightly a 503 ``no model loaded yet``."""
    async with httpx.AsyncClient(base_url=stack.urls["trainer"]) as http:
        if (await http.get("/v1/models/active")).status_code == 404:
            await client.put_products(synthetic.catalog(200))
            await activate_new(
                stack, lambda v: make_bundle(version=v, n_items=200, n_users=100, factors=8)
            )
    return await wait_served(client)


@pytest.mark.timeout(600)
def test_recommender_openapi_fuzz_has_no_server_errors(
    stack: StackDescription, model_served: int
) -> None:
    tally = _fuzz("recommender", stack)
    print(f"\nrecommender: {sum(tally.values())} cases", dict(sorted(tally.items())))
    assert sum(tally.values()) > 0
