"""trionet.ws.broadcast and server.clients: one message to many peers, waiting for none.

Real servers on 127.0.0.1 port 0, real clients (ours, and a raw one that
stops reading), every wait bounded with ``trio.fail_after``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio
from _ws_raw import RawClient

import trionet
from trionet import ws


async def wait_for_close(sock: ws.WebSocket) -> None:
    """A handler that only keeps its connection until the client leaves."""
    await sock.wait_closed()


async def start(nursery: trio.Nursery, handler: Any = wait_for_close, **options: Any) -> ws.Server:
    serve = functools.partial(ws.serve, handler, 0, host="127.0.0.1", **options)
    server: ws.Server = await nursery.start(serve)
    return server


def url(server: Any) -> str:
    return f"ws://127.0.0.1:{server.port}/"


async def clients_count(server: Any, count: int) -> None:
    while len(server.clients) != count:
        await trio.sleep(0.01)


def server_side(server: ws.Server, local_address: Any) -> ws.WebSocket:
    """The server's connection to the client at ``local_address``."""
    [found] = [c for c in server.clients if c.remote_address == local_address]
    return found


@pytest.fixture
async def three_clients(nursery: trio.Nursery) -> AsyncIterator[tuple[ws.Server, list[Any]]]:
    server = await start(nursery)
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(ws.connect(url(server))) for _ in range(3)]
        with trio.fail_after(5):
            await clients_count(server, 3)
        yield server, clients


async def test_broadcast_reaches_every_client_of_server_clients(
    three_clients: tuple[ws.Server, list[Any]],
) -> None:
    server, clients = three_clients
    ws.broadcast(server.clients, "hello, everyone")
    ws.broadcast(server.clients, b"\x00bytes too")
    with trio.fail_after(5):
        for client in clients:
            assert await client.receive() == "hello, everyone"
            assert await client.receive() == b"\x00bytes too"


