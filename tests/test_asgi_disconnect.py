"""``http.disconnect`` when the client goes away: plain TCP, TLS, behind a pipelined request.

An app waiting on ``receive()`` after the body, or a Starlette streaming
response polling ``request.is_disconnected()``, must learn within a second
that its client closed, whatever the connection carried after the request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
import trio
from _http_server_support import HOST, WAIT, RawClient, get
from _tls_support import Identity
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

import trionet
import trionet.asgi
from trionet.asgi import Message, Receive, Scope, Send

#: How soon after the client leaves the app must know (the issue's bound).
NOTICE = 1.0


async def start(nursery: trio.Nursery, app: Any, identity: Identity | None = None) -> int:
    """Serve the ASGI ``app`` on 127.0.0.1 (HTTPS with ``identity``); its port."""
    tls = identity.options() if identity is not None else {}
    serve = partial(trionet.asgi.serve, app, 0, host=HOST, lifespan="off", **tls)
    server: trionet.net.Server = await nursery.start(serve)
    return server.port


async def connect(port: int, tls: bool, ca: bytes) -> trionet.net.Socket:
    with trio.fail_after(WAIT):
        if tls:
            return await trionet.tls.connect(port, "localhost", ca=ca)
        return await trionet.net.connect(port, HOST)


@pytest.fixture(params=["tcp", "tls"])
def tls(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "tls")


async def test_an_app_waiting_on_receive_gets_http_disconnect(
    nursery: trio.Nursery, tls: bool, server_identity: Identity, ca_pem: bytes
) -> None:
    got: list[Message] = []
    done = trio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["more_body"] is False
        got.append(await receive())  # the body is done: this waits for the client to leave
        done.set()

    port = await start(nursery, app, server_identity if tls else None)
    sock = await connect(port, tls, ca_pem)
    await sock.send(get("/"))
    await trio.sleep(0.2)
    assert got == []
    await sock.aclose()  # over TLS: close_notify, then the end of TCP
    with trio.fail_after(NOTICE):
        await done.wait()
    assert got == [{"type": "http.disconnect"}]


async def test_a_close_behind_a_pipelined_request_is_delivered(nursery: trio.Nursery) -> None:
    got: list[Message] = []
    done = trio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        got.append(await receive())
        done.set()

    port = await start(nursery, app)
    client = await RawClient.connect(port)
    await client.send(get("/wait"))
    await trio.sleep(0.1)  # the server has read the first request; then
    # the next request's bytes come before the end: a peek at the socket sees only them.
    await client.send(get("/next"))
    await client.sock.send_eof()
    with trio.fail_after(NOTICE):
        await done.wait()
    assert got == [{"type": "http.disconnect"}]
    await client.aclose()


async def test_the_pipelined_request_read_ahead_is_still_served(nursery: trio.Nursery) -> None:
    heard: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        if scope["path"] == "/next":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"next"})
            return

        async def listen() -> None:
            heard.append(await receive())  # reads the pipelined request ahead, keeps it

        async with trio.open_nursery() as tasks:
            tasks.start_soon(listen)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for piece in (b"a", b"b"):
                await trio.sleep(0.05)
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b"c"})

    port = await start(nursery, app)
    client = await RawClient.connect(port)
    await client.send(get("/slow") + get("/next"))
    assert (await client.response()).body == b"abc"
    assert (await client.response()).body == b"next"
    # Told once the response was complete, as the spec says.
    assert heard == [{"type": "http.disconnect"}]
    await client.aclose()


async def test_a_starlette_stream_polling_is_disconnected_stops(
    nursery: trio.Nursery, tls: bool, server_identity: Identity, ca_pem: bytes
) -> None:
    stopped = trio.Event()
    ticks: list[int] = []

    async def events(request: Request) -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            for tick in range(int(WAIT * 20)):  # one event per 50 ms while the client is there
                if await request.is_disconnected():
                    stopped.set()
                    return
                ticks.append(tick)
                yield b"data: tick\n\n"
                await trio.sleep(0.05)

        return StreamingResponse(gen(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/events", events)])
    port = await start(nursery, app, server_identity if tls else None)
    sock = await connect(port, tls, ca_pem)
    await sock.send(get("/events"))
    with trio.fail_after(WAIT):
        assert b"data: tick" in await sock.receive()
    await sock.aclose()
    with trio.fail_after(NOTICE):
        await stopped.wait()
    assert len(ticks) < WAIT * 20


# -- asking before the body was read ---------------------------------------------------
async def test_receive_in_a_cancelled_scope_leaves_the_body_whole(nursery: trio.Nursery) -> None:
    """Starlette's is_disconnected() is a receive() in an already-cancelled scope;
    asked before the body came, it must take nothing of it (the body once read
    as empty pieces forever after)."""
    got: list[tuple[bytes, int]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        with trio.CancelScope() as asked:
            asked.cancel()
            await receive()  # nothing has arrived yet: cancelled, nothing taken
        assert asked.cancelled_caught
        body, messages = b"", 0
        while messages < 100:  # bounded: a broken body must not spin forever
            message = await receive()
            messages += 1
            body += message["body"]
            if not message["more_body"]:
                break
        got.append((body, messages))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    port = await start(nursery, app)
    client = await RawClient.connect(port)
    await client.send(get("/", "Content-Length: 10", method="POST"))
    await trio.sleep(0.1)  # the app asks before the body comes
    await client.send(b"0123456789")
    assert (await client.response()).body == b"0123456789"
    assert got == [(b"0123456789", 1)]
    await client.aclose()


async def test_starlette_checks_is_disconnected_before_reading_the_body(
    nursery: trio.Nursery,
) -> None:
    async def upload(request: Request) -> PlainTextResponse:
        gone = await request.is_disconnected()
        body = await request.body()
        return PlainTextResponse(f"{gone} {body.decode()}")

    port = await start(nursery, Starlette(routes=[Route("/", upload, methods=["POST"])]))
    client = await RawClient.connect(port)
    for framing, body in (("Content-Length: 5", b"hello"),
                          ("Transfer-Encoding: chunked", b"5\r\nhello\r\n0\r\n\r\n")):  # fmt: skip
        await client.send(get("/", framing, method="POST"))
        await trio.sleep(0.1)
        await client.send(body)
        assert (await client.response()).body == b"False hello"
    await client.aclose()
