"""trionet.net.Socket's engine: direct descriptor I/O where the platform allows it,
Trio's streams elsewhere, addresses looked up when first asked for, and the
fairness rules (Node's names yield every few calls, Trio's names on every call).

The engine itself (:class:`trionet._fdio.DirectIO`) has its own tests in
test_fdio.py; these check what a Socket's user sees.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

import trionet._fdio
from trionet import net
from trionet._fdio import MAX_UNYIELDED_IO

HOST = "127.0.0.1"


@pytest.fixture
async def tcp_pair() -> AsyncIterator[tuple[trio.SocketStream, trio.SocketStream]]:
    """Two ends of a TCP connection on 127.0.0.1, as Trio streams."""
    listeners = await trio.open_tcp_listeners(0, host=HOST)
    client = await trio.testing.open_stream_to_socket_listener(listeners[0])
    server = await listeners[0].accept()
    await listeners[0].aclose()
    yield client, server
    await trio.aclose_forcefully(client)
    await trio.aclose_forcefully(server)


async def count_yields(operation: Callable[[], Awaitable[Any]], times: int) -> int:
    """How often another task ran while ``operation`` ran ``times`` times."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await trio.sleep(0)
        before = ticks
        for _ in range(times):
            await operation()
        yielded = ticks - before
        nursery.cancel_scope.cancel()
    return yielded


