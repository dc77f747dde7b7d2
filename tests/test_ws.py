"""trionet.ws: the server, the client and what a user sees of the protocol.

Every test runs a real server on 127.0.0.1 port 0 and real clients, bounded by
``trio.fail_after``. Raw-frame protocol violations are in test_ws_violations.py,
the Autobahn case list in test_ws_autobahn.py, Node and websockets interop in
test_ws_interop.py.
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from _tls_support import Identity
from _ws_raw import (
    BINARY,
    CONT,
    PING,
    PONG,
    TEXT,
    RawClient,
    accept_token,
    close_frame,
    frame,
    read_handshake_key,
)
from conftest import open_fds, silent_peer

import trionet
from trionet import ws


async def echo(sock: ws.WebSocket) -> None:
    async for message in sock:
        await sock.send(message)


async def start(nursery: trio.Nursery, handler: Any = echo, **options: Any) -> ws.Server:
    """Start ``ws.serve`` on 127.0.0.1, port 0."""
    serve = functools.partial(ws.serve, handler, 0, host="127.0.0.1", **options)
    return await nursery.start(serve)


def url(server: Any, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


# -- the seed's flow and basic messaging --------------------------------------------


async def test_seed_flow_hello_world_yakexi(nursery: trio.Nursery) -> None:
    async def yakexi(sock: ws.WebSocket) -> None:
        async for message in sock:
            if message == "hello world!":
                await sock.send("yakexi")

    server = await start(nursery, yakexi)
    with trio.fail_after(5):
        async with ws.connect(url(server)) as client:
            await client.send("hello world!")
            assert await client.receive() == "yakexi"
    assert client.close_code == 1000


async def test_text_stays_text_and_bytes_stay_bytes(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    with trio.fail_after(5):
        async with ws.connect(url(server)) as client:
            await client.send("héllo ✓")
            await client.send(b"\x00\xffbinary")
            await client.send(bytearray(b"ba"))
            assert await client.receive() == "héllo ✓"
            assert await client.receive() == b"\x00\xffbinary"
            assert await client.receive() == b"ba"


async def test_an_app_keeps_its_own_attributes_on_a_websocket(nursery: trio.Nursery) -> None:
    """ws's heartbeat example marks each connection (``ws.isAlive = true``); so can we."""
    clients: list[ws.WebSocket] = []

    async def mark(sock: ws.WebSocket) -> None:
        sock.is_alive = True  # type: ignore[attr-defined]
        clients.append(sock)
        async for message in sock:
            await sock.send(f"{message} {sock.is_alive}")  # type: ignore[attr-defined]

    server = await start(nursery, mark)
    with trio.fail_after(5):
        async with ws.connect(url(server)) as client:
            await client.send("alive?")
            assert await client.receive() == "alive? True"
    assert [vars(c) for c in clients] == [{"is_alive": True}]


async def test_path_request_and_remote_address(nursery: trio.Nursery) -> None:
    seen: dict[str, Any] = {}

    async def handler(sock: ws.WebSocket) -> None:
        seen.update(path=sock.path, remote=sock.remote_address, request=sock.request)

    server = await start(nursery, handler)
    with trio.fail_after(5):
        async with ws.connect(url(server, "/chat?room=1"), headers={"X-Token": "abc"}) as client:
            with pytest.raises(ws.ConnectionClosed) as closed:
                await client.receive()
    assert closed.value.code == 1000
    assert seen["path"] == "/chat?room=1"
    assert seen["remote"][0] == "127.0.0.1"
    assert seen["request"].headers["x-token"] == "abc"


async def test_the_handshake_request_reads_as_received_for_the_connections_life(
    nursery: trio.Nursery,
) -> None:
    """ws.request keeps its head packed while the connection lives; it reads the same."""
    seen: dict[str, Any] = {}

    async def handler(sock: ws.WebSocket) -> None:
        req = sock.request
        seen.update(
            method=req.method, url=req.url, path=req.path, query=req.query,
            version=req.http_version, host=req.host, headers=dict(req.headers),
            raw=req.raw_headers, remote=req.remote_address, body=await req.read(),
            info=req.info, trailers=dict(req.trailers),
        )  # fmt: skip
        await sock.send("seen")

    server = await start(nursery, handler, proxy_headers=True, forwarded_allow_ips="127.0.0.1")
    lines = [
        (b"Host", b"example.test:8080"),
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"Sec-WebSocket-Version", b"13"),
        (b"X-Note", b"a: b, c:d"),  # colons in a value
        (b"x-dup", b"1"),
        (b"X-DUP", b"2"),
        (b"X-Empty", b""),
        (b"X-Forwarded-For", b"203.0.113.7"),
    ]
    head = b"GET /chat?room=1&room=2 HTTP/1.1\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in lines) + b"\r\n"
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(head)
            answer = b""
            while b"seen" not in answer:
                chunk = await stream.receive_some()
                assert chunk, "the server closed the connection"
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 101 ")
    assert seen["method"] == "GET" and seen["version"] == "1.1"
    assert seen["url"] == "/chat?room=1&room=2" and seen["path"] == "/chat"
    assert seen["query"] == {"room": ["1", "2"]}
    assert seen["host"] == "example.test:8080"
    assert seen["raw"] == lines
    assert seen["headers"]["x-note"] == "a: b, c:d"
    assert seen["headers"]["x-dup"] == "1, 2"
    assert seen["headers"]["x-empty"] == ""
    assert seen["remote"][0] == "203.0.113.7"  # read through the packed forwarding header
    assert seen["body"] == b"" and seen["trailers"] == {}
    assert seen["info"].upgrade and seen["info"].keep_alive and seen["info"].content_length == 0


async def test_async_for_ends_cleanly_when_the_server_closes_normally(
    nursery: trio.Nursery,
) -> None:
    async def three_then_bye(sock: ws.WebSocket) -> None:
        for i in range(3):
            await sock.send(str(i))
        await sock.aclose(1001, "going away")

    server = await start(nursery, three_then_bye)
    with trio.fail_after(5):
        async with ws.connect(url(server)) as client:
            assert [m async for m in client] == ["0", "1", "2"]
    assert (client.close_code, client.close_reason) == (1001, "going away")


