"""trionet.ws.server_handshake: the server's opening handshake as a step an on_upgrade hook takes.

An ``on_upgrade`` hook of ``trionet.http.serve`` gets the checked handshake and
answers it with ``accept(subprotocol=..., headers=...)`` or ``reject(status,
headers=..., body=...)``, what an ASGI server maps ``websocket.accept``,
``websocket.close`` and ``websocket.http.response`` onto. Real servers on
127.0.0.1 port 0, real clients (ours, and curl for the raw response),
every wait bounded.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

import trionet
from trionet import ws

Hook = Callable[[Any, trionet.net.Socket, bytes], Awaitable[None]]


async def page(req: Any, res: Any) -> None:
    await res.end(b"plain HTTP\n")


async def start(nursery: trio.Nursery, hook: Hook) -> trionet.net.Server:
    """``http.serve`` on 127.0.0.1 port 0 with ``hook`` as its on_upgrade."""
    serve = functools.partial(trionet.http.serve, page, 0, host="127.0.0.1", on_upgrade=hook)
    server: trionet.net.Server = await nursery.start(serve)
    return server


def url(server: trionet.net.Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def test_accept_sends_the_chosen_subprotocol_and_extra_headers(nursery: trio.Nursery) -> None:
    seen: list[list[str]] = []

    async def hook(req: Any, sock: trionet.net.Socket, head: bytes) -> None:
        handshake = await ws.server_handshake(req, sock, head)
        assert handshake is not None
        seen.append(handshake.subprotocols)
        async with handshake.accept(
            subprotocol="chat.v2", headers=[(b"x-session", b"42"), ("X-Server", "trionet")]
        ) as conn:
            async for message in conn:
                await conn.send(f"{conn.subprotocol}: {message}")

    server = await start(nursery, hook)
    with trio.fail_after(5):
        async with ws.connect(url(server), subprotocols=["chat.v1", "chat.v2"]) as client:
            assert client.subprotocol == "chat.v2"
            assert (b"x-session", b"42") in client.request.extra_headers
            assert (b"x-server", b"trionet") in client.request.extra_headers
            await client.send("hi")
            assert await client.receive() == "chat.v2: hi"
    assert seen == [["chat.v1", "chat.v2"]]
    assert client.close_code == 1000


async def test_reject_sends_any_status_headers_and_body(nursery: trio.Nursery) -> None:
    async def hook(req: Any, sock: trionet.net.Socket, head: bytes) -> None:
        handshake = await ws.server_handshake(req, sock, head)
        assert handshake is not None
        if handshake.path == "/default":
            await handshake.reject()  # ASGI: websocket.close before accept
        else:
            await handshake.reject(404, headers={"X-Room": "none"}, body="no such room\n")
        assert handshake.answered

    server = await start(nursery, hook)
    with trio.fail_after(5):
        with pytest.raises(ws.HandshakeError) as refused:
            async with ws.connect(url(server, "/lobby")):
                pass
        assert refused.value.status == 404
        assert (b"x-room", b"none") in refused.value.headers
        assert refused.value.body == b"no such room\n"
        with pytest.raises(ws.HandshakeError) as refused:
            async with ws.connect(url(server, "/default")):
                pass
        assert refused.value.status == 403


async def test_a_malformed_handshake_is_refused_before_the_hook_sees_it(
    nursery: trio.Nursery,
) -> None:
    handshakes: list[ws.ServerHandshake | None] = []

    async def hook(req: Any, sock: trionet.net.Socket, head: bytes) -> None:
        handshakes.append(await ws.server_handshake(req, sock, head))

    server = await start(nursery, hook)
    with trio.fail_after(10):
        done = await trio.run_process(
            [
                "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                "-H", "Connection: Upgrade", "-H", "Upgrade: websocket",
                "-H", "Sec-WebSocket-Version: 8", "-H", "Sec-WebSocket-Key: x",
                f"http://127.0.0.1:{server.port}/",
            ],
            capture_stdout=True,
            check=False,
        )  # fmt: skip
    assert done.stdout == b"426"  # RFC 6455 section 4.4: the versions we speak
    assert handshakes == [None]


async def test_a_handshake_is_answered_once_and_bad_answers_send_nothing(
    nursery: trio.Nursery,
) -> None:
    """The caller's mistakes raise before a byte goes out, so a right answer can follow."""
    problems: list[str] = []

    async def hook(req: Any, sock: trionet.net.Socket, head: bytes) -> None:
        handshake = await ws.server_handshake(req, sock, head)
        assert handshake is not None
        bad_accepts: list[dict[str, Any]] = [
            {"subprotocol": "not-offered"},
            {"headers": {"X-Evil": "a\r\nSet-Cookie: stolen=1"}},  # header injection
            {"headers": {"Sec-WebSocket-Protocol": "chat"}},  # the handshake's own header
        ]
        for options in bad_accepts:
            with pytest.raises(ValueError) as error:
                async with handshake.accept(**options):
                    pass
            problems.append(str(error.value))
        with pytest.raises(ValueError, match="200-599"):
            await handshake.reject(101)
        await handshake.reject(409, body=b"later\n")
        with pytest.raises(RuntimeError, match="already answered"):
            await handshake.reject(403)
        with pytest.raises(RuntimeError, match="already answered"):
            async with handshake.accept():
                pass

    server = await start(nursery, hook)
    with trio.fail_after(5):
        with pytest.raises(ws.HandshakeError) as refused:
            async with ws.connect(url(server), subprotocols=["chat"]):
                pass
    assert (refused.value.status, refused.value.body) == (409, b"later\n")
    assert len(problems) == 3
    assert "not-offered" in problems[0]


async def test_an_error_in_the_accept_block_closes_with_1011_and_comes_out(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """As a handler's failure: the client hears 1011; the hook sees its own exception."""
    caught: list[BaseException] = []

    async def hook(req: Any, sock: trionet.net.Socket, head: bytes) -> None:
        handshake = await ws.server_handshake(req, sock, head)
        assert handshake is not None
        try:
            async with handshake.accept() as conn:
                await conn.receive()
                raise KeyError("app bug")
        except KeyError as exc:
            caught.append(exc)

    server = await start(nursery, hook)
    with trio.fail_after(5), caplog.at_level(logging.INFO, logger="trionet"):
        async with ws.connect(url(server)) as client:
            await client.send("go")
            with pytest.raises(ws.ConnectionClosed) as closed:
                await client.receive()
        while not caught:  # the server's close handshake is finishing
            await trio.sleep(0.01)
    assert (closed.value.code, closed.value.reason) == (1011, "handler failed")
    assert [type(exc) for exc in caught] == [KeyError]


async def test_ws_handler_is_built_on_the_same_steps(nursery: trio.Nursery) -> None:
    """ws.handler's accept= refusal goes through reject(); a bad one becomes a 500."""

    def refuse_badly(req: Any) -> Any:
        return 400, {"X-Bad": "line\r\nbreak"}, b"no"

    hook = ws.handler(lambda conn: conn.aclose(), accept=refuse_badly)
    server = await start(nursery, hook)
    with trio.fail_after(5):
        with pytest.raises(ws.HandshakeError) as refused:
            async with ws.connect(url(server)):
                pass
    assert refused.value.status == 500  # the hook's response would have split the head
