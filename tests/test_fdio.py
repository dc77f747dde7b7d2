"""trionet._fdio.DirectIO: direct descriptor I/O on real sockets, and its fallback."""

from __future__ import annotations

import os
import socket as stdlib_socket
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from trionet._fdio import JOIN_LIMIT, MAX_UNYIELDED_IO, DirectIO


@pytest.fixture
async def pair() -> AsyncIterator[tuple[trio.SocketStream, trio.SocketStream]]:
    a, b = trio.socket.socketpair()
    left, right = trio.SocketStream(a), trio.SocketStream(b)
    yield left, right
    await trio.aclose_forcefully(left)
    await trio.aclose_forcefully(right)


@pytest.fixture
async def tcp_pair() -> AsyncIterator[tuple[trio.SocketStream, trio.SocketStream]]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    client = await trio.testing.open_stream_to_socket_listener(listeners[0])
    client.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, True)
    server = await listeners[0].accept()
    await listeners[0].aclose()
    yield client, server
    await trio.aclose_forcefully(client)
    await trio.aclose_forcefully(server)


async def read_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        chunk = await stream.receive_some(size - len(out))
        assert chunk, "EOF before all bytes arrived"
        out += chunk
    return bytes(out)


@pytest.mark.parametrize("which", ["unix", "tcp"])
async def test_large_send_waits_for_room_and_completes(
    which: str,
    pair: tuple[trio.SocketStream, trio.SocketStream],
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    left, right = pair if which == "unix" else tcp_pair
    io = DirectIO(left)
    assert io.direct
    head = os.urandom(3000)
    body = os.urandom(8 << 20)  # far more than the kernel buffers: the write blocks
    received = b""

    async def reader() -> None:
        nonlocal received
        await trio.sleep(0.05)  # let the writer fill the buffers and wait first
        received = await read_exactly(right, len(head) + len(body))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await io.send(head, body)
    assert received == head + body


async def test_small_more_is_joined_large_more_is_not(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    left, right = tcp_pair
    io = DirectIO(left)
    with trio.fail_after(5):
        await io.send(b"head:", b"x" * (JOIN_LIMIT - 1))
        assert await read_exactly(right, 5 + JOIN_LIMIT - 1) == b"head:" + b"x" * (JOIN_LIMIT - 1)
        await io.send(b"head:", memoryview(b"y" * JOIN_LIMIT))
        assert await read_exactly(right, 5 + JOIN_LIMIT) == b"head:" + b"y" * JOIN_LIMIT


async def test_receive_reads_waits_and_sees_eof(
    pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    left, right = pair
    io = DirectIO(left)
    with trio.fail_after(5):
        await right.send_all(b"hello")
        assert await io.receive(100) == b"hello"  # drained: the next read waits first

        async def later() -> None:
            await trio.sleep(0.05)
            await right.send_all(b"world")
            await right.send_eof()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(later)
            assert await io.receive(100) == b"world"
        assert await io.receive(100) == b""


async def test_closed_socket_is_never_used(
    pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    left, _ = pair
    io = DirectIO(left)
    left.socket.close()
    with pytest.raises(trio.ClosedResourceError):
        await io.send(b"x")
    with pytest.raises(trio.ClosedResourceError):
        await io.receive(10)


async def test_reused_descriptor_number_is_never_written_to(
    pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    left, _ = pair
    io = DirectIO(left)
    fd = left.socket.fileno()
    left.socket.close()
    # Another connection now holds the old number (the kernel hands out the
    # lowest free one; dup2 makes sure).
    other, other_peer = stdlib_socket.socketpair()
    try:
        if other.fileno() != fd:
            os.dup2(other.fileno(), fd)
        with pytest.raises(trio.ClosedResourceError):
            await io.send(b"for the old peer")
        with pytest.raises(trio.ClosedResourceError):
            await io.receive(10)
        other_peer.setblocking(False)
        with pytest.raises(BlockingIOError):
            other_peer.recv(100)
    finally:
        if other.fileno() != fd:
            os.close(fd)
        other.close()
        other_peer.close()


async def test_socket_closed_while_waiting(
    pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    left, _ = pair
    io = DirectIO(left)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def close_soon() -> None:
                await trio.sleep(0.05)
                left.socket.close()

            nursery.start_soon(close_soon)
            with pytest.raises(trio.ClosedResourceError):
                await io.receive(10)


async def test_os_errors_become_broken_resource(
    pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    left, right = pair
    io = DirectIO(left)
    right.socket.close()
    with pytest.raises(trio.BrokenResourceError) as info:
        for _ in range(10):
            await io.send(b"x" * 1000)
    assert isinstance(info.value.__cause__, OSError)


async def test_fallback_for_other_streams() -> None:
    left, right = trio.testing.memory_stream_pair()
    io = DirectIO(left)
    assert not io.direct
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def read_all() -> None:
                size = 5 + 5 + 5 + JOIN_LIMIT
                assert await read_exactly(right, size) == b"head:body!head:" + b"z" * JOIN_LIMIT

            nursery.start_soon(read_all)
            await io.send(b"head:", b"body!")
            await io.send(b"head:", b"z" * JOIN_LIMIT)
        await right.send_all(b"back")
        assert bytes(await io.receive(100)) == b"back"
        await io.checkpoint()  # a no-op there: every call already yielded


async def test_immediate_operations_yield_every_few(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    left, right = tcp_pair
    io = DirectIO(left)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0)

    count = 20 * MAX_UNYIELDED_IO
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await trio.sleep(0)
            before = ticks
            for _ in range(count):
                await io.send(b"0123456789")  # fits the buffer: never waits
            sends = ticks - before
            reader = DirectIO(right)
            before = ticks
            for _ in range(count):
                assert await reader.receive(10) == b"0123456789"  # data there: never waits
            receives = ticks - before
            nursery.cancel_scope.cancel()
    # Other tasks run (no starvation), but not after every operation (the point).
    for yields in (sends, receives):
        assert count // (2 * MAX_UNYIELDED_IO) <= yields <= count // MAX_UNYIELDED_IO + 2


async def test_checkpoint_yields_only_after_immediate_operations(
    pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    left, _ = pair
    io = DirectIO(left)
    with trio.testing.assert_no_checkpoints():
        await io.checkpoint()
        await io.send(b"x")
    with trio.testing.assert_checkpoints():
        await io.checkpoint()


# -- read_now / write_now: the WebSocket's per-message path, with no await ----------


async def test_read_now_takes_what_is_there_and_leaves_waiting_to_receive(
    pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    left, right = pair
    io = DirectIO(left)
    assert io.read_now(100) is None  # nothing there: no wait, no exception
    assert io.idle_fd() == left.socket.fileno()  # and the next receive waits first
    await right.send_all(b"hello")
    with trio.fail_after(5):
        await trio.lowlevel.wait_readable(io.idle_fd())
    with trio.testing.assert_no_checkpoints():
        assert io.read_now(100, waited=True) == b"hello"
    await right.send_eof()
    with trio.fail_after(5):
        await trio.lowlevel.wait_readable(io.idle_fd())
    assert io.read_now(100, waited=True) is None  # the end: receive() reports it
    assert await io.receive(100) == b""


async def test_write_now_writes_what_the_kernel_takes_and_send_does_the_rest(
    pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    left, right = pair
    io = DirectIO(left)
    with trio.testing.assert_no_checkpoints():
        assert io.write_now(b"small") == 5
    assert await read_exactly(right, 5) == b"small"
    big = os.urandom(8 << 20)  # more than the kernel buffers
    sent = io.write_now(big)
    assert 0 < sent < len(big)
    assert io.write_now(b"more") == 0  # full: nothing written, send() must wait
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def reader() -> None:
                assert await read_exactly(right, len(big)) == big

            nursery.start_soon(reader)
            await io.send(memoryview(big)[sent:])


async def test_read_now_and_write_now_never_touch_a_closed_socket(
    pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    left, right = pair
    io = DirectIO(left)
    await right.send_all(b"read")
    assert io.read_now(100) == b"read"  # the socket is empty now: idle_fd() has a number
    await right.send_all(b"unread")
    left.socket.close()
    with pytest.raises(trio.ClosedResourceError):
        io.idle_fd()
    with pytest.raises(trio.ClosedResourceError):
        io.read_now(10, waited=True)
    with pytest.raises(trio.ClosedResourceError):
        io.write_now(b"x")


async def test_read_now_and_write_now_leave_the_due_yield_to_receive_and_send(
    pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    left, right = pair
    io = DirectIO(left)
    for _ in range(MAX_UNYIELDED_IO):
        assert io.write_now(b"x") == 1
    assert io.write_now(b"x") == 0  # a yield is due: only send() may take it
    await right.send_all(b"data")
    assert io.read_now(10) is None  # the same for reads
    with trio.testing.assert_checkpoints():
        assert await io.receive(10) == b"data"


async def test_read_now_and_write_now_are_for_plain_sockets_only() -> None:
    left, right = trio.testing.memory_stream_pair()
    io = DirectIO(left)
    await right.send_all(b"there")
    assert io.read_now(10) is None
    assert io.write_now(b"x") == 0
