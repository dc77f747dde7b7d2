"""The lingering close: answer, half-close, drop what still comes, then close.

A server that closes while the peer is still sending resets the connection,
and the reset destroys the answer in the peer's receive buffer. These tests
run :func:`trionet._linger.linger` in a real TCP server on 127.0.0.1 against
a raw client that keeps sending, goes silent, trickles or resets, and check
that a WebSocket server failing a connection closes the same way. The HTTP
server's use of it is tested in test_http_server.py.
"""

from __future__ import annotations

import socket as stdlib_socket
import struct

import trio
from _ws_raw import TEXT, RawClient, frame

import trionet
from trionet._linger import Lingered, LingerEnd, linger

HOST = "127.0.0.1"
ANSWER = b"no thanks\n"
MiB = 1 << 20


async def lingering_server(
    nursery: trio.Nursery, results: list[Lingered], **limits: float
) -> trionet.net.Server:
    """A server that answers at once, then lingers with ``limits``; records how it ended."""

    async def handler(sock: trionet.net.Socket) -> None:
        await sock.send(ANSWER)
        results.append(await sock.linger(**limits))

    server: trionet.net.Server = await nursery.start(
        lambda task_status: trionet.net.serve(handler, 0, host=HOST, task_status=task_status)
    )
    return server


async def wait_for(results: list[Lingered]) -> Lingered:
    with trio.fail_after(10):
        while not results:
            await trio.sleep(0.01)
    return results[0]


async def test_a_peer_still_uploading_gets_the_answer_and_no_reset(nursery: trio.Nursery) -> None:
    """4 MiB arrive after the answer: all are read and dropped, then the close is clean."""
    results: list[Lingered] = []
    server = await lingering_server(nursery, results)
    with trio.fail_after(10):
        client = await trionet.net.connect(server.port, HOST)
        await client.send(b"u" * (4 * MiB))  # no EPIPE: the server keeps reading
        received = b""
        while data := await client.receive():
            received += data
        await client.aclose()
    assert received == ANSWER  # then our FIN: the half-close
    assert await wait_for(results) == Lingered(LingerEnd.EOF, 4 * MiB)


async def test_a_silent_peer_is_closed_after_the_timeout(nursery: trio.Nursery) -> None:
    results: list[Lingered] = []
    server = await lingering_server(nursery, results, timeout=0.2)
    with trio.fail_after(10):
        # allow_half_open: the client stays connected after the server's FIN.
        client = await trionet.net.connect(server.port, HOST, allow_half_open=True)
        assert await client.receive() == ANSWER
        assert await client.receive() == b""  # the FIN comes at once, before the close
        start = trio.current_time()
        lingered = await wait_for(results)
        elapsed = trio.current_time() - start
        await client.aclose()
    assert lingered == Lingered(LingerEnd.IDLE, 0)
    assert elapsed < 2


async def test_a_trickling_peer_is_cut_off_at_the_time_limit(nursery: trio.Nursery) -> None:
    """One byte every 50 ms never trips the idle timeout; the total time bounds it."""
    results: list[Lingered] = []
    server = await lingering_server(nursery, results, time_limit=0.5, timeout=0.3)
    with trio.fail_after(10):
        client = await trionet.net.connect(server.port, HOST)
        start = trio.current_time()
        try:
            while not results:
                await client.send(b".")
                await trio.sleep(0.05)
        except trio.BrokenResourceError:
            pass  # the server closed while we still sent: that is the point
        lingered = await wait_for(results)
        elapsed = trio.current_time() - start
        await client.aclose()
    assert lingered.end is LingerEnd.TIME and lingered.dropped >= 5
    assert 0.45 < elapsed < 3


async def test_a_peer_that_resets_ends_the_linger_without_an_error(nursery: trio.Nursery) -> None:
    results: list[Lingered] = []
    server = await lingering_server(nursery, results)
    with trio.fail_after(10):
        raw = trio.socket.socket()
        await raw.connect((HOST, server.port))
        assert await raw.recv(100) == ANSWER
        raw.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, struct.pack("ii", 1, 0))
        await raw.send(b"more")
        raw.close()  # with SO_LINGER 0: a reset, not a FIN
        lingered = await wait_for(results)
    assert lingered.end in (LingerEnd.GONE, LingerEnd.EOF)


async def test_a_socket_closed_by_its_owner_ends_the_linger(nursery: trio.Nursery) -> None:
    """Another task closing the socket (e.g. server shutdown) ends the linger, no error."""
    lingered: list[Lingered] = []

    async def handler(sock: trionet.net.Socket) -> None:
        async def close_soon() -> None:
            await trio.sleep(0.1)
            await sock.aclose()

        async with trio.open_nursery() as inner:
            inner.start_soon(close_soon)
            lingered.append(await linger(sock))

    server = await nursery.start(
        lambda task_status: trionet.net.serve(handler, 0, host=HOST, task_status=task_status)
    )
    client = await trionet.net.connect(server.port, HOST)
    assert (await wait_for(lingered)).end is LingerEnd.GONE
    await client.aclose()



async def test_websocket_peer_flooding_after_its_violation_reads_our_close(
    nursery: trio.Nursery,
) -> None:
    """The WebSocket side uses the same close: 4 MiB after a bad frame, still the 1002."""

    async def echo(sock: trionet.ws.WebSocket) -> None:
        async for message in sock:
            await sock.send(message)

    server = await nursery.start(
        lambda task_status: trionet.ws.serve(echo, 0, host=HOST, task_status=task_status)
    )
    with trio.fail_after(10):
        client = await RawClient.connect(server.port)
        # An unmasked frame breaks RFC 6455 section 5.1; the flood follows at once.
        await client.send(frame(TEXT, "no mask", mask=False), b"\x00" * (4 * MiB))
        assert await client.close_code() == 1002
        assert await client.next_frame() is None  # then our FIN, no reset
        await client.aclose()