# -- fairness ------------------------------------------------------------------------
async def test_send_and_receive_yield_every_few_calls_on_a_plain_socket(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """Node's names (send, receive) go straight to the descriptor: other tasks
    still run, but not after every call (that is what makes them fast)."""
    left, right = net.Socket(tcp_pair[0]), net.Socket(tcp_pair[1])
    count = 20 * MAX_UNYIELDED_IO
    with trio.fail_after(5):
        sends = await count_yields(lambda: left.send(b"0123456789"), count)
        receives = await count_yields(lambda: right.receive(10), count)
    for yields in (sends, receives):
        assert count // (2 * MAX_UNYIELDED_IO) <= yields <= count // MAX_UNYIELDED_IO + 2
    assert left.bytes_written == right.bytes_read == 10 * count


async def test_trios_names_yield_on_every_call(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """send_all and receive_some keep Trio's rule: every call is a checkpoint
    (counted give or take one at either end)."""
    left, right = net.Socket(tcp_pair[0]), net.Socket(tcp_pair[1])
    count = 4 * MAX_UNYIELDED_IO
    with trio.fail_after(5):
        assert await count_yields(lambda: left.send_all(b"0123456789"), count) >= count - 2
        assert await count_yields(lambda: right.receive_some(10), count) >= count - 2


async def test_checkpoint_yields_once_after_calls_that_did_not_wait(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """The once-per-request yield a protocol driver takes: free when nothing ran unyielded."""
    sock = net.Socket(tcp_pair[0])
    with trio.testing.assert_no_checkpoints():
        await sock.checkpoint()
        await sock.send(b"request")
    with trio.testing.assert_checkpoints():
        await sock.checkpoint()
    with trio.testing.assert_no_checkpoints():
        await sock.checkpoint()


async def test_without_direct_io_every_call_goes_through_trio(
    monkeypatch: pytest.MonkeyPatch, tcp_pair: tuple[trio.SocketStream, trio.SocketStream]
) -> None:
    """On Windows os.read/os.write do not take sockets: the Socket uses Trio's
    stream there, which yields on every call; the results are the same."""
    monkeypatch.setattr(trionet._fdio, "DIRECT_IO", False)
    left, right = net.Socket(tcp_pair[0]), net.Socket(tcp_pair[1])
    count = 2 * MAX_UNYIELDED_IO
    with trio.fail_after(5):
        assert await count_yields(lambda: left.send(b"0123456789"), count) >= count - 2
        assert await count_yields(lambda: right.receive(10), count) >= count - 2
        await left.send(b"head:", more=b"body")
        assert await right.receive() == b"head:body"
        await left.send_eof()
        assert await right.receive() == b""
    assert left.bytes_written == right.bytes_read == 10 * count + 9


# -- send(data, more=...) --------------------------------------------------------------
async def test_send_with_more_writes_one_record_and_counts_both(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """A driver's head and body: one call, contiguous on the wire, a large body uncopied."""
    left, right = net.Socket(tcp_pair[0]), net.Socket(tcp_pair[1])
    body = b"b" * (1 << 20)
    received = bytearray()

    async def read_all() -> None:
        while len(received) < 5 + len(body):
            received.extend(await right.receive())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all)
            await left.send(b"head:", more=body)
    assert received == b"head:" + body
    assert left.bytes_written == 5 + len(body)


# -- addresses -------------------------------------------------------------------------
async def test_addresses_are_looked_up_when_first_read_then_kept(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """A connection that never asks for its addresses pays no system call for them."""
    stream = tcp_pair[1]
    calls: list[str] = []
    real_peer, real_local = stream.socket.getpeername, stream.socket.getsockname

    def getpeername() -> Any:
        calls.append("getpeername")
        return real_peer()

    def getsockname() -> Any:
        calls.append("getsockname")
        return real_local()

    stream.socket.getpeername = getpeername  # type: ignore[method-assign]
    stream.socket.getsockname = getsockname  # type: ignore[method-assign]
    sock = net.Socket(stream)
    await sock.send(b"x")
    assert calls == []
    assert sock.remote_address == tcp_pair[0].socket.getsockname()
    assert sock.local_address == tcp_pair[0].socket.getpeername()
    assert sock.remote_port == tcp_pair[0].socket.getsockname()[1]
    assert repr(sock).startswith("<trionet.net.Socket")
    assert calls == ["getpeername", "getsockname"]


async def test_an_address_set_by_a_pre_step_is_the_one_reported(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """What a PROXY-protocol header says about the client replaces what TCP says."""
    sock = net.Socket(tcp_pair[1], remote_address=("203.0.113.7", 4000))
    assert sock.remote_address == ("203.0.113.7", 4000)
    sock.remote_address = ("2001:db8::1", 5000)
    assert sock.remote_address == ("2001:db8::1", 5000)
    assert sock.remote_port == 5000


async def test_a_closed_socket_has_no_addresses_left_to_look_up(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    sock = net.Socket(tcp_pair[1])
    await sock.aclose()
    assert sock.remote_address is None
    assert sock.local_address is None


# -- misuse ----------------------------------------------------------------------------
async def test_receive_of_zero_bytes_is_refused_not_taken_for_the_end(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """os.read(fd, 0) returns b"", which would look like the peer's end (and,
    without allow_half_open, end our side)."""
    left, right = net.Socket(tcp_pair[0]), net.Socket(tcp_pair[1], allow_half_open=False)
    with pytest.raises(ValueError, match="max_bytes"):
        await right.receive(0)
    with trio.fail_after(5):
        await right.send(b"still open")
        assert await left.receive() == b"still open"


async def test_the_drivers_no_await_path_counts_bytes_and_reports_a_closed_socket(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """Socket._receive_now/_send_now (the WebSocket's per-message path) keep
    the Socket's books and its errors, as receive()/send() do."""
    client, server = tcp_pair
    sock = net.Socket(server)
    assert sock._send_now(b"ping") == 4
    assert sock.bytes_written == 4
    assert await client.receive_some(10) == b"ping"
    await client.send_all(b"pong")
    with trio.fail_after(5):
        await trio.lowlevel.wait_readable(server.socket)
    assert sock._receive_now(10, waited=True) == b"pong"
    assert sock.bytes_read == 4
    server.socket.close()
    with pytest.raises(net.SocketClosedError):
        sock._send_now(b"x")
    with pytest.raises(net.SocketClosedError):
        sock._receive_now(10, waited=True)


async def test_the_drivers_no_await_path_waits_for_another_tasks_send(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """While another task's send() is under way, _send_now writes nothing:
    each call's bytes stay contiguous on the wire."""
    client, server = tcp_pair
    sock = net.Socket(server)
    big = b"z" * (8 << 20)  # far more than the kernel buffers: the send waits
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sock.send, big)
            await trio.testing.wait_all_tasks_blocked()
            assert sock._send_now(b"!") == 0
            received = 0
            while received < len(big):
                received += len(await client.receive_some(1 << 20))
    assert sock._send_now(b"!") == 1