async def test_an_abnormal_close_code_is_raised_from_async_for(nursery: trio.Nursery) -> None:
    async def refuse(sock: ws.WebSocket) -> None:
        await sock.aclose(4000, "custom")

    server = await start(nursery, refuse)
    with trio.fail_after(5):
        async with ws.connect(url(server)) as client:
            with pytest.raises(ws.ConnectionClosed) as closed:
                async for _ in client:
                    pass
    assert (closed.value.code, closed.value.reason) == (4000, "custom")
    assert isinstance(closed.value, trionet.TrionetError)


async def test_an_error_in_the_connect_block_comes_out_as_itself(nursery: trio.Nursery) -> None:
    """Not wrapped in an ExceptionGroup by the connection's nursery; the close still happens."""
    closes: list[tuple[int | None, str]] = []

    async def watch(sock: ws.WebSocket) -> None:
        try:
            async for _ in sock:
                pass
        finally:
            closes.append((sock.close_code, sock.close_reason))

    server = await start(nursery, watch)
    with trio.fail_after(5):
        with pytest.raises(ValueError, match="boom"):
            async with ws.connect(url(server)) as client:
                await client.send("x")
                raise ValueError("boom")
        while not closes:
            await trio.sleep(0.01)
    # The block failed, as a server handler can: the server hears 1011, not a normal close.
    assert closes == [(1011, "client failed")]
    assert client.close_code == 1011


async def test_another_connections_closure_in_a_connect_block_closes_with_1011(
    nursery: trio.Nursery,
) -> None:
    """ConnectionClosed from *another* connection fails the block; its own is a normal end."""
    closes: dict[str, int | None] = {}

    async def watch(sock: ws.WebSocket) -> None:
        try:
            async for _ in sock:
                pass
        finally:
            closes[sock.path] = sock.close_code

    server = await start(nursery, watch)
    with trio.fail_after(5):
        async with ws.connect(url(server, "/gone")) as gone:
            pass
        with pytest.raises(ws.ConnectionClosed) as closed:
            async with ws.connect(url(server, "/relay")):
                await gone.send("to a peer that left")
        assert closed.value.websocket is gone
        while len(closes) < 2:
            await trio.sleep(0.01)
    assert closes == {"/gone": 1000, "/relay": 1011}


