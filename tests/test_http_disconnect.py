"""``res.wait_closed()`` and ``res.client_gone()``: an app learns that its client went away.

Node's ``res.on('close')``: the wait ends when the response is complete or
the client closed or reset the connection, and ``res.finished`` says which.
Each test drives a real server over loopback with a raw client (plain TCP,
and TLS through the stdlib's ``ssl`` over memory BIOs, so that the test
decides which TLS records go out in which TCP write).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio
import trustme
from _http_server_support import HOST, WAIT, Incomplete, RawClient, get, parse_all
from _tls_support import Identity

import trionet
from trionet.http._close_watch import READ_AHEAD_LIMIT

#: How soon after the client leaves the app must know (the issue's bound).
NOTICE = 1.0

App = Callable[[trionet.http.Request, trionet.http.Response], Awaitable[None]]


async def start(nursery: trio.Nursery, app: App, identity: Identity | None = None) -> int:
    """Serve ``app`` on 127.0.0.1 (HTTPS with ``identity``); its port."""
    if identity is None:
        server = await nursery.start(partial(trionet.http.serve, app, 0, host=HOST))
    else:
        serve = partial(trionet.https.serve, app, 0, host=HOST, **identity.options())
        server = await nursery.start(serve)
    port: int = server.port
    return port


class MemoryTLSClient:
    """A TLS client whose records the test places: ``ssl.SSLObject`` over memory BIOs."""

    def __init__(self, stream: trio.SocketStream, context: ssl.SSLContext) -> None:
        self.stream = stream
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self.received = b""

    @classmethod
    async def connect(cls, port: int, ca: trustme.CA) -> MemoryTLSClient:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        with trio.fail_after(WAIT):
            client = cls(await trio.open_tcp_stream(HOST, port), context)
            while True:
                try:
                    client.tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    await client.flush()
                    client.incoming.write(await client.stream.receive_some(65536))
            await client.flush()
        return client

    async def flush(self) -> None:
        if self.outgoing.pending:
            await self.stream.send_all(self.outgoing.read())

    async def send_records(self, *records: bytes) -> None:
        """Each of ``records`` in its own TLS record, all in one TCP write."""
        for record in records:
            self.tls.write(record)
        await self.flush()

    async def close_notify(self) -> None:
        """Send close_notify, keeping TCP open."""
        with contextlib.suppress(ssl.SSLWantReadError):  # the peer's close_notify is not awaited
            self.tls.unwrap()
        await self.flush()

    async def read_until(self, count: int) -> list[bytes]:
        """The bodies of the next ``count`` responses."""
        with trio.fail_after(WAIT):
            while True:
                with contextlib.suppress(Incomplete):
                    responses = parse_all(self.received)
                    if len(responses) >= count:
                        return [response.body for response in responses]
                data = await self.stream.receive_some(65536)
                assert data, "the server closed early"
                self.incoming.write(data)
                try:
                    while chunk := self.tls.read(65536):
                        self.received += chunk
                except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                    pass

    async def aclose(self) -> None:
        await self.stream.aclose()


def waiting_app(seen: list[bool], returned: trio.Event) -> App:
    """An app that waits for its client to leave, then records ``res.finished``."""

    async def app(req: trionet.http.Request, res: trionet.http.Response) -> None:
        if req.path == "/next":
            await res.end(b"next")
            return
        await res.wait_closed()
        seen.append(res.finished)
        returned.set()
        await res.end(b"left")

    return app


# -- plain TCP ---------------------------------------------------------------------
async def test_wait_closed_returns_when_the_client_closes(nursery: trio.Nursery) -> None:
    seen: list[bool] = []
    returned = trio.Event()
    port = await start(nursery, waiting_app(seen, returned))
    client = await RawClient.connect(port)
    await client.send(get("/wait"))
    await trio.sleep(0.2)
    assert not returned.is_set()  # the client is still there
    await client.aclose()
    with trio.fail_after(NOTICE):
        await returned.wait()
    assert seen == [False]  # the client left first


async def test_wait_closed_returns_when_the_client_resets(nursery: trio.Nursery) -> None:
    seen: list[bool] = []
    returned = trio.Event()
    port = await start(nursery, waiting_app(seen, returned))
    sock = trio.socket.socket()
    await sock.connect((HOST, port))
    await sock.send(get("/wait"))
    await trio.sleep(0.1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST
    with trio.fail_after(NOTICE):
        await returned.wait()
    assert seen == [False]


async def test_a_close_behind_a_pipelined_request_is_seen_and_that_request_served(
    nursery: trio.Nursery,
) -> None:
    seen: list[bool] = []
    returned = trio.Event()
    port = await start(nursery, waiting_app(seen, returned))
    client = await RawClient.connect(port)
    await client.send(get("/wait"))
    await trio.sleep(0.1)  # the server has read the first request; then
    # the next request's bytes come before the end: a peek at the socket sees only them.
    await client.send(get("/next"))
    await client.sock.send_eof()
    with trio.fail_after(NOTICE):
        await returned.wait()
    assert seen == [False]
    # The read-ahead kept the pipelined request: both answers come, in order.
    assert (await client.response()).body == b"left"
    assert (await client.response()).body == b"next"
    await client.aclose()


async def test_wait_closed_returns_when_the_response_finishes_and_the_next_request_is_served(
    nursery: trio.Nursery,
) -> None:
    seen: list[bool] = []

    async def app(req: trionet.http.Request, res: trionet.http.Response) -> None:
        if req.path == "/next":
            await res.end(b"next")
            return

        async def watch() -> None:
            await res.wait_closed()
            seen.append(res.finished)

        async with trio.open_nursery() as watchers:
            for _ in range(3):  # any number of tasks may wait
                watchers.start_soon(watch)
            for piece in (b"a", b"b", b"c"):
                await trio.sleep(0.05)  # the watchers read ahead meanwhile
                await res.write(piece)
            await res.end()

    port = await start(nursery, app)
    client = await RawClient.connect(port)
    await client.send(get("/slow") + get("/next"))
    assert (await client.response()).body == b"abc"
    assert (await client.response()).body == b"next"
    assert seen == [True, True, True]
    await client.aclose()


async def test_wait_closed_after_the_response_returns_at_once(nursery: trio.Nursery) -> None:
    async def app(req: trionet.http.Request, res: trionet.http.Response) -> None:
        await res.end(b"done")
        with trio.fail_after(NOTICE):
            await res.wait_closed()
            assert not await res.client_gone()
            await res.wait_closed()  # still at once, after client_gone() made its watch

    port = await start(nursery, app)
    client = await RawClient.connect(port)
    await client.send(get("/") + get("/"))
    assert (await client.response()).body == b"done"
    assert (await client.response()).body == b"done"
    await client.aclose()


async def test_wait_closed_needs_the_body_read_first(nursery: trio.Nursery) -> None:
    errors: list[str] = []

    async def app(req: trionet.http.Request, res: trionet.http.Response) -> None:
        try:
            await res.wait_closed()
        except RuntimeError as exc:
            errors.append(str(exc))
        body = await req.read()
        await res.end(body)

    port = await start(nursery, app)
    client = await RawClient.connect(port)
    await client.send(get("/", "Content-Length: 5", method="POST") + b"hello")
    assert (await client.response()).body == b"hello"
    assert errors == ["the request body must be read first"]
    await client.aclose()


async def test_client_gone_answers_without_waiting(nursery: trio.Nursery) -> None:
    answers: list[bool] = []
    done = trio.Event()

    async def app(req: trionet.http.Request, res: trionet.http.Response) -> None:
        with trio.fail_after(NOTICE):
            answers.append(await res.client_gone())  # the client is there: False at once
        with trio.CancelScope() as cancelled:
            cancelled.cancel()
            answers.append(await res.client_gone())  # it answers in a cancelled scope too
        with trio.fail_after(WAIT):
            while not await res.client_gone():
                await trio.sleep(0.01)
        answers.append(True)
        done.set()

    port = await start(nursery, app)
    client = await RawClient.connect(port)
    await client.send(get("/"))
    await trio.sleep(0.2)
    await client.aclose()
    with trio.fail_after(WAIT):
        await done.wait()
    assert answers == [False, False, True]


# -- TLS ---------------------------------------------------------------------------
@pytest.mark.parametrize("ending", ["close_notify", "tcp_close"])
async def test_wait_closed_over_tls(
    nursery: trio.Nursery, server_identity: Identity, tls_ca: trustme.CA, ending: str
) -> None:
    seen: list[bool] = []
    returned = trio.Event()
    port = await start(nursery, waiting_app(seen, returned), server_identity)
    client = await MemoryTLSClient.connect(port, tls_ca)
    await client.send_records(get("/wait"))
    await trio.sleep(0.2)
    assert not returned.is_set()
    if ending == "close_notify":  # TLS says the end; TCP stays open
        await client.close_notify()
    else:  # no close_notify: the end of TCP ends the data, as Node treats it
        await client.aclose()
    with trio.fail_after(NOTICE):
        await returned.wait()
    assert seen == [False]
    await client.aclose()


async def test_a_pipelined_tls_record_survives_the_cancelled_wait(
    nursery: trio.Nursery, server_identity: Identity, tls_ca: trustme.CA
) -> None:
    """The second request waits decrypted in OpenSSL when the app gives up waiting:
    a cancelled read must leave it there (it once went with the cancellation)."""
    cancelled: list[bool] = []

    async def app(req: trionet.http.Request, res: trionet.http.Response) -> None:
        if req.path == "/first":
            async with trio.open_nursery() as watchers:
                watchers.start_soon(res.wait_closed)
                await trio.sleep(0)
                watchers.cancel_scope.cancel()  # the app stops waiting (Starlette's task group)
            cancelled.append(not res.finished)
        await res.end(req.path.encode())

    port = await start(nursery, app, server_identity)
    client = await MemoryTLSClient.connect(port, tls_ca)
    await client.send_records(get("/first"), get("/second"), get("/third"))
    assert await client.read_until(3) == [b"/first", b"/second", b"/third"]
    assert cancelled == [True]
    await client.aclose()


async def test_the_read_ahead_stops_at_its_limit_and_loses_no_request(
    nursery: trio.Nursery,
) -> None:
    buffered: list[int] = []

    async def app(req: trionet.http.Request, res: trionet.http.Response) -> None:
        if req.path != "/first":
            await res.end(req.path.encode())
            return
        with trio.move_on_after(0.5):  # the client pipelines far more than the limit
            await res.wait_closed()
        connection = res._exchange
        buffered.append(len(connection.buf) - connection.pos)
        await res.end(b"first")

    port = await start(nursery, app)
    client = await RawClient.connect(port)
    padding = "X-Pad: " + "p" * 900
    pipelined = [get(f"/{n}", padding) for n in range(200)]  # about 180 KiB
    await client.send(get("/first") + b"".join(pipelined))
    assert (await client.response()).body == b"first"
    for n in range(200):
        assert (await client.response()).body == f"/{n}".encode()
    await client.aclose()
    # It read ahead, but not without bound (64 KiB, plus at most one read past it).
    assert 0 < buffered[0] < READ_AHEAD_LIMIT + 65536 + 1