async def test_server_clients_is_the_live_set_of_open_connections(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    assert server.clients == set()
    # The rest is the HTTP server's, read through.
    assert isinstance(server.http_server, trionet.net.Server)
    assert (server.address, server.port) == (server.http_server.address, server.http_server.port)
    with trio.fail_after(5):
        async with ws.connect(url(server)) as first:
            async with ws.connect(url(server)):
                await clients_count(server, 2)
            await clients_count(server, 1)
            [left] = server.clients
            assert left.remote_address == first.socket.local_address
        await clients_count(server, 0)


async def test_broadcast_skips_closing_and_closed_connections_without_raising(
    three_clients: tuple[ws.Server, list[Any]],
) -> None:
    server, clients = three_clients
    connections = list(server.clients)
    leaving = server_side(server, clients[0].socket.local_address)
    with trio.fail_after(5):
        await clients[0].aclose()
        await leaving.wait_closed()
        ws.broadcast(connections, "still here?")  # one of them is closed: skipped
        for client in clients[1:]:
            assert await client.receive() == "still here?"
    assert leaving.buffered_amount == 0 and leaving.broadcast_dropped == 0


async def test_broadcast_keeps_its_order_with_send(nursery: trio.Nursery) -> None:
    """Queued broadcasts go out before a later send(), compressed ones in the compressor's order."""
    async def interleave(sock: ws.WebSocket) -> None:
        for i in range(20):
            ws.broadcast([sock], f"broadcast {i} " * 100)  # over 1 KiB: deflated
            await sock.send(f"send {i}")
        await sock.wait_closed()

    server = await start(nursery, interleave, compression=True)
    with trio.fail_after(5):
        async with ws.connect(url(server), compression=True) as client:
            received = [await client.receive() for _ in range(40)]
    expected = [m for i in range(20) for m in (f"broadcast {i} " * 100, f"send {i}")]
    assert received == expected


async def test_broadcast_waits_for_a_fragmented_message_to_end(nursery: trio.Nursery) -> None:
    async def fragments(sock: ws.WebSocket) -> None:
        await sock.send("one message ", fin=False)
        ws.broadcast([sock], "the broadcast")
        await trio.sleep(0.05)  # the writer task has had its chance: it must wait
        await sock.send("in two fragments")
        await sock.wait_closed()

    server = await start(nursery, fragments)
    with trio.fail_after(5):
        async with ws.connect(url(server)) as client:
            assert await client.receive() == "one message in two fragments"
            assert await client.receive() == "the broadcast"


async def test_the_handler_hook_has_clients_too(nursery: trio.Nursery) -> None:
    """With one HTTP server for pages and WebSockets, the hook holds the set."""
    hook = ws.handler(wait_for_close)

    async def page(req: Any, res: Any) -> None:
        await res.end(f"{len(hook.clients)} online\n")

    serve = functools.partial(trionet.http.serve, page, 0, host="127.0.0.1", on_upgrade=hook)
    server = await nursery.start(serve)
    with trio.fail_after(5):
        async with ws.connect(url(server)) as client:
            await clients_count(hook, 1)
            ws.broadcast(hook.clients, "news")
            assert await client.receive() == "news"
            res = await trionet.http.request(f"http://127.0.0.1:{server.port}/", agent=False)
            assert res.text() == "1 online\n"


async def test_a_peer_that_stops_reading_never_holds_up_the_caller_or_the_others(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """The stuck peer's messages are dropped past max_buffered_amount; the fast one gets all."""
    server = await start(nursery, close_timeout=0.5)
    message = b"m" * (64 << 10)
    count = 400  # 25 MiB: more than the kernel buffers of the stuck connection hold
    with trio.fail_after(30), caplog.at_level(logging.INFO, logger="trionet"):
        stuck = await RawClient.connect(server.port)  # completes the handshake, then never reads
        async with ws.connect(url(server)) as fast:
            await clients_count(server, 2)
            stuck_side = server_side(server, stuck.sock.local_address)
            fast_side = server_side(server, fast.socket.local_address)
            received = 0

            async def read_all() -> None:
                nonlocal received
                while received < count:
                    assert await fast.receive() == message
                    received += 1

            nursery.start_soon(read_all)
            most_held = 0
            for _ in range(count):
                ws.broadcast(server.clients, message)  # a plain function: it cannot wait
                most_held = max(most_held, stuck_side.buffered_amount)
                await trio.sleep(0)
                while fast_side.buffered_amount > fast_side.max_buffered_amount // 2:
                    await trio.sleep(0.001)  # paced by the fast reader, never by the stuck one
            while received < count:
                await trio.sleep(0.01)
        assert stuck_side.broadcast_dropped > 0
        assert fast_side.broadcast_dropped == 0
        assert most_held <= ws.MAX_BUFFERED_AMOUNT + len(message) + 16
        drops = [r for r in caplog.records if "dropping broadcast" in r.getMessage()]
        assert len(drops) == 1 and drops[0].levelno == logging.WARNING
        await stuck.aclose()
        await clients_count(server, 0)  # and its connection closed, its writer unblocked


async def test_a_handler_returning_while_its_peer_is_stuck_closes_within_close_timeout(
    nursery: trio.Nursery,
) -> None:
    """The writer task is blocked on the full socket: closing must not wait for it forever."""
    stop = trio.Event()

    async def until_stopped(sock: ws.WebSocket) -> None:
        await stop.wait()

    server = await start(nursery, until_stopped, close_timeout=0.5)
    with trio.fail_after(10):
        stuck = await RawClient.connect(server.port)
        await clients_count(server, 1)
        [stuck_side] = server.clients
        while stuck_side.broadcast_dropped == 0:  # kernel buffers full, outbox full
            ws.broadcast([stuck_side], b"x" * (64 << 10))
            await trio.sleep(0)
        stop.set()
        with trio.fail_after(0.5 + 2):
            await stuck_side.wait_closed()
            await clients_count(server, 0)
        assert stuck_side.close_code == 1006  # no Close could reach the peer
        await stuck.aclose()


def test_broadcast_refuses_what_is_not_a_message() -> None:
    with pytest.raises(TypeError):
        ws.broadcast([], 42)  # type: ignore[arg-type]