async def test_send_after_close_raises_connection_closed(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    with trio.fail_after(5):
        async with ws.connect(url(server)) as client:
            await client.aclose()
            with pytest.raises(ws.ConnectionClosed):
                await client.send("too late")
            assert client.state is ws.State.CLOSED


async def test_messages_sent_before_the_peer_closed_are_still_delivered(
    nursery: trio.Nursery,
) -> None:
    async def burst_then_close(sock: ws.WebSocket) -> None:
        for i in range(10):
            await sock.send(f"m{i}")

    server = await start(nursery, burst_then_close)
    with trio.fail_after(5):
        async with ws.connect(url(server)) as client:
            await client.wait_closed()
            assert [m async for m in client] == [f"m{i}" for i in range(10)]


async def test_handler_exception_closes_with_1011_and_is_logged(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(sock: ws.WebSocket) -> None:
        raise RuntimeError("boom")

    server = await start(nursery, broken)
    with trio.fail_after(5), caplog.at_level(logging.INFO, logger="trionet"):
        async with ws.connect(url(server)) as client:
            with pytest.raises(ws.ConnectionClosed) as closed:
                await client.receive()
    assert closed.value.code == 1011
    assert "boom" in caplog.text
    async with ws.connect(url(server)):  # the server is still up
        pass


async def test_a_handler_failing_on_another_connection_closes_its_own_with_1011(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A chat handler sending to a peer that left fails: its own client hears 1011, not 1000."""
    peers: list[ws.WebSocket] = []

    async def chat(sock: ws.WebSocket) -> None:
        peers.append(sock)
        async for message in sock:
            for peer in peers:
                await peer.send(message)

    server = await start(nursery, chat)
    with trio.fail_after(5), caplog.at_level(logging.INFO, logger="trionet"):
        async with ws.connect(url(server)) as alice:
            async with ws.connect(url(server)) as bob:
                await bob.send("hi, bye")
                assert await bob.receive() == "hi, bye"
                assert await alice.receive() == "hi, bye"
            await peers[1].wait_closed()  # bob left; his connection is still in the list
            await alice.send("anyone?")
            assert await alice.receive() == "anyone?"  # sent to herself first
            with pytest.raises(ws.ConnectionClosed) as closed:
                await alice.receive()
    assert (closed.value.code, closed.value.reason) == (1011, "handler failed")
    [failure] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failure.exc_info is not None
    assert isinstance(failure.exc_info[1], ws.ConnectionClosed)
    assert failure.exc_info[1].websocket is peers[1]


@pytest.mark.parametrize("in_a_nursery", [False, True], ids=["direct", "exception-group"])
async def test_a_handler_ended_by_its_own_closure_ends_quietly(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, in_a_nursery: bool
) -> None:
    """Its own ConnectionClosed, even from tasks of its own nursery, is no failure."""
    ended = trio.Event()

    async def receive_forever(sock: ws.WebSocket) -> None:
        while True:
            await sock.receive()

    async def handler(sock: ws.WebSocket) -> None:
        try:
            if in_a_nursery:
                async with trio.open_nursery() as tasks:
                    tasks.start_soon(receive_forever, sock)
                    tasks.start_soon(receive_forever, sock)
            else:
                await receive_forever(sock)
        finally:
            ended.set()

    server = await start(nursery, handler)
    with trio.fail_after(5), caplog.at_level(logging.INFO, logger="trionet"):
        async with ws.connect(url(server)) as client:
            await client.send("x")
        await ended.wait()
        await trio.sleep(0.05)  # the handler's end has been handled
    assert client.close_code == 1000
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_concurrent_senders_never_interleave_frames(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    big = [bytes([i]) * 100_000 for i in range(8)]
    with trio.fail_after(10):
        async with ws.connect(url(server)) as client:
            async with trio.open_nursery() as senders:
                for message in big:
                    senders.start_soon(client.send, message)
            received = [await client.receive() for _ in big]
    assert sorted(received) == sorted(big)


# -- ping and pong ---------------------------------------------------------------


async def test_a_message_sent_in_fragments_arrives_whole(nursery: trio.Nursery) -> None:
    """send(fin=False), as ws's {fin: false}: one message on the wire in several frames."""

    async def fragments(sock: ws.WebSocket) -> None:
        await sock.send("hel", fin=False)
        await sock.send("lo ", fin=False)
        await sock.send("world")
        await sock.send(b"\x00", fin=False)
        await sock.send(b"\x01")
        await sock.wait_closed()

    server = await start(nursery, fragments)
    with trio.fail_after(5):
        raw = await RawClient.connect(server.port)
        frames = [await raw.next_frame() for _ in range(5)]
        assert [(f.opcode, f.fin, f.payload) for f in frames if f] == [
            (TEXT, False, b"hel"), (CONT, False, b"lo "), (CONT, True, b"world"),
            (BINARY, False, b"\x00"), (CONT, True, b"\x01"),
        ]
        await raw.aclose()
        async with ws.connect(url(server)) as client:  # our client reassembles them
            assert [await client.receive(), await client.receive()] == ["hello world", b"\x00\x01"]


async def test_other_tasks_wait_while_a_fragmented_message_is_open(nursery: trio.Nursery) -> None:
    async def two_senders(sock: ws.WebSocket) -> None:
        async def whole() -> None:
            await sock.send("whole")

        await sock.send("frag", fin=False)
        async with trio.open_nursery() as senders:
            senders.start_soon(whole)
            await trio.sleep(0.05)  # the other task is waiting now
            with pytest.raises(TypeError, match="continues a text message"):
                await sock.send(b"bytes")
            await sock.send("mented")
        await sock.wait_closed()

    server = await start(nursery, two_senders)
    with trio.fail_after(5):
        async with ws.connect(url(server)) as client:
            assert [await client.receive(), await client.receive()] == ["fragmented", "whole"]


async def test_ping_returns_when_the_pong_arrives(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    with trio.fail_after(5):
        async with ws.connect(url(server)) as client:
            await client.ping()
            await client.ping(b"payload")
            async with trio.open_nursery() as pingers:
                for i in range(5):
                    pingers.start_soon(client.ping, str(i).encode())


async def test_server_answers_pings_even_when_the_app_never_reads(
    nursery: trio.Nursery,
) -> None:
    """The receive queue fills up; control frames still get answered (trio-websocket#74)."""
    async def sleeper(sock: ws.WebSocket) -> None:
        await trio.sleep_forever()

    server = await start(nursery, sleeper)
    with trio.fail_after(5):
        raw = await RawClient.connect(server.port)
        await raw.send(*(frame(TEXT, f"unread {i}") for i in range(100)))
        await raw.send(frame(PING, b"still there?"))
        pong = await raw.next_frame()
        assert pong is not None and (pong.opcode, pong.payload) == (PONG, b"still there?")
        await raw.send(close_frame(1000))
        assert await raw.close_code() == 1000
        await raw.aclose()


async def test_a_pong_survives_the_cancelled_receive_that_read_its_ping(
    nursery: trio.Nursery,
) -> None:
    """A task in receive() reads the socket itself and may be cancelled mid-answer.

    The server's writer holds the send lock while the client does not read
    (megabytes of broadcast queued); meanwhile the handler's receive(),
    timed out every 50 ms, reads the client's Ping. Its Pong waits for the
    lock through the cancellations and goes out whole once the client reads.
    """
    count, size = 32, 1 << 20

    async def flood_then_poll(sock: ws.WebSocket) -> None:
        sock.max_buffered_amount = 2 * count * size
        for _ in range(count):
            ws.broadcast([sock], b"x" * size)
        while not sock.closed:
            with trio.move_on_after(0.05):
                await sock.receive()

    server = await start(nursery, flood_then_poll)
    with trio.fail_after(20):
        raw = await RawClient.connect(server.port)
        await trio.sleep(0.3)  # the writer fills the socket buffers, then blocks
        await raw.send(frame(PING, b"still there?"))
        await trio.sleep(0.3)  # several receive() timeouts while the Pong waits
        frames = [await raw.next_frame() for _ in range(count + 1)]
        assert [f.opcode for f in frames if f] == [BINARY] * count + [PONG]
        assert frames[-1] is not None and frames[-1].payload == b"still there?"
        await raw.send(close_frame(1000))
        assert await raw.close_code() == 1000
        await raw.aclose()


async def test_aclose_completes_while_the_queue_is_full(nursery: trio.Nursery) -> None:
    """A client that stops reading can still close at once (trio-websocket#74)."""
    async def flood(sock: ws.WebSocket) -> None:
        for i in range(200):
            await sock.send(f"{i}" * 1000)
        await sock.wait_closed()

    server = await start(nursery, flood)
    with trio.fail_after(5):
        async with ws.connect(url(server)) as client:
            await trio.sleep(0.2)  # let the queue fill
        assert client.close_code == 1000


async def test_heartbeat_closes_a_peer_that_stops_answering_pings(
    nursery: trio.Nursery,
) -> None:
    closed = trio.Event()
    seen: dict[str, Any] = {}

    async def handler(sock: ws.WebSocket) -> None:
        await sock.wait_closed()
        seen["code"] = sock.close_code
        closed.set()

    server = await start(nursery, handler, ping_interval=0.1, ping_timeout=0.2)
    with trio.fail_after(5):
        raw = await RawClient.connect(server.port)
        ping = await raw.next_frame()  # a silent client: never answers
        assert ping is not None and ping.opcode == PING
        await closed.wait()
        frames = await raw.frames_until_close()
        await raw.aclose()
    assert seen["code"] == 1011
    assert not frames or frames[-1].close_code == 1011


async def test_heartbeat_keeps_a_live_client(nursery: trio.Nursery) -> None:
    server = await start(nursery, ping_interval=0.05, ping_timeout=0.5)
    with trio.fail_after(5):
        async with ws.connect(url(server)) as client:
            await trio.sleep(0.3)
            await client.send("alive")
            assert await client.receive() == "alive"


# -- handshake options -------------------------------------------------------------


async def test_subprotocol_selection_prefers_the_servers_order(nursery: trio.Nursery) -> None:
    async def report(sock: ws.WebSocket) -> None:
        await sock.send(sock.subprotocol or "none")

    server = await start(nursery, report, subprotocols=["v2.chat", "v1.chat"])
    with trio.fail_after(5):
        async with ws.connect(url(server), subprotocols=["v1.chat", "v2.chat"]) as client:
            assert client.subprotocol == "v2.chat"
            assert await client.receive() == "v2.chat"
        async with ws.connect(url(server), subprotocols=["other"]) as client:
            assert client.subprotocol is None
            assert await client.receive() == "none"


async def test_accept_refuses_a_handshake_with_a_status(nursery: trio.Nursery) -> None:
    def only_with_token(req: Any) -> Any:
        if req.headers.get("authorization") == "Bearer ok":
            return True
        if req.path == "/teapot":
            return (418, {"X-Why": "tea"}, b"short and stout")
        return False

    server = await start(nursery, accept=only_with_token)
    with trio.fail_after(5):
        with pytest.raises(ws.HandshakeError) as refused:
            async with ws.connect(url(server)):
                pass
        assert refused.value.status == 401
        assert isinstance(refused.value, trionet.ProtocolError)
        with pytest.raises(ws.HandshakeError) as refused:
            async with ws.connect(url(server, "/teapot")):
                pass
        assert refused.value.status == 418
        assert refused.value.body == b"short and stout"
        async with ws.connect(url(server), headers={"Authorization": "Bearer ok"}) as client:
            await client.send("in")
            assert await client.receive() == "in"


async def test_async_accept_hook(nursery: trio.Nursery) -> None:
    async def slow_no(req: Any) -> bool:
        await trio.sleep(0.01)
        return False

    server = await start(nursery, accept=slow_no)
    with trio.fail_after(5), pytest.raises(ws.HandshakeError, match="401"):
        async with ws.connect(url(server)):
            pass


async def test_plain_http_to_a_websocket_server_gets_426(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    with trio.fail_after(5):
        raw = RawClient(await trionet.net.connect(server.port, "127.0.0.1"))
        status, headers = await raw.request("/", {"Host": "x"})
        await raw.aclose()
    assert status == 426
    assert headers["upgrade"].lower() == "websocket"


MALFORMED_HANDSHAKES = {
    "missing key": ({"Sec-WebSocket-Key": None}, "GET", 400),
    "key not base64": ({"Sec-WebSocket-Key": "not base64!!"}, "GET", 400),
    "key of 15 bytes": ({"Sec-WebSocket-Key": "YWJjZGVmZ2hpamtsbW5v"}, "GET", 400),
    "key of 17 bytes": ({"Sec-WebSocket-Key": "YWJjZGVmZ2hpamtsbW5vcHE="}, "GET", 400),
    "version 8": ({"Sec-WebSocket-Version": "8"}, "GET", 426),
    "no version": ({"Sec-WebSocket-Version": None}, "GET", 400),
    "POST": ({}, "POST", 405),
    "upgrade to h2c": ({"Upgrade": "h2c"}, "GET", 400),
    # Without "Connection: Upgrade" it is no upgrade at all: the HTTP app answers 426.
    "no Connection: upgrade": ({"Connection": "keep-alive"}, "GET", 426),
}


@pytest.mark.parametrize("case", list(MALFORMED_HANDSHAKES))
async def test_malformed_handshakes_are_refused_never_101(
    nursery: trio.Nursery, case: str
) -> None:
    changes, method, expected = MALFORMED_HANDSHAKES[case]
    server = await start(nursery)
    headers: dict[str, str] = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    for name, value in changes.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    if method == "POST":
        headers["Content-Length"] = "0"
    with trio.fail_after(5):
        raw = RawClient(await trionet.net.connect(server.port, "127.0.0.1"))
        status, response_headers = await raw.request("/", headers, method=method)
        await raw.aclose()
        assert status == expected
        if expected == 426 and case == "version 8":
            assert response_headers["sec-websocket-version"] == "13"
        async with ws.connect(url(server)) as client:  # still serving
            await client.send("ok")
            assert await client.receive() == "ok"


async def test_client_refuses_a_wrong_accept_token(nursery: trio.Nursery) -> None:
    async def liar(sock: trionet.net.Socket) -> None:
        await sock.receive()
        await sock.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: d3Jvbmc=\r\n\r\n"
        )
        await sock.receive()

    server = await nursery.start(functools.partial(trionet.net.serve, liar, 0, host="127.0.0.1"))
    with trio.fail_after(5), pytest.raises(ws.HandshakeError, match="accept"):
        async with ws.connect(url(server)):
            pass


async def test_connect_to_a_closed_port_raises_connect_error() -> None:
    with socket_port() as port, trio.fail_after(5), pytest.raises(trionet.ConnectError):
        async with ws.connect(f"ws://127.0.0.1:{port}/"):
            pass


async def test_a_silent_server_times_the_handshake_out_and_the_socket_is_closed(
    nursery: trio.Nursery,
) -> None:
    port, seen = await silent_peer(nursery)
    with trio.fail_after(5):
        with pytest.raises(trionet.TimeoutError, match=r"WebSocket handshake with .* after 0\.2s"):
            async with ws.connect(f"ws://127.0.0.1:{port}/", timeout=0.2):
                pass
        while not seen:  # the server reads our EOF: the client closed its socket
            await trio.sleep(0.01)
    assert seen[0].startswith(b"GET / HTTP/1.1\r\n")


def socket_port() -> Any:
    """A context manager yielding a port nobody listens on."""
    import contextlib
    import socket

    @contextlib.contextmanager
    def manager() -> Any:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            yield s.getsockname()[1]

    return manager()


# -- where connect goes: the URL, as Node's ws reads it ------------------------------


class LoopbackResolver(trio.abc.HostnameResolver):
    """Answers every name with 127.0.0.1 and remembers the names asked, as DNS gets them."""

    def __init__(self) -> None:
        self.asked: list[bytes | str | None] = []

    async def getaddrinfo(
        self,
        host: bytes | str | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> Any:
        self.asked.append(host)
        return await trio.socket.getaddrinfo("127.0.0.1", port, family, type, proto, flags)

    async def getnameinfo(self, sockaddr: Any, flags: int) -> tuple[str, str]:
        raise NotImplementedError


@pytest.fixture
async def loopback_names() -> AsyncIterator[LoopbackResolver]:
    """Every host name resolves to 127.0.0.1 for this test (trio's own resolver hook)."""
    resolver = LoopbackResolver()
    previous = trio.socket.set_custom_hostname_resolver(resolver)
    yield resolver
    trio.socket.set_custom_hostname_resolver(previous)


async def test_a_non_ascii_host_is_looked_up_and_sent_in_its_idna_form(
    nursery: trio.Nursery, loopback_names: LoopbackResolver
) -> None:
    """Node's WHATWG URL turns bücher.example into xn--bcher-kva.example; so does connect."""
    seen: list[str] = []

    async def handler(sock: ws.WebSocket) -> None:
        seen.append(sock.request.headers["host"])

    server = await start(nursery, handler)
    with trio.fail_after(5):
        async with ws.connect(f"ws://Bücher.example:{server.port}/"):
            pass
    assert loopback_names.asked == [b"xn--bcher-kva.example"]
    assert seen == [f"xn--bcher-kva.example:{server.port}"]


async def test_wss_to_a_non_ascii_host_checks_the_certificate_for_its_idna_form(
    nursery: trio.Nursery, loopback_names: LoopbackResolver, tls_ca: Any, ca_pem: bytes
) -> None:
    """SNI and the certificate check see the ASCII name, the one a certificate can carry."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls_ca.issue_cert("xn--bcher-kva.example").configure_cert(context)
    server = await start(nursery, ssl_context=context)
    with trio.fail_after(10):
        async with ws.connect(f"wss://bücher.example:{server.port}/", ca=ca_pem) as client:
            await client.send("grüße")
            assert await client.receive() == "grüße"


async def test_user_information_in_the_url_is_sent_as_basic_authorization(
    nursery: trio.Nursery,
) -> None:
    """As Node's ws does with ``ws://user:pass@host/`` (RFC 7617)."""

    def only_alice(req: Any) -> bool:
        return bool(req.headers.get("authorization") == "Basic YWxpY2U6czNjcmV0")  # alice:s3cret

    server = await start(nursery, accept=only_alice)
    with trio.fail_after(5):
        async with ws.connect(f"ws://alice:s3cret@127.0.0.1:{server.port}/") as client:
            await client.send("in")
            assert await client.receive() == "in"
        with pytest.raises(ws.HandshakeError, match="401"):
            async with ws.connect(url(server)):
                pass


async def test_an_ipv6_literal_connects_and_is_bracketed_in_the_host_header(
    nursery: trio.Nursery,
) -> None:
    seen: list[str] = []

    async def handler(sock: ws.WebSocket) -> None:
        seen.append(sock.request.headers["host"])

    serve = functools.partial(ws.serve, handler, 0, host="::1")
    server = await nursery.start(serve)
    with trio.fail_after(5):
        async with ws.connect(f"ws://[::1]:{server.port}/"):
            pass
    assert seen == [f"[::1]:{server.port}"]


@pytest.mark.parametrize("bad", ["ws://127.0.0.1:1/chat#room", "wss://127.0.0.1:1/#x"])
async def test_a_fragment_in_the_url_is_refused_before_connecting(bad: str) -> None:
    """RFC 6455 §3: fragments "MUST NOT be used on these URIs"; Node's ws throws too."""
    with trio.fail_after(5), pytest.raises(ValueError, match="fragment"):
        async with ws.connect(bad):
            pass


@pytest.mark.parametrize("bad", ["http://127.0.0.1:1/", "ws:///no-host"])
async def test_urls_that_are_not_websocket_urls_are_refused(bad: str) -> None:
    with trio.fail_after(5), pytest.raises(ValueError):
        async with ws.connect(bad):
            pass


async def test_a_large_refusal_body_is_cut_at_the_cap(nursery: trio.Nursery) -> None:
    """The body of a refusal is for the error message: kept up to MAX_REFUSAL_BODY bytes."""
    from trionet.http._client_upgrade import MAX_REFUSAL_BODY

    size = 4 * MAX_REFUSAL_BODY

    async def flood(sock: trionet.net.Socket) -> None:
        await sock.receive()
        head = f"HTTP/1.1 403 Forbidden\r\nContent-Length: {size}\r\n\r\n".encode()
        with trio.move_on_after(5):
            await sock.send(head + b"x" * size)
        await sock.aclose()

    server = await nursery.start(functools.partial(trionet.net.serve, flood, 0, host="127.0.0.1"))
    with trio.fail_after(5), pytest.raises(ws.HandshakeError) as refused:
        async with ws.connect(url(server)):
            pass
    assert refused.value.status == 403
    assert refused.value.body == b"x" * MAX_REFUSAL_BODY


def switching_peer(extra_headers: bytes = b"", after: bytes = b"", accept: bool = True) -> Any:
    """A raw server that answers the handshake with a 101 of its own making, then ``after``."""

    async def peer(sock: trionet.net.Socket) -> None:
        key = await read_handshake_key(sock)
        token = accept_token(key) if accept else "d3Jvbmc="
        await sock.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n%s"
            % (token.encode(), extra_headers, after)
        )
        with trio.move_on_after(5):
            while await sock.receive():
                pass

    return peer


async def test_bytes_sent_with_the_101_are_the_first_message(nursery: trio.Nursery) -> None:
    """The server may write its first frame in the same packet as its 101."""
    peer = switching_peer(after=frame(TEXT, "right after the 101", mask=False))
    server = await nursery.start(functools.partial(trionet.net.serve, peer, 0, host="127.0.0.1"))
    with trio.fail_after(5):
        async with ws.connect(url(server), close_timeout=0.1) as client:  # no Close comes back
            assert await client.receive() == "right after the 101"
            assert client.request.extra_headers == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (b"Sec-WebSocket-Protocol: never.offered\r\n", "unrecognized subprotocol never.offered"),
        (b"Sec-WebSocket-Extensions: x-unknown\r\n", "unrecognized extension x-unknown"),
        (
            b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=3\r\n",
            "bad handshake response",
        ),
    ],
    ids=["subprotocol", "extension", "deflate-parameters"],
)
async def test_a_101_that_agrees_to_what_was_not_offered_is_refused(
    nursery: trio.Nursery, extra: bytes, message: str
) -> None:
    peer = switching_peer(extra_headers=extra)
    server = await nursery.start(functools.partial(trionet.net.serve, peer, 0, host="127.0.0.1"))
    with trio.fail_after(5), pytest.raises(ws.HandshakeError, match=message) as refused:
        async with ws.connect(url(server), compression=True):
            pass
    assert refused.value.status is None


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (b"SPDY/3 101 Hi\r\n\r\n", ws.HandshakeError, "bad handshake response"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 20000 + b"\r\n\r\n", ws.HandshakeError, "limit"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n",
            ws.HandshakeError,
            "Upgrade: websocket",
        ),
        (b"", trionet.ConnectionLost, "closed the connection before responding"),
    ],
    ids=["not-http", "head-too-large", "no-upgrade-header", "closed-unanswered"],
)
async def test_a_broken_answer_to_the_handshake_raises_saying_what(
    nursery: trio.Nursery, answer: bytes, error: type[Exception], message: str
) -> None:
    async def peer(sock: trionet.net.Socket) -> None:
        await sock.receive()
        await sock.send(answer)
        await sock.aclose()

    server = await nursery.start(functools.partial(trionet.net.serve, peer, 0, host="127.0.0.1"))
    with trio.fail_after(5), pytest.raises(error, match=message):
        async with ws.connect(url(server)):
            pass


