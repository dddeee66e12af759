"""A user's profile is personal data: read only with a key of scope ``profiles:read`` or admin
(issue 17, finding 3); recommendations stay open reads."""

from __future__ import annotations

import httpx
import pytest

from streamrec_dev.localstack.stack import StackDescription

pytestmark = [pytest.mark.stack]


async def test_profile_reads_need_a_key(stack: StackDescription) -> None:
    path = "/v1/users/u0000001/profile"
    async with httpx.AsyncClient(base_url=stack.urls["recommender"], timeout=10) as http:
        anonymous = await http.get(path)
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.json()["error"]["details"]["field"] == "X-API-Key"
        wrong = await http.get(path, headers={"X-API-Key": "not-a-key"})
        assert wrong.status_code == 401
        writer = await http.get(path, headers={"X-API-Key": stack.api_keys["writer"]})
        assert writer.status_code == 403, writer.text
        reader = await http.get(path, headers={"X-API-Key": stack.api_keys["reader"]})
        assert reader.status_code == 200, reader.text
        admin = await http.get(path, headers={"X-API-Key": stack.api_keys["admin"]})
        assert admin.status_code == 200
        assert admin.json()["user_id"] == "u0000001"
        open_read = await http.get("/v1/recommendations/u0000001?k=3")
        assert open_read.status_code == 200
