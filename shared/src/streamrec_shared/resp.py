"""A minimal pipelined Redis connection for the request path (a few reads per request).

redis-py's asyncio client spends about 60 us of CPU on every pipeline (pool checkout and
release, command objects, a timeout context per reply): measured in-process, about a third of
a whole recommendation. Here one connection carries the commands of every request back to back
(Redis answers in order), packed by hiredis and parsed by its reader, with one timer per call.

Failures surface as redis-py's would, so ``RedisState.call`` treats both alike: ``OSError``
(refused, ``ConnectionError`` when the connection is lost with calls in flight),
``TimeoutError`` (no answer within ``timeout_s``; the connection is then dropped, because the
late answer would be taken for the next call's) and ``redis.exceptions.ResponseError`` for an
error reply. The next call reconnects.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote, urlparse

import hiredis
from redis.exceptions import ResponseError

Command = tuple[str | bytes | int | float, ...]


@dataclass
class _Call:
    future: asyncio.Future[list[Any]]
    expected: int
    replies: list[Any] = field(default_factory=list)


class _Protocol(asyncio.Protocol):
    """One connection: the calls waiting on it, in the order Redis will answer them."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.calls: deque[_Call] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError:
                self.close()
                return
            if reply is False:
                return
            if not self.calls:  # an answer nobody waits for: the stream is out of step
                self.close()
                return
            call = self.calls[0]
            call.replies.append(reply)
            if len(call.replies) == call.expected:
                self.calls.popleft()
                if not call.future.done():
                    call.future.set_result(call.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        calls, self.calls = self.calls, deque()
        for call in calls:
            if not call.future.done():
                call.future.set_exception(ConnectionError("Redis connection lost"))

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class RespConnection:
    """One lazily opened connection to the Redis at ``url`` (redis://, rediss://, unix://)."""

    def __init__(self, url: str, *, timeout_s: float, connect_timeout_s: float) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unsupported Redis URL scheme {parsed.scheme!r}")
        self._url = parsed
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._protocol = _Protocol()  # never opened: the first call connects
        self._lock = asyncio.Lock()

    async def execute(self, *commands: Command) -> list[Any]:
        """The replies of ``commands`` (sent together), in order."""
        protocol = self._protocol if self._protocol.open else await self._connect()
        return await self._send(protocol, commands)

    def close(self) -> None:
        self._protocol.close()

    async def _send(self, protocol: _Protocol, commands: tuple[Command, ...]) -> list[Any]:
        assert protocol.transport is not None
        loop = asyncio.get_running_loop()
        call = _Call(loop.create_future(), len(commands))
        protocol.calls.append(call)
        packed = [hiredis.pack_command(c) for c in commands]  # type: ignore[arg-type]  # stub: 1-tuple
        protocol.transport.write(b"".join(packed))
        timer = loop.call_later(self.timeout_s, self._timed_out, call, protocol)
        try:
            replies = await call.future
        finally:
            timer.cancel()
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return replies

    def _timed_out(self, call: _Call, protocol: _Protocol) -> None:
        if not call.future.done():
            call.future.set_exception(TimeoutError(f"no Redis answer in {self.timeout_s}s"))
            protocol.close()  # a late answer would be taken for the next call's

    async def _connect(self) -> _Protocol:
        async with self._lock:
            if self._protocol.open:
                return self._protocol
            url = self._url
            loop = asyncio.get_running_loop()
            protocol = _Protocol()
            if url.scheme == "unix":
                opening = loop.create_unix_connection(lambda: protocol, unquote(url.path))
            else:
                context = ssl.create_default_context() if url.scheme == "rediss" else None
                host, port = url.hostname or "127.0.0.1", url.port or 6379
                opening = loop.create_connection(lambda: protocol, host, port, ssl=context)
            await asyncio.wait_for(opening, self.connect_timeout_s)
            handshake: list[Command] = []
            if url.password:
                user = (unquote(url.username),) if url.username else ()
                handshake.append(("AUTH", *user, unquote(url.password)))
            db = url.path.strip("/") if url.scheme != "unix" else ""
            if db not in ("", "0"):
                handshake.append(("SELECT", db))
            if handshake:
                await self._send(protocol, tuple(handshake))
            self._protocol = protocol
            return protocol