# -- sizes and compression ---------------------------------------------------------


async def test_16_mib_binary_message_arrives_intact(nursery: trio.Nursery) -> None:
    server = await start(nursery, max_message_size=1 << 25)
    payload = os.urandom(1 << 20) * 16
    with trio.fail_after(30):
        async with ws.connect(url(server), max_message_size=1 << 25) as client:
            await client.send(payload)
            assert await client.receive() == payload


async def test_message_over_max_message_size_closes_1009(nursery: trio.Nursery) -> None:
    server = await start(nursery, max_message_size=1000)
    with trio.fail_after(5):
        async with ws.connect(url(server)) as client:
            await client.send(b"x" * 1000)
            assert await client.receive() == b"x" * 1000
            await client.send(b"x" * 1001)
            with pytest.raises(ws.ConnectionClosed) as closed:
                await client.receive()
    assert closed.value.code == 1009


async def test_client_enforces_its_own_max_message_size(nursery: trio.Nursery) -> None:
    async def big(sock: ws.WebSocket) -> None:
        await sock.send(b"y" * 5000)
        await sock.wait_closed()

    server = await start(nursery, big)
    with trio.fail_after(5):
        async with ws.connect(url(server), max_message_size=4096) as client:
            with pytest.raises(ws.ConnectionClosed) as closed:
                await client.receive()
    assert closed.value.code == 1009


