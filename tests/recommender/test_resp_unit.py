"""The request path's lean Redis connection against a scripted RESP server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import hiredis
import pytest
import pytest_asyncio
from redis.exceptions import ResponseError

from streamrec_shared.resp import RespConnection


class FakeRedis:
    """Answers each command with its last argument; ``ERR`` as an error; ``HANG`` never."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        parser = hiredis.Reader()
        while data := await reader.read(65536):
            parser.feed(data)
            while (command := parser.gets()) is not False:
                last = command[-1]
                if last == b"HANG":
                    continue
                if last == b"ERR":
                    writer.write(b"-ERR scripted\r\n")
                else:
                    writer.write(b"$%d\r\n%s\r\n" % (len(last), last))
            await writer.drain()
        writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeRedis]:
    f = FakeRedis()
    f.server = await asyncio.start_server(f.handle, "127.0.0.1", 0)
    yield f
    f.server.close()


async def test_concurrent_calls_get_their_own_replies(fake: FakeRedis) -> None:
    conn = RespConnection(fake.url, timeout_s=1.0, connect_timeout_s=1.0)
    results = await asyncio.gather(
        *(conn.execute(("GET", f"a{i}"), ("HGET", "h", f"b{i}")) for i in range(50))
    )
    assert results == [[f"a{i}".encode(), f"b{i}".encode()] for i in range(50)]
    assert fake.connections == 1
    conn.close()


async def test_error_reply_timeout_and_reconnect(fake: FakeRedis) -> None:
    conn = RespConnection(fake.url, timeout_s=0.2, connect_timeout_s=1.0)
    with pytest.raises(ResponseError):
        await conn.execute(("GET", "ERR"))
    assert await conn.execute(("GET", "ok")) == [b"ok"]  # an error reply keeps the connection
    with pytest.raises(TimeoutError):
        await conn.execute(("GET", "HANG"))
    assert await conn.execute(("GET", "again")) == [b"again"]
    assert fake.connections == 2  # the timed-out connection was dropped
    conn.close()


async def test_nothing_listening_is_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conn = RespConnection(f"redis://127.0.0.1:{port}/0", timeout_s=0.2, connect_timeout_s=0.5)
    with pytest.raises(ConnectionRefusedError):
        await conn.execute(("GET", "x"))
