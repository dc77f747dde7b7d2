"""A server's stop closes its WebSockets with 1001, "going away" (RFC 6455 section 7.4.1).

``server.aclose(timeout)`` (or SIGTERM through trionet.run; a bare ``close()``
only stops accepting, as ws's ``wss.close()``) starts the close handshake on
every open WebSocket of the server at once:
the client reads Close 1001, the handler's ``receive()`` raises
``ConnectionClosed(1001)`` (an ``async for`` just ends), and the server is
done long before the timeout, without cancelling anything. The same holds
for ``trionet.http.serve(..., on_upgrade=ws.handler(...))`` and for ASGI
apps, which get ``websocket.disconnect`` with code 1001.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
import trio

import trionet
import trionet.asgi
from trionet import ws
from trionet.asgi import Message, Receive, Scope, Send

#: The stop's timeout in these tests; the servers must be done well within it.
STOP_TIMEOUT = 5.0


class EchoUntilClosed:
    """An echo handler that records how its connection closed, as its receive() said."""

    def __init__(self) -> None:
        self.codes: list[int] = []

    async def __call__(self, sock: ws.WebSocket) -> None:
        while True:
            try:
                message = await sock.receive()
            except ws.ConnectionClosed as exc:
                self.codes.append(exc.code)
                raise
            await sock.send(message)


async def stop(server: Any) -> float:
    """``server.aclose(timeout=STOP_TIMEOUT)``; how long it took."""
    started = trio.current_time()
    await server.aclose(timeout=STOP_TIMEOUT)
    return trio.current_time() - started


async def test_aclose_sends_going_away_and_returns_at_once(nursery: trio.Nursery) -> None:
    handler = EchoUntilClosed()
    server = await nursery.start(functools.partial(ws.serve, handler, 0, host="127.0.0.1"))
    closed: list[ws.ConnectionClosed] = []

    async def client(done: trio.Event) -> None:
        async with ws.connect(f"ws://127.0.0.1:{server.port}/") as sock:
            await sock.send("x")
            assert await sock.receive() == "x"
            done.set()
            with pytest.raises(ws.ConnectionClosed) as info:
                await sock.receive()
            closed.append(info.value)

    with trio.fail_after(STOP_TIMEOUT + 5):
        async with trio.open_nursery() as clients:
            ready = [trio.Event() for _ in range(3)]
            for event in ready:
                clients.start_soon(client, event)
            for event in ready:
                await event.wait()
            took = await stop(server)
    assert took < 1.0
    assert [(c.code, c.reason) for c in closed] == [(1001, "going away")] * 3
    assert handler.codes == [1001] * 3
    assert server.clients == set() and server.connections == 0


async def test_an_async_for_handler_just_ends_on_the_stop(nursery: trio.Nursery) -> None:
    ended = trio.Event()

    async def echo(sock: ws.WebSocket) -> None:
        async for message in sock:
            await sock.send(message)
        ended.set()  # the loop ended: 1001 is a normal close

    server = await nursery.start(functools.partial(ws.serve, echo, 0, host="127.0.0.1"))
    with trio.fail_after(STOP_TIMEOUT + 5):
        async with ws.connect(f"ws://127.0.0.1:{server.port}/") as sock:
            await sock.send("x")
            assert await sock.receive() == "x"
            async with trio.open_nursery() as stopping:
                stopping.start_soon(server.aclose)  # the WebSocket goes away
                with pytest.raises(ws.ConnectionClosed) as info:
                    await sock.receive()
                await ended.wait()
        await server.wait_closed()
    assert info.value.code == 1001


def websockets_session(url: str, connected: Any) -> tuple[int, str]:
    """A blocking `websockets` client (run in a thread): echo once, then wait for the Close."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with connect(url, open_timeout=10, close_timeout=10) as sock:
        sock.send("x")
        assert sock.recv(timeout=10) == "x"
        trio.from_thread.run_sync(connected.set)
        try:
            sock.recv(timeout=10)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None
            return exc.rcvd.code, exc.rcvd.reason
    raise AssertionError("the server sent a message instead of a Close")


async def test_the_websockets_client_sees_1001_from_an_http_server(
    nursery: trio.Nursery,
) -> None:
    """One HTTP server with a WebSocket hook: its stop closes the WebSockets too."""

    async def page(req: Any, res: Any) -> None:
        await res.end(b"page\n")

    handler = EchoUntilClosed()
    serve = functools.partial(
        trionet.http.serve, page, 0, host="127.0.0.1", on_upgrade=ws.handler(handler)
    )
    server = await nursery.start(serve)
    connected = trio.Event()
    seen: list[tuple[int, str]] = []

    async def session() -> None:
        url = f"ws://127.0.0.1:{server.port}/"
        seen.append(await trio.to_thread.run_sync(websockets_session, url, connected))

    with trio.fail_after(STOP_TIMEOUT + 10):
        async with trio.open_nursery() as clients:
            clients.start_soon(session)
            await connected.wait()
            took = await stop(server)
    assert took < 1.0
    assert seen == [(1001, "going away")]
    assert handler.codes == [1001]


async def test_an_asgi_app_gets_disconnect_1001(nursery: trio.Nursery) -> None:
    got: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                got.append(message)
                return
            await send({"type": "websocket.send", "text": message["text"]})

    serve = functools.partial(trionet.asgi.serve, app, 0, host="127.0.0.1", lifespan="off")
    server = await nursery.start(serve)
    with trio.fail_after(STOP_TIMEOUT + 5):
        async with ws.connect(f"ws://127.0.0.1:{server.port}/") as sock:
            await sock.send("x")
            assert await sock.receive() == "x"
            async with trio.open_nursery() as stopping:
                stopping.start_soon(stop, server)
                with pytest.raises(ws.ConnectionClosed) as info:
                    await sock.receive()
        took = await stop(server)  # already closed: returns at once
    assert info.value.code == 1001
    assert took < 1.0
    assert got == [{"type": "websocket.disconnect", "code": 1001, "reason": "going away"}]


async def test_a_handshake_finishing_during_the_stop_goes_away_too(
    nursery: trio.Nursery,
) -> None:
    """A connection accepted after aclose() was called still gets 1001, not a hang."""
    server: Any = None

    async def accept(req: Any) -> bool:
        nursery.start_soon(server.aclose)  # the stop begins while this handshake is in flight
        await trio.sleep(0)  # ... and has begun
        return True

    handler = EchoUntilClosed()
    serve = functools.partial(ws.serve, handler, 0, host="127.0.0.1", accept=accept)
    server = await nursery.start(serve)
    with trio.fail_after(STOP_TIMEOUT + 5):
        async with ws.connect(f"ws://127.0.0.1:{server.port}/") as sock:
            with pytest.raises(ws.ConnectionClosed) as info:
                await sock.receive()
        await server.wait_closed()
    assert info.value.code == 1001
    assert handler.codes == [1001]
