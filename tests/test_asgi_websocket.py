"""trionet.asgi.serve with raw ASGI WebSocket apps, driven by trionet's own ws client.

Accept with a subprotocol and headers, text and bytes both ways, the close
codes in both directions, the ``websocket.http.response`` denial, and what
an app's failure before and after accepting looks like to the client.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import pytest
import trio
from _http_server_support import HOST, WAIT

import trionet
import trionet.asgi
from trionet.asgi import Message, Receive, Scope, Send
from trionet.ws import ConnectionClosed, HandshakeError


async def start(nursery: trio.Nursery, app: Any, **options: Any) -> int:
    """Start ``trionet.asgi.serve(app)`` on 127.0.0.1 (no lifespan); its port."""
    server = await nursery.start(
        partial(trionet.asgi.serve, app, 0, host=HOST, lifespan="off", **options)
    )
    port: int = server.port
    return port


async def test_echo_with_subprotocol_headers_text_and_bytes(nursery: trio.Nursery) -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)
        assert (await receive()) == {"type": "websocket.connect"}
        await send({"type": "websocket.accept", "subprotocol": "chat",
                    "headers": [(b"x-served-by", b"trionet")]})  # fmt: skip
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                break
            if event.get("text") is not None:
                await send({"type": "websocket.send", "text": "echo " + event["text"]})
            else:
                await send({"type": "websocket.send", "bytes": event["bytes"][::-1]})

    port = await start(nursery, app, root_path="/root")
    with trio.fail_after(WAIT):
        async with trionet.ws.connect(
            f"ws://{HOST}:{port}/chat?room=1", subprotocols=["other", "chat"]
        ) as ws:
            assert ws.subprotocol == "chat"
            await ws.send("hi")
            assert await ws.receive() == "echo hi"
            await ws.send(b"\x01\x02")
            assert await ws.receive() == b"\x02\x01"
    scope = scopes[0]
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/root/chat"
    assert scope["query_string"] == b"room=1"
    assert scope["subprotocols"] == ["other", "chat"]
    assert "websocket.http.response" in scope["extensions"]
    assert any(name == b"sec-websocket-key" for name, _ in scope["headers"])


async def test_accept_headers_reach_the_client(nursery: trio.Nursery) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept", "headers": [(b"x-served-by", b"trionet")]})
        await send({"type": "websocket.close"})

    port = await start(nursery, app)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    request = (
        f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock = await trionet.net.connect(port, HOST)
    await sock.send(request.encode())
    head = b""
    with trio.fail_after(WAIT):
        while b"\r\n\r\n" not in head:
            head += await sock.receive()
    await sock.aclose()
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"x-served-by: trionet\r\n" in head.lower()


async def test_app_close_code_and_reason_reach_the_client(nursery: trio.Nursery) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001, "reason": "go away"})

    port = await start(nursery, app)
    with trio.fail_after(WAIT):
        async with trionet.ws.connect(f"ws://{HOST}:{port}/") as ws:
            with pytest.raises(ConnectionClosed) as info:
                await ws.receive()
    assert (info.value.code, info.value.reason) == (4001, "go away")


async def test_disconnect_carries_the_clients_close_code(nursery: trio.Nursery) -> None:
    got: list[Message] = []
    done = trio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        got.append(await receive())
        done.set()

    port = await start(nursery, app)
    with trio.fail_after(WAIT):
        async with trionet.ws.connect(f"ws://{HOST}:{port}/") as ws:
            await ws.aclose(4002, "bye")
        await done.wait()
    assert got == [{"type": "websocket.disconnect", "code": 4002, "reason": "bye"}]


async def test_close_before_accept_is_403(nursery: trio.Nursery) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.close"})

    port = await start(nursery, app)
    with trio.fail_after(WAIT), pytest.raises(HandshakeError) as info:
        async with trionet.ws.connect(f"ws://{HOST}:{port}/"):
            pass
    assert info.value.status == 403


async def test_denial_response_extension_sends_its_own_status_and_body(
    nursery: trio.Nursery,
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"www-authenticate", b"Bearer")]})  # fmt: skip
        await send({"type": "websocket.http.response.body", "body": b"who ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"are you?"})

    port = await start(nursery, app)
    with trio.fail_after(WAIT), pytest.raises(HandshakeError) as info:
        async with trionet.ws.connect(f"ws://{HOST}:{port}/"):
            pass
    assert info.value.status == 401
    assert info.value.body == b"who are you?"
    assert (b"www-authenticate", b"Bearer") in [(n.lower(), v) for n, v in info.value.headers]


async def test_an_app_failing_before_accept_gets_500(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise KeyError("before accept")

    port = await start(nursery, app)
    with trio.fail_after(WAIT), pytest.raises(HandshakeError) as info:
        async with trionet.ws.connect(f"ws://{HOST}:{port}/"):
            pass
    assert info.value.status == 500
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and errors[0].exc_info is not None


async def test_an_app_failing_after_accept_closes_with_1011(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        raise KeyError("after accept")

    port = await start(nursery, app)
    with trio.fail_after(WAIT):
        async with trionet.ws.connect(f"ws://{HOST}:{port}/") as ws:
            await ws.send("trigger")
            with pytest.raises(ConnectionClosed) as info:
                await ws.receive()
    assert info.value.code == 1011
    assert [r for r in caplog.records if r.levelno == logging.ERROR]


async def test_returning_after_accept_closes_normally(nursery: trio.Nursery) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "only this"})

    port = await start(nursery, app)
    with trio.fail_after(WAIT):
        async with trionet.ws.connect(f"ws://{HOST}:{port}/") as ws:
            assert [m async for m in ws] == ["only this"]
            assert ws.close_code == 1000


async def test_send_after_close_raises_oserror_in_the_app(nursery: trio.Nursery) -> None:
    caught: list[BaseException] = []
    done = trio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        assert (await receive())["type"] == "websocket.disconnect"
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except OSError as exc:
            caught.append(exc)
        done.set()

    port = await start(nursery, app)
    with trio.fail_after(WAIT):
        async with trionet.ws.connect(f"ws://{HOST}:{port}/"):
            pass
        await done.wait()
    assert isinstance(caught[0], trionet.asgi.ClientDisconnected)


async def test_messages_over_ws_max_size_close_with_1009(nursery: trio.Nursery) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    port = await start(nursery, app, ws_max_size=1000)
    with trio.fail_after(WAIT):
        async with trionet.ws.connect(f"ws://{HOST}:{port}/") as ws:
            await ws.send("x" * 2000)
            with pytest.raises(ConnectionClosed) as info:
                await ws.receive()
    assert info.value.code == 1009
