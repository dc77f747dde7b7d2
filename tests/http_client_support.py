"""Peers for the HTTP client tests: small servers on real loopback sockets.

``serve_h11`` is a keep-alive HTTP/1.1 server on ``trionet.net.serve`` and h11
that counts its connections (how many are open now, the most at once, how many
in total), which is what the pool tests assert. ``serve_raw`` sends crafted
bytes for the bad-server cases.
"""

from __future__ import annotations

import inspect
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import h11
import trio

import trionet

#: (status, headers, body) an app returns; headers as pairs of str.
Reply = tuple[int, list[tuple[str, str]], bytes]
App = Callable[[h11.Request, bytes], Reply | Awaitable[Reply]]


@dataclass
class ConnectionStats:
    """What the server saw: connections open now, the most at once, all of them."""

    open: int = 0
    max_open: int = 0
    total: int = 0
    requests: int = 0
    seen: list[h11.Request] = field(default_factory=list)


def hello(request: h11.Request, body: bytes) -> Reply:
    return 200, [("content-type", "text/plain")], b"hello"


async def serve_h11(
    nursery: trio.Nursery,
    app: App = hello,
    *,
    keep_requests: bool = False,
    path: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[int, ConnectionStats]:
    """Start a counting HTTP/1.1 server on 127.0.0.1 (or Unix ``path``); returns (port, stats)."""
    stats = ConnectionStats()

    async def handler(sock: trionet.net.Socket) -> None:
        stats.open += 1
        stats.total += 1
        stats.max_open = max(stats.max_open, stats.open)
        try:
            if ssl_context is not None:
                tls = trio.SSLStream(sock.stream, ssl_context, server_side=True)
                try:
                    await tls.do_handshake()
                except trio.BrokenResourceError:
                    return
                sock = trionet.net.Socket(tls)
            await _drive(sock, app, stats, keep_requests)
        finally:
            stats.open -= 1

    if path is not None:
        await nursery.start(partial(trionet.net.serve, handler, path=path))
        return 0, stats
    server = await nursery.start(partial(trionet.net.serve, handler, 0, host="127.0.0.1"))
    return server.port, stats


async def _drive(
    sock: trionet.net.Socket, app: App, stats: ConnectionStats, keep_requests: bool
) -> None:
    conn = h11.Connection(h11.SERVER)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await sock.receive()
            if not data:
                return
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            request, chunks = event, []
            while not isinstance(event := conn.next_event(), h11.EndOfMessage):
                if event is h11.NEED_DATA:
                    conn.receive_data(await sock.receive())
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
            stats.requests += 1
            if keep_requests:
                stats.seen.append(request)
            reply = app(request, b"".join(chunks))
            if inspect.isawaitable(reply):
                reply = await reply
            status, headers, body = reply
            headers = [*headers, ("content-length", str(len(body)))]
            out: bytes = conn.send(h11.Response(status_code=status, headers=headers))
            if request.method != b"HEAD":
                out += conn.send(h11.Data(data=body))
            await sock.send(out + conn.send(h11.EndOfMessage()))
        if conn.our_state is h11.MUST_CLOSE or isinstance(event, h11.ConnectionClosed):
            return
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()


async def serve_raw(
    nursery: trio.Nursery, handler: Callable[[trionet.net.Socket], Awaitable[None]]
) -> int:
    """Start a raw TCP server running ``handler`` per connection; returns the port."""
    server = await nursery.start(partial(trionet.net.serve, handler, 0, host="127.0.0.1"))
    return int(server.port)


async def read_head(sock: trionet.net.Socket) -> bytes:
    """Read one request head (through the blank line) from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await sock.receive()
        if not chunk:
            return data
        data += chunk
    return data


class Gate:
    """Holds requests on the server until opened, so tests see the pool mid-flight.

    ``await gate.hold()`` inside any app (or use the gate itself as an h11
    app); ``await gate.reached(n)`` waits until ``n`` requests are held.
    """

    def __init__(self) -> None:
        self.held = 0
        self._opened = trio.Event()
        self._changed = trio.Event()

    async def hold(self) -> None:
        self.held += 1
        self._changed.set()
        try:
            await self._opened.wait()
        finally:
            self.held -= 1

    async def __call__(self, request: h11.Request, body: bytes) -> Reply:
        await self.hold()
        return 200, [], b"hello"

    async def reached(self, count: int) -> None:
        while self.held < count:
            self._changed = trio.Event()
            await self._changed.wait()

    def open(self) -> None:
        self._opened.set()