async def test_compression_is_off_by_default_on_both_ends(nursery: trio.Nursery) -> None:
    """One default for server and client: a trionet client offers nothing unless asked."""
    async def tell_offer(sock: ws.WebSocket) -> None:
        headers = sock.request.raw_headers
        await sock.send(repr([v for n, v in headers if n.lower() == b"sec-websocket-extensions"]))

    deflating = await start(nursery, tell_offer, compression=True)
    with trio.fail_after(5):
        async with ws.connect(url(deflating)) as client:
            assert await client.receive() == "[]"
            assert client.extensions == []


async def test_compression_is_negotiated_only_when_both_ends_enable_it(
    nursery: trio.Nursery,
) -> None:
    plain = await start(nursery)
    deflating = await start(nursery, compression=True)
    text = "compressible " * 10_000
    with trio.fail_after(5):
        async with ws.connect(url(plain), compression=True) as client:
            assert client.extensions == []
        async with ws.connect(url(deflating), compression=True) as client:
            assert [e.name for e in client.extensions] == ["permessage-deflate"]
            before = client.socket.bytes_written
            await client.send(text)
            assert await client.receive() == text
            assert client.socket.bytes_written - before < len(text) // 10


async def test_compression_leaves_messages_under_1_kib_plain(nursery: trio.Nursery) -> None:
    """As ws's ``threshold``: short messages go out with RSV1 clear, long ones deflated."""
    server = await start(nursery, compression=True)
    long_text = b"compressible " * 200
    with trio.fail_after(5):
        raw = await RawClient.connect(
            server.port, headers={"Sec-WebSocket-Extensions": "permessage-deflate"}
        )
        inflater = zlib.decompressobj(-15)
        for message in (b"short", long_text, b"short again", long_text):
            await raw.send(frame(TEXT, message))
            echoed = await raw.next_frame()
            assert echoed is not None and echoed.opcode == TEXT
            if len(message) < 1024:
                assert echoed.rsv == 0 and echoed.payload == message
            else:
                assert echoed.rsv == 4 and len(echoed.payload) < len(message) // 10
                assert inflater.decompress(echoed.payload + b"\x00\x00\xff\xff") == message
        await raw.aclose()


