"""Admin and catalog changes leave an audit line (issue 17 point 10): who, what, when, the answer.

A real FastAPI app with the services' common middleware (``install_common``) and key ring; the
audit lines are read from the ``streamrec.audit`` logger."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from streamrec_shared.http import KeyRing, install_common, require_scope
from streamrec_shared.settings import ApiKey, AuthSettings, HttpSettings, hash_key


async def _ready() -> dict[str, bool]:
    return {}


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = FastAPI()
    install_common(app, service="test", http=HttpSettings(), readiness=_ready)
    app.state.keyring = KeyRing(
        AuthSettings(
            api_keys=[
                ApiKey(name="ops", sha256=hash_key("admin-secret"), scopes=["admin"]),
                ApiKey(name="shop", sha256=hash_key("writer-secret"), scopes=["events:write"]),
            ]
        )
    )

    @app.post("/v1/models/{version}/activate", dependencies=[require_scope("admin")])
    async def activate(version: int) -> dict[str, int]:
        return {"version": version}

    @app.get("/v1/models", dependencies=[require_scope("admin")])
    async def models() -> list[int]:
        return [1]

    @app.post("/v1/events", dependencies=[require_scope("events:write")])
    async def events() -> dict[str, str]:
        return {"status": "accepted"}

    transport = httpx.ASGITransport(app=app, client=("10.0.0.9", 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    fields = ("key", "scope", "method", "path", "route", "status", "client", "outcome")
    return [
        {f: getattr(r, f) for f in fields} for r in caplog.records if r.name == "streamrec.audit"
    ]


async def test_an_admin_change_is_audited_with_the_key_name_never_the_key(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamrec.audit")
    r = await client.post("/v1/models/7/activate", headers={"X-API-Key": "admin-secret"})
    assert r.status_code == 200
    [line] = _lines(caplog)
    assert line == {
        "key": "ops",
        "scope": "admin",
        "method": "POST",
        "path": "/v1/models/7/activate",
        "route": "/v1/models/{version}/activate",
        "status": 200,
        "client": "10.0.0.9",
        "outcome": "allowed",
    }
    assert "admin-secret" not in caplog.text


@pytest.mark.parametrize(
    ("headers", "status", "key"),
    [
        ({}, 401, "missing"),
        ({"X-API-Key": "guess"}, 401, "unknown"),
        ({"X-API-Key": "writer-secret"}, 403, "shop"),
    ],
)
async def test_a_refused_admin_attempt_is_audited(
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
    status: int,
    key: str,
) -> None:
    caplog.set_level(logging.INFO, logger="streamrec.audit")
    assert (await client.post("/v1/models/7/activate", headers=headers)).status_code == status
    [line] = _lines(caplog)
    assert (line["key"], line["status"], line["outcome"]) == (key, status, "refused")


async def test_reads_and_event_writes_are_not_audited(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamrec.audit")
    assert (
        await client.get("/v1/models", headers={"X-API-Key": "admin-secret"})
    ).status_code == 200
    assert (
        await client.post("/v1/events", headers={"X-API-Key": "writer-secret"})
    ).status_code == 200
    assert _lines(caplog) == []
