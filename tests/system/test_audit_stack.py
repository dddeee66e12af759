"""Admin actions leave an audit line in each service's log (issue 17 point 10), on the real stack.

Each service's JSON log (the local stack writes it to ``<state_dir>/logs/<service>.log``) gets one
``streamrec.audit`` line per state-changing call of an admin or catalog scope, allowed or refused:
the key's name (never the key), method, path, route, status and outcome."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamrec_dev.localstack.stack import StackDescription

from ..polling import eventually

# (service, method, path, key or None, expected status, expected key name, outcome)
CASES = [
    ("trainer", "POST", "/v1/models/2147483000/activate", None, 401, "missing", "refused"),
    ("recommender", "DELETE", "/v1/campaigns/audit-{tag}", "admin", 404, "admin", "failed"),
    ("ingest", "DELETE", "/v1/users/audit-{tag}", "writer", 403, "writer", "refused"),
]


def _audit_lines(log: Path, path: str) -> list[dict[str, Any]]:
    lines = []
    for raw in log.read_text(errors="replace").splitlines():
        if '"streamrec.audit"' not in raw:
            continue
        line = json.loads(raw)
        if line.get("path") == path:
            lines.append(line)
    return lines


@pytest.mark.parametrize(("service", "method", "path", "key", "status", "name", "outcome"), CASES)
async def test_an_admin_call_is_audited_in_the_services_log(
    stack: StackDescription,
    service: str,
    method: str,
    path: str,
    key: str | None,
    status: int,
    name: str,
    outcome: str,
) -> None:
    path = path.format(tag=uuid.uuid4().hex[:8])
    headers = {"X-API-Key": stack.api_keys[key]} if key else {}
    async with httpx.AsyncClient(base_url=stack.urls[service], timeout=10) as http:
        answer = await http.request(method, path, headers=headers)
    assert answer.status_code == status, answer.text
    log = Path(stack.state_dir) / "logs" / f"{service}.log"

    async def written() -> list[dict[str, Any]] | None:
        return _audit_lines(log, path) or None

    lines = await eventually(written, timeout=5, what=f"the audit line in {log}")
    [line] = lines
    assert (line["key"], line["method"], line["status"], line["outcome"]) == (
        name,
        method,
        status,
        outcome,
    )
    assert line["service"] == service
    if key:
        assert stack.api_keys[key] not in log.read_text(errors="replace")