async def test_deflate_bomb_is_refused_without_inflating_it(nursery: trio.Nursery) -> None:
    """A 100 MiB message compressed to ~100 KiB: the limit applies to the inflated size."""
    server = await start(nursery, compression=True, max_message_size=1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(b"\0" * (100 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    bomb = bomb[:-4]
    with trio.fail_after(10):
        raw = await RawClient.connect(
            server.port, headers={"Sec-WebSocket-Extensions": "permessage-deflate"}
        )
        await raw.send(frame(BINARY, bomb, rsv=4))
        assert await raw.close_code() == 1009
        await raw.aclose()


# -- HTTP and WebSocket on one port ------------------------------------------------


async def test_http_and_websocket_share_a_port(nursery: trio.Nursery) -> None:
    async def page(req: Any, res: Any) -> None:
        await res.end(b"<html>hello</html>")

    serve = functools.partial(
        trionet.http.serve, page, 0, host="127.0.0.1", on_upgrade=ws.handler(echo)
    )
    server = await nursery.start(serve)
    with trio.fail_after(5):
        response = await trionet.http.request(f"http://127.0.0.1:{server.port}/")
        assert response.status == 200
        assert response.body == b"<html>hello</html>"
        async with ws.connect(url(server, "/socket")) as client:
            await client.send("over the same port")
            assert await client.receive() == "over the same port"


# -- scale and hygiene -------------------------------------------------------------


async def test_a_thousand_concurrent_connections_echo(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    done = 0

    async def one(i: int) -> None:
        nonlocal done
        async with ws.connect(url(server)) as client:
            await client.send(f"client {i}")
            assert await client.receive() == f"client {i}"
        done += 1

    limit = trio.CapacityLimiter(1000)

    async def bounded(i: int) -> None:
        async with limit:
            await one(i)

    with trio.fail_after(60):
        async with trio.open_nursery() as clients:
            for i in range(1000):
                clients.start_soon(bounded, i)
    assert done == 1000


async def test_no_leaked_fds_or_tasks_after_many_connections(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    async with ws.connect(url(server)):  # warm up (imports, lazy objects)
        pass
    await trio.sleep(0.05)
    fds_before = open_fds()
    tasks_before = len(trio.lowlevel.current_root_task().child_nurseries[0].child_tasks)
    with trio.fail_after(20):
        for _ in range(30):
            async with ws.connect(url(server)) as client:
                await client.send("x")
                await client.receive()
        raw = await RawClient.connect(server.port)  # and one broken by a protocol error
        await raw.send(frame(TEXT, "unmasked", mask=False))
        await raw.close_code()
        await raw.aclose()
        while server.connections:
            await trio.sleep(0.01)
    assert open_fds() <= fds_before
    tasks_after = len(trio.lowlevel.current_root_task().child_nurseries[0].child_tasks)
    assert tasks_after <= tasks_before


# -- wss:// and shutdown -----------------------------------------------------------


async def test_wss_with_a_trusted_certificate(
    nursery: trio.Nursery, server_ssl_context: Any, client_ssl_context: Any
) -> None:
    server = await start(nursery, ssl_context=server_ssl_context)
    with trio.fail_after(10):
        async with ws.connect(
            f"wss://localhost:{server.port}/secure", ssl_context=client_ssl_context
        ) as client:
            await client.send("hello world!")
            assert await client.receive() == "hello world!"


@pytest.fixture
def mutual_tls_context(tls_ca: Any, tls_server_cert: Any) -> ssl.SSLContext:
    """A server context that requires a client certificate from the test CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls_server_cert.configure_cert(context)
    tls_ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


@pytest.mark.parametrize("as_files", [False, True], ids=["pem-bytes", "paths"])
async def test_connect_takes_ca_cert_and_key_like_https_request(
    nursery: trio.Nursery,
    mutual_tls_context: ssl.SSLContext,
    ca_pem: bytes,
    tls_client_cert: Any,
    tmp_path: Path,
    as_files: bool,
) -> None:
    """wss:// to a server that requires a client certificate: ca=, cert=, key= as tls.connect."""
    identity = Identity.of(tls_client_cert)
    options: dict[str, Any] = {"ca": [ca_pem], "cert": identity.cert, "key": identity.key}
    if as_files:
        for name, pem in [("ca", ca_pem), ("cert", identity.cert), ("key", identity.key)]:
            (tmp_path / f"{name}.pem").write_bytes(pem)
            options[name] = str(tmp_path / f"{name}.pem")
    server = await start(nursery, ssl_context=mutual_tls_context)
    with trio.fail_after(10):
        async with ws.connect(f"wss://localhost:{server.port}/", **options) as client:
            await client.send("with my certificate")
            assert await client.receive() == "with my certificate"
        # The same without a client certificate: the server refuses the handshake.
        with pytest.raises((trionet.TLSError, trionet.ConnectError, ws.HandshakeError)):
            async with ws.connect(f"wss://localhost:{server.port}/", ca=ca_pem) as client:
                await client.send("without")
                await client.receive()


async def test_wss_with_an_unknown_ca_raises_tls_error(
    nursery: trio.Nursery, server_ssl_context: Any
) -> None:
    server = await start(nursery, ssl_context=server_ssl_context)
    with trio.fail_after(10), pytest.raises(trionet.TLSError):
        async with ws.connect(f"wss://localhost:{server.port}/"):
            pass


async def test_server_shutdown_tells_clients_going_away(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    with trio.fail_after(5):
        async with ws.connect(url(server)) as client:
            await client.send("x")
            assert await client.receive() == "x"
            nursery.start_soon(functools.partial(server.aclose, timeout=0))
            with pytest.raises(ws.ConnectionClosed) as closed:
                await client.receive()
    assert closed.value.code == 1001


async def test_a_ws_server_is_closed_like_any_trionet_server(nursery: trio.Nursery) -> None:
    """close() stops accepting while live connections go on; wait_closed() waits for them."""
    server = await start(nursery)
    assert repr(server).startswith("<trionet.ws.Server <trionet Server ('127.0.0.1',")
    with trio.fail_after(5):
        async with ws.connect(url(server)) as client:
            while not server.clients:  # the server's side of the handshake is done
                await trio.sleep(0.01)
            assert server.connections == 1 and len(server.clients) == 1
            assert server.dropped == 0
            server.close()
            assert server.closing.is_set()
            with pytest.raises(trionet.ConnectError):
                async with ws.connect(url(server)):
                    pass
            await client.send("still served")  # close() is not aclose(): see test_ws_stop.py
            assert await client.receive() == "still served"
        await server.wait_closed()
    assert server.connections == 0 and server.clients == set()


async def test_a_lagging_app_slows_the_peer_down_instead_of_buffering(
    nursery: trio.Nursery,
) -> None:
    """Past max_message_size bytes unread, the reader stops reading: TCP slows the peer."""
    lagging: list[ws.WebSocket] = []
    resume = trio.Event()

    async def slow_reader(sock: ws.WebSocket) -> None:
        lagging.append(sock)
        await resume.wait()
        async for _ in sock:
            pass

    server = await start(nursery, slow_reader, max_message_size=10_000)
    with trio.fail_after(10):
        async with ws.connect(url(server)) as client, trio.open_nursery() as sender:

            async def send_500_kb() -> None:
                for _ in range(500):
                    await client.send(b"m" * 1000)

            sender.start_soon(send_500_kb)
            await trio.sleep(0.3)  # the sender blocks once the kernel buffers are full
            read = lagging[0].socket.bytes_read
            assert read < 10_000 + 2 * 65536 + 20_000  # the limit + a read or two
            resume.set()  # the app catches up, the sender finishes
        assert client.close_code == 1000


async def test_a_send_cancelled_on_a_full_socket_drops_the_connection(
    nursery: trio.Nursery,
) -> None:
    """Half a frame may be on the wire: nothing sent after it would parse, so 1006."""
    async def never_reads(sock: ws.WebSocket) -> None:
        await trio.sleep_forever()

    server = await start(nursery, never_reads, max_message_size=1 << 24)
    with trio.fail_after(10):
        async with ws.connect(url(server)) as client:
            with trio.move_on_after(0.5):
                while True:
                    await client.send(b"x" * (1 << 20))
            assert client.close_code == 1006
            with pytest.raises(ws.ConnectionClosed):
                await client.send("more")


async def test_a_task_that_only_sends_still_lets_other_tasks_run(nursery: trio.Nursery) -> None:
    """Writes that the kernel takes at once skip the scheduler, but not for long."""
    server = await start(nursery, lambda sock: sock.wait_closed())
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0)

    with trio.fail_after(10):
        async with ws.connect(url(server)) as client, trio.open_nursery() as background:
            background.start_soon(ticker)
            await trio.sleep(0)
            before = ticks
            for _ in range(1000):
                await client.send("tick?")
            assert ticks - before >= 50  # one yield at least every 17 sends
            background.cancel_scope.cancel()


async def test_a_ping_given_up_on_leaves_nothing_behind(nursery: trio.Nursery) -> None:
    async def silent(sock: trionet.net.Socket) -> None:
        head = await sock.receive()
        key = next(
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        await sock.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept_token(key)}\r\n\r\n".encode()
        )
        await trio.sleep_forever()  # never answers a ping

    server = await nursery.start(functools.partial(trionet.net.serve, silent, 0, host="127.0.0.1"))
    with trio.fail_after(5):
        async with ws.connect(url(server), close_timeout=0.1) as client:
            for _ in range(3):
                with trio.move_on_after(0.05):
                    await client.ping(b"anyone?")
            assert len(client._pings) == 0  # no leftover waiters (a leak per timed-out ping)


async def test_a_crashing_accept_hook_answers_500_and_is_logged(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(req: Any) -> bool:
        raise KeyError("no such user")

    server = await start(nursery, accept=broken)
    with trio.fail_after(5), pytest.raises(ws.HandshakeError) as refused:
        async with ws.connect(url(server)):
            pass
    assert refused.value.status == 500
    assert "no such user" in caplog.text


# -- the client's Socket rules hold on ws:// as on wss:// ------------------------------


@pytest.mark.parametrize("scheme", ["ws", "wss"])
async def test_the_clients_socket_ends_its_side_when_the_server_ends_its_own(
    nursery: trio.Nursery, scheme: str, server_ssl_context: Any, client_ssl_context: Any
) -> None:
    """The client's Socket has ``allow_half_open=False`` (Node's default): when the
    server half-closes, the client's side ends at once, while the app is still in
    its ``async with`` block. The WebSocket reader reads through that Socket, so
    it holds on ws:// as on wss:// (before, the direct reader went around it on ws://)."""
    client_ended = trio.Event()

    async def accept_then_half_close(sock: trionet.net.Socket) -> None:
        key = await read_handshake_key(sock)
        await sock.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept_token(key).encode()
        )
        await sock.send_eof()
        try:
            while await sock.receive():
                pass
        except trio.BrokenResourceError:
            pass  # TLS without close_notify: the TCP end of the client is what counts
        client_ended.set()
        await trio.sleep_forever()

    if scheme == "ws":
        serve = functools.partial(trionet.net.serve, accept_then_half_close, 0, host="127.0.0.1")
    else:
        serve = functools.partial(
            trionet.tls.serve, accept_then_half_close, 0, host="127.0.0.1",
            ssl_context=server_ssl_context,
        )  # fmt: skip
    server = await nursery.start(serve)
    host = "127.0.0.1" if scheme == "ws" else "localhost"
    options = {"ssl_context": client_ssl_context} if scheme == "wss" else {}
    with trio.fail_after(10):
        async with ws.connect(f"{scheme}://{host}:{server.port}/", **options) as client:
            with trio.fail_after(2):
                await client_ended.wait()  # still inside the block
            assert client.socket.bytes_read > 0 and client.socket.bytes_written > 0
            with pytest.raises(ws.ConnectionClosed) as closed:
                await client.receive()
            assert closed.value.code == 1006
