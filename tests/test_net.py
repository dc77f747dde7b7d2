"""trionet.net: TCP and Unix sockets against trionet, nc and Node peers.

Most tests run twice, over TCP on 127.0.0.1 and over a Unix socket in a fresh
temporary directory (the ``endpoint`` fixture). Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import random
import shutil
import socket as stdlib_socket
import struct
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from conftest import PEERS, node_process, open_fds, require_tool
from hypothesis import given, settings
from hypothesis import strategies as st

import trionet
from trionet import net
from trionet._stream import raw_socket

HOST = "127.0.0.1"
GREETING = "欢迎光临《深入浅出Node.js》示例：\n"
REPLY = "你好"


async def greeter(sock: net.Socket) -> None:
    """The seed's TCP server: greet on connect, answer every message with 你好."""
    await sock.send(GREETING)
    async for _ in sock:
        await sock.send(REPLY)


async def echo(sock: net.Socket) -> None:
    await net.pipe(sock, sock)


async def read_all(sock: net.Socket) -> bytes:
    """Everything ``sock`` receives until the peer ends its side."""
    return b"".join([chunk async for chunk in sock])


async def read_until(sock: net.Socket, wanted: bytes) -> bytes:
    data = b""
    while wanted not in data:
        chunk = await sock.receive()
        if not chunk:
            raise AssertionError(f"EOF before {wanted!r}; got {data!r}")
        data += chunk
    return data


@dataclass
class Endpoint:
    """Where a test's server listens: TCP on 127.0.0.1, or a Unix socket path."""

    kind: str
    path: str | None = None

    def serve(self, handler: net.Handler, **kwargs: Any) -> Callable[..., Awaitable[None]]:
        """``net.serve`` bound to this endpoint, for ``nursery.start``."""
        where = {"path": self.path} if self.path else {"port": 0, "host": HOST}
        return partial(net.serve, handler, **where, **kwargs)

    async def connect(self, server: net.Server, **kwargs: Any) -> net.Socket:
        if self.path:
            return await net.connect(path=self.path, **kwargs)
        return await net.connect(server.port, HOST, **kwargs)

    def nc_args(self, server: net.Server) -> list[str]:
        return ["-U", self.path] if self.path else [HOST, str(server.port)]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path (Unix socket paths max out at 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="tn-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["tcp", "unix"])
def endpoint(request: pytest.FixtureRequest, short_tmp: Path) -> Endpoint:
    if request.param == "unix":
        return Endpoint("unix", str(short_tmp / "s.sock"))
    return Endpoint("tcp")


# -- the seed's greeting server, four ways -------------------------------------
async def test_greeting_server_answers_a_trionet_client(
    nursery: trio.Nursery, endpoint: Endpoint
) -> None:
    server = await nursery.start(endpoint.serve(greeter))
    with trio.fail_after(5):
        async with await endpoint.connect(server) as sock:
            assert await read_until(sock, b"\n") == GREETING.encode()
            await sock.send("hello")
            assert await sock.receive() == REPLY.encode()
            await sock.send_eof()
            assert await sock.receive() == b""


async def test_greeting_server_answers_nc(nursery: trio.Nursery, endpoint: Endpoint) -> None:
    nc = require_tool("nc", "netcat-openbsd")
    server = await nursery.start(endpoint.serve(greeter))
    with trio.fail_after(10):
        done = await trio.run_process(
            [nc, "-N", *endpoint.nc_args(server)], stdin=b"hello", capture_stdout=True
        )
    assert done.stdout.decode() == GREETING + REPLY


async def test_greeting_server_answers_a_node_client(
    nursery: trio.Nursery, endpoint: Endpoint, node: str
) -> None:
    server = await nursery.start(endpoint.serve(greeter))
    target = endpoint.path or str(server.port)
    with trio.fail_after(10):
        done = await trio.run_process(
            [node, str(PEERS / "net_client.js"), target, "hello"], capture_stdout=True
        )
    assert done.stdout.decode() == GREETING + REPLY


async def test_trionet_client_talks_to_a_node_echo_server(endpoint: Endpoint, node: str) -> None:
    args = [endpoint.path] if endpoint.path else []
    async with node_process(node, "net_echo_server.js", *args) as address:
        with trio.fail_after(10):
            if endpoint.path:
                assert address == endpoint.path
                sock = await net.connect(path=endpoint.path)
            else:
                sock = await net.connect(address["port"], HOST)
            async with sock:
                await sock.send(GREETING)
                await sock.send_eof()
                assert await read_all(sock) == GREETING.encode()
                assert sock.bytes_written == sock.bytes_read == len(GREETING.encode())


# -- half-close ------------------------------------------------------------------
async def test_client_half_close_lets_a_half_open_server_answer(
    nursery: trio.Nursery, endpoint: Endpoint
) -> None:
    async def count_then_answer(sock: net.Socket) -> None:
        total = len(await read_all(sock))
        await sock.send(f"got {total} bytes")

    server = await nursery.start(endpoint.serve(count_then_answer, allow_half_open=True))
    with trio.fail_after(5):
        async with await endpoint.connect(server) as sock:
            await sock.send(b"x" * 1000)
            await sock.send_eof()
            assert await read_all(sock) == b"got 1000 bytes"


async def test_a_node_client_half_closes_and_still_gets_the_answer(
    nursery: trio.Nursery, endpoint: Endpoint, node: str
) -> None:
    async def count_then_answer(sock: net.Socket) -> None:
        total = len(await read_all(sock))
        await sock.send(f"got {total} bytes")

    server = await nursery.start(endpoint.serve(count_then_answer, allow_half_open=True))
    target = endpoint.path or str(server.port)
    with trio.fail_after(10):
        done = await trio.run_process(
            [node, str(PEERS / "net_client.js"), target, "x" * 5000, "--end"],
            capture_stdout=True,
        )
    assert done.stdout == b"got 5000 bytes"


async def test_server_half_close_lets_the_client_answer(
    nursery: trio.Nursery, endpoint: Endpoint
) -> None:
    heard = []

    async def speak_then_listen(sock: net.Socket) -> None:
        await sock.send(b"question")
        await sock.send_eof()
        heard.append(await read_all(sock))

    server = await nursery.start(endpoint.serve(speak_then_listen))
    with trio.fail_after(5):
        async with await endpoint.connect(server, allow_half_open=True) as sock:
            assert await read_all(sock) == b"question"
            await sock.send(b"answer after your EOF")
            await sock.send_eof()
        while server.connections:
            await trio.sleep(0.01)
    assert heard == [b"answer after your EOF"]


async def test_without_allow_half_open_the_peers_eof_ends_our_side(
    nursery: trio.Nursery, endpoint: Endpoint
) -> None:
    """Node's default: the server ends its side as soon as it reads the client's EOF."""
    handler_done = trio.Event()
    send_error: list[BaseException] = []

    async def read_then_linger(sock: net.Socket) -> None:
        await read_all(sock)
        try:
            await sock.send(b"too late")
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            send_error.append(exc)
        await handler_done.wait()

    server = await nursery.start(endpoint.serve(read_then_linger))
    with trio.fail_after(5):
        async with await endpoint.connect(server, allow_half_open=True) as sock:
            await sock.send_eof()
            # The handler still runs, yet our read ends: the server ended its side.
            assert await sock.receive() == b""
            assert server.connections == 1
        handler_done.set()
    assert len(send_error) == 1


# -- limits ----------------------------------------------------------------------
async def test_max_connections_closes_the_extra_connection_at_once(
    nursery: trio.Nursery, endpoint: Endpoint
) -> None:
    async def hold(sock: net.Socket) -> None:
        await sock.send(b"in")
        await read_all(sock)  # until the client hangs up

    server = await nursery.start(endpoint.serve(hold, max_connections=2))
    with trio.fail_after(5):
        first = await endpoint.connect(server)
        second = await endpoint.connect(server)
        assert await first.receive() == b"in"
        assert await second.receive() == b"in"
        extra = await endpoint.connect(server)
        with contextlib.suppress(trio.BrokenResourceError):
            assert await extra.receive() == b""
        assert server.dropped == 1
        assert server.connections == 2
        await extra.aclose()

        await first.aclose()
        while server.connections > 1:
            await trio.sleep(0.01)
        async with await endpoint.connect(server) as again:
            assert await again.receive() == b"in"
        await second.aclose()


async def test_idle_timeout_closes_a_quiet_connection(
    nursery: trio.Nursery, endpoint: Endpoint
) -> None:
    server = await nursery.start(endpoint.serve(greeter, idle_timeout=0.5))
    with trio.fail_after(10):
        async with await endpoint.connect(server) as sock:
            await read_until(sock, b"\n")
            # Traffic every 0.1 s keeps it open well past the timeout...
            for _ in range(10):
                await trio.sleep(0.1)
                await sock.send(b"ping")
                assert await sock.receive() == REPLY.encode()
            # ...and silence closes it.
            start = trio.current_time()
            assert await sock.receive() == b""
            assert 0.4 < trio.current_time() - start < 3
    assert server.connections == 0


async def test_idle_timeout_does_not_delay_a_handler_that_returns(
    nursery: trio.Nursery, endpoint: Endpoint
) -> None:
    async def say_bye(sock: net.Socket) -> None:
        await sock.send(b"bye")

    server = await nursery.start(endpoint.serve(say_bye, idle_timeout=30))
    with trio.fail_after(5):
        async with await endpoint.connect(server) as sock:
            assert await read_all(sock) == b"bye"


async def test_idle_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="idle_timeout"):
        await net.serve(greeter, 0, host=HOST, idle_timeout=0)


# -- shutdown --------------------------------------------------------------------
async def test_aclose_lets_the_handler_finish_and_refuses_new_connections(
    nursery: trio.Nursery, endpoint: Endpoint
) -> None:
    working = trio.Event()
    release = trio.Event()

    async def slow_reply(sock: net.Socket) -> None:
        await sock.receive()
        working.set()
        await release.wait()
        await sock.send(b"done")

    server = await nursery.start(endpoint.serve(slow_reply))
    with trio.fail_after(5):
        sock = await endpoint.connect(server)
        await sock.send(b"work")
        await working.wait()
        async with trio.open_nursery() as closer:
            closer.start_soon(server.aclose)
            await trio.sleep(0.05)
            with pytest.raises(trionet.ConnectError):
                await endpoint.connect(server)
            assert server.connections == 1
            release.set()
            assert await read_all(sock) == b"done"
        assert server.connections == 0
        await server.wait_closed()
        await sock.aclose()


async def test_aclose_timeout_cancels_a_stuck_handler(
    nursery: trio.Nursery, endpoint: Endpoint
) -> None:
    cancelled = []

    async def stuck(sock: net.Socket) -> None:
        await sock.send(b"stuck")
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.append(True)
            raise

    server = await nursery.start(endpoint.serve(stuck))
    with trio.fail_after(5):
        async with await endpoint.connect(server) as sock:
            assert await sock.receive() == b"stuck"
            start = trio.current_time()
            await server.aclose(timeout=0.2)
            assert 0.15 < trio.current_time() - start < 2
            assert cancelled == [True]
            assert await sock.receive() == b""


async def test_cancelling_the_nursery_closes_server_and_connections(endpoint: Endpoint) -> None:
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(endpoint.serve(greeter))
            sock = await endpoint.connect(server)
            await read_until(sock, b"\n")
            nursery.cancel_scope.cancel()
        assert await sock.receive() == b""
        await sock.aclose()
        with pytest.raises(trionet.ConnectError):
            await endpoint.connect(server)
    if endpoint.path:
        assert not Path(endpoint.path).exists()


# -- volume ------------------------------------------------------------------------
async def test_64_mib_through_pipe_arrive_intact(nursery: trio.Nursery, endpoint: Endpoint) -> None:
    size = 64 << 20
    piped = []

    async def counting_echo(sock: net.Socket) -> None:
        piped.append(await net.pipe(sock, sock))

    server = await nursery.start(endpoint.serve(counting_echo))
    block = random.Random(1).randbytes(1 << 20)
    sent, received = hashlib.sha256(), hashlib.sha256()
    count = 0
    with trio.fail_after(60):
        async with await endpoint.connect(server) as sock:

            async def send_all() -> None:
                for i in range(size // len(block)):
                    chunk = block[i:] + block[:i]  # no two MiB alike
                    sent.update(chunk)
                    await sock.send(chunk)
                await sock.send_eof()

            async with trio.open_nursery() as inner:
                inner.start_soon(send_all)
                async for chunk in sock:
                    received.update(chunk)
                    count += len(chunk)
    assert count == size
    assert received.hexdigest() == sent.hexdigest()
    assert piped == [size]


async def test_500_concurrent_connections(nursery: trio.Nursery, endpoint: Endpoint) -> None:
    server = await nursery.start(endpoint.serve(echo, backlog=1024))
    answers: dict[int, bytes] = {}
    go = trio.Event()

    async def client(i: int) -> None:
        async with await endpoint.connect(server) as sock:
            await go.wait()
            await sock.send(f"client {i}")
            await sock.send_eof()
            answers[i] = await read_all(sock)

    with trio.fail_after(60):
        async with trio.open_nursery() as clients:
            for i in range(500):
                clients.start_soon(client, i)
            while server.connections < 500:  # all 500 are open at once
                await trio.sleep(0.01)
            go.set()
    assert answers == {i: f"client {i}".encode() for i in range(500)}


async def test_a_failing_handler_is_logged_and_the_server_keeps_serving(
    nursery: trio.Nursery, endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    async def fails_first(sock: net.Socket) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("boom")
        await sock.send(b"fine")

    caplog.set_level(logging.ERROR, logger="trionet")
    server = await nursery.start(endpoint.serve(fails_first))
    with trio.fail_after(5):
        async with await endpoint.connect(server) as sock:
            assert await read_all(sock) == b""
        async with await endpoint.connect(server) as sock:
            assert await read_all(sock) == b"fine"
    failures = [r for r in caplog.records if r.name.startswith("trionet") and r.exc_info]
    assert len(failures) == 1
    assert isinstance(failures[0].exc_info[1], ValueError)  # type: ignore[index]
    assert "handler" in failures[0].getMessage()


async def reset(sock: net.Socket) -> None:
    """Close with a RST instead of a FIN (SO_LINGER with a zero timeout); TLS too."""
    raw = raw_socket(sock.stream)
    assert raw is not None
    raw.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, struct.pack("ii", 1, 0))
    await sock.aclose()


async def test_a_peer_that_resets_the_connection_ends_only_its_handler(
    nursery: trio.Nursery,
) -> None:
    seen: list[BaseException] = []
    reading = trio.Event()

    async def read_forever(sock: net.Socket) -> None:
        reading.set()
        try:
            await read_all(sock)
        except trio.BrokenResourceError as exc:  # ECONNRESET
            seen.append(exc)

    server = await nursery.start(partial(net.serve, read_forever, 0, host=HOST))
    with trio.fail_after(5):
        sock = await net.connect(server.port, HOST)
        await reading.wait()
        await sock.send(b"last words")
        await reset(sock)
        while server.connections:
            await trio.sleep(0.01)
        async with await net.connect(server.port, HOST) as again:
            await again.send_eof()
            assert await read_all(again) == b""
    assert len(seen) == 1


async def test_no_file_descriptor_leaks_after_1000_connections(
    nursery: trio.Nursery, endpoint: Endpoint
) -> None:
    server = await nursery.start(endpoint.serve(echo))

    async def one_connection() -> None:
        async with await endpoint.connect(server) as sock:
            await sock.send(b"x")
            await sock.send_eof()
            assert await read_all(sock) == b"x"

    async def batch() -> None:
        async with trio.open_nursery() as clients:
            for _ in range(50):
                clients.start_soon(one_connection)

    with trio.fail_after(60):
        await batch()  # warm up whatever trio and logging open lazily
        while server.connections:
            await trio.sleep(0.01)
        before = open_fds()
        for _ in range(20):
            await batch()
        while server.connections:
            await trio.sleep(0.01)
    assert open_fds() <= before


# -- Unix socket files -------------------------------------------------------------
async def test_a_stale_unix_socket_file_is_replaced_and_removed_on_close(
    short_tmp: Path,
) -> None:
    path = short_tmp / "stale.sock"
    dead = stdlib_socket.socket(stdlib_socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # what a crashed server leaves behind: a file nobody listens on
    assert path.is_socket()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(net.serve, greeter, path=path))
            assert server.address == str(path)
            assert server.port is None
            async with await net.connect(path=path) as sock:
                assert await read_until(sock, b"\n") == GREETING.encode()
                assert sock.remote_port is None
            await server.aclose()
    assert not path.exists()


async def test_a_unix_path_in_use_is_refused(nursery: trio.Nursery, short_tmp: Path) -> None:
    path = short_tmp / "busy.sock"
    await nursery.start(partial(net.serve, greeter, path=path))
    with pytest.raises(OSError) as info:
        await nursery.start(partial(net.serve, greeter, path=path))
    assert info.value.errno == errno.EADDRINUSE
    assert path.is_socket()


async def test_a_unix_path_that_is_a_regular_file_is_left_alone(short_tmp: Path) -> None:
    path = short_tmp / "notes.txt"
    path.write_text("keep me")
    with pytest.raises(OSError) as info:
        await net.serve(greeter, path=path)
    assert info.value.errno == errno.EEXIST
    assert path.read_text() == "keep me"


# -- connect -------------------------------------------------------------------------
def _unused_port() -> int:
    with stdlib_socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


async def test_refused_connect_raises_connect_error_naming_the_address() -> None:
    port = _unused_port()
    with trio.fail_after(5), pytest.raises(trionet.ConnectError) as info:
        await net.connect(port, HOST)
    assert f"{HOST}:{port}" in str(info.value)
    assert info.value.errno == errno.ECONNREFUSED
    assert isinstance(info.value, OSError)


async def test_connect_to_a_missing_unix_socket_names_the_path(short_tmp: Path) -> None:
    path = short_tmp / "nobody.sock"
    with trio.fail_after(5), pytest.raises(trionet.ConnectError) as info:
        await net.connect(path=path)
    assert str(path) in str(info.value)
    assert info.value.errno == errno.ENOENT


async def test_connect_timeout_raises_trionet_timeout_error(nursery: trio.Nursery) -> None:
    server = await nursery.start(partial(net.serve, greeter, 0, host=HOST))
    with pytest.raises(trionet.TimeoutError) as info:
        await net.connect(server.port, HOST, timeout=0)
    assert isinstance(info.value, TimeoutError)
    assert f"{HOST}:{server.port}" in str(info.value)


async def test_connect_to_localhost_finds_an_ipv4_only_server(nursery: trio.Nursery) -> None:
    """The default host "localhost" may resolve to ::1 first; happy eyeballs moves on."""
    server = await nursery.start(partial(net.serve, greeter, 0, host=HOST))
    with trio.fail_after(5):
        async with await net.connect(server.port) as sock:
            assert await read_until(sock, b"\n") == GREETING.encode()
            assert sock.remote_address == (HOST, server.port)


def _has_ipv6_loopback() -> bool:
    try:
        with stdlib_socket.socket(stdlib_socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1)")
async def test_serve_and_connect_over_ipv6_loopback(nursery: trio.Nursery) -> None:
    server = await nursery.start(partial(net.serve, greeter, 0, host="::1"))
    assert server.address == ("::1", server.port)
    with trio.fail_after(5):
        async with await net.connect(server.port, "::1") as sock:
            assert await read_until(sock, b"\n") == GREETING.encode()
            assert sock.remote_address == ("::1", server.port)


async def test_connect_from_a_chosen_local_address(nursery: trio.Nursery) -> None:
    server = await nursery.start(partial(net.serve, echo, 0, host=HOST))
    with trio.fail_after(5):
        async with await net.connect(server.port, HOST, local_address="127.0.0.2") as sock:
            assert isinstance(sock.local_address, tuple)
            assert sock.local_address[0] == "127.0.0.2"


async def test_connect_needs_a_port_or_a_path() -> None:
    with pytest.raises(ValueError, match="port or a path"):
        await net.connect()


# -- the Socket --------------------------------------------------------------------
async def test_socket_reports_addresses_and_byte_counts(nursery: trio.Nursery) -> None:
    seen: list[net.Socket] = []

    async def record(sock: net.Socket) -> None:
        seen.append(sock)
        await echo(sock)

    server = await nursery.start(partial(net.serve, record, 0, host=HOST))
    with trio.fail_after(5):
        async with await net.connect(server.port, HOST) as sock:
            assert sock.remote_address == (HOST, server.port)
            assert sock.remote_port == server.port
            await sock.send("héllo")
            await sock.send_eof()
            assert await read_all(sock) == "héllo".encode()
            assert (sock.bytes_written, sock.bytes_read) == (6, 6)
            assert isinstance(sock.stream, trio.SocketStream)
    (accepted,) = seen
    assert accepted.remote_address == sock.local_address
    assert (accepted.bytes_read, accepted.bytes_written) == (6, 6)
    assert repr(sock).startswith("<trionet.net.Socket")


async def test_set_nodelay_and_set_keepalive_set_nodes_socket_options(
    nursery: trio.Nursery,
) -> None:
    server = await nursery.start(partial(net.serve, echo, 0, host=HOST))
    async with await net.connect(server.port, HOST) as sock:
        raw = sock.stream.socket  # type: ignore[attr-defined]
        tcp = stdlib_socket.IPPROTO_TCP
        sock.set_nodelay(True)
        assert raw.getsockopt(tcp, stdlib_socket.TCP_NODELAY) == 1
        sock.set_nodelay(False)
        assert raw.getsockopt(tcp, stdlib_socket.TCP_NODELAY) == 0
        sock.set_keepalive(True, idle=7)
        assert raw.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_KEEPALIVE) == 1
        assert raw.getsockopt(tcp, stdlib_socket.TCP_KEEPIDLE) == 7
        # Node's fixed probe settings (net.md, socket.setKeepAlive).
        assert raw.getsockopt(tcp, stdlib_socket.TCP_KEEPCNT) == 10
        assert raw.getsockopt(tcp, stdlib_socket.TCP_KEEPINTVL) == 1
        sock.set_keepalive(False)
        assert raw.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_KEEPALIVE) == 0


async def test_socket_options_are_no_ops_on_unix_sockets(
    nursery: trio.Nursery, short_tmp: Path
) -> None:
    path = short_tmp / "o.sock"
    await nursery.start(partial(net.serve, echo, path=path))
    async with await net.connect(path=path) as sock:
        sock.set_nodelay(True)
        sock.set_keepalive(True, idle=1)
        assert sock.remote_address == str(path)


async def test_pipe_copies_between_two_connections(nursery: trio.Nursery) -> None:
    """A one-line TCP proxy: pipe each way between the client and an upstream."""
    upstream = await nursery.start(partial(net.serve, greeter, 0, host=HOST))

    async def proxy(client: net.Socket) -> None:
        server_side = await net.connect(upstream.port, HOST)
        async with server_side, trio.open_nursery() as both_ways:
            both_ways.start_soon(net.pipe, client, server_side)
            both_ways.start_soon(net.pipe, server_side, client)

    front = await nursery.start(partial(net.serve, proxy, 0, host=HOST))
    with trio.fail_after(5):
        async with await net.connect(front.port, HOST) as sock:
            assert await read_until(sock, b"\n") == GREETING.encode()
            await sock.send("hi")
            assert await sock.receive() == REPLY.encode()
            await sock.send_eof()
            assert await sock.receive() == b""


async def test_pipe_stops_reading_while_the_destination_is_stalled() -> None:
    """Backpressure: a writer feeding a pipe whose destination nobody reads soon
    blocks, instead of pipe buffering everything it is sent."""
    writer, source = await _socket_pair()
    dst_send, _nobody_reads = trio.testing.lockstep_stream_pair()
    offered = 64 << 20
    pushed = 0

    async def push() -> None:
        nonlocal pushed
        block = b"p" * 65536
        with trio.move_on_after(0.5):
            while pushed < offered:
                await writer.send(block)
                pushed += len(block)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(net.pipe, source, dst_send)
            await push()
            assert pushed < offered // 4  # held back by the kernel's buffers
            nursery.cancel_scope.cancel()
    await writer.aclose()
    await source.aclose()


async def test_pipe_without_end_leaves_the_destination_open() -> None:
    left, right = trio.testing.memory_stream_pair()
    source = trio.testing.memory_stream_one_way_pair()
    await source[0].send_all(b"data")
    await source[0].aclose()
    assert await net.pipe(source[1], left, end=False) == 4
    assert await right.receive_some() == b"data"
    await left.send_all(b"still open")
    assert await right.receive_some() == b"still open"


@given(chunks=st.lists(st.binary(min_size=1, max_size=300_000), max_size=8))
@settings(max_examples=25, deadline=None)
def test_pipe_delivers_any_chunking_intact_and_ends_the_destination(chunks: list[bytes]) -> None:
    async def main() -> None:
        source_in, source_out = trio.testing.memory_stream_one_way_pair()
        left, right = trio.testing.memory_stream_pair()
        got = bytearray()

        async def feed() -> None:
            for chunk in chunks:
                await source_in.send_all(chunk)
            await source_in.aclose()

        async def drain() -> None:
            while data := await right.receive_some():  # ends at pipe's EOF
                got.extend(data)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed)
                nursery.start_soon(drain)
                copied = await net.pipe(source_out, left)
        assert copied == sum(map(len, chunks))
        assert got == b"".join(chunks)

    trio.run(main)


# -- net.Socket is a Trio HalfCloseableStream ------------------------------------------
async def _socket_pair() -> tuple[net.Socket, net.Socket]:
    a, b = trio.socket.socketpair()
    return net.Socket(trio.SocketStream(a)), net.Socket(trio.SocketStream(b))


async def _clogged_socket_pair() -> tuple[net.Socket, net.Socket]:
    """A pair whose send_all blocks in both directions until the other side reads."""
    left, right = await _socket_pair()
    for sock in (left, right):
        raw = sock.stream.socket  # type: ignore[attr-defined]
        raw.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, 1)
        raw.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, 1)
    for sender in (left, right):
        async with trio.open_nursery() as filling:

            async def fill(sender: net.Socket = sender) -> None:
                while True:
                    await sender.send(b"x" * 10000)

            filling.start_soon(fill)
            await trio.testing.wait_all_tasks_blocked()
            filling.cancel_scope.cancel()
    return left, right


async def test_socket_passes_trios_half_closeable_stream_checks() -> None:
    with trio.fail_after(30):
        await trio.testing.check_half_closeable_stream(_socket_pair, _clogged_socket_pair)


async def test_the_peers_eof_while_we_send_ends_our_side_after_that_send(
    nursery: trio.Nursery, endpoint: Endpoint
) -> None:
    """Without allow_half_open, a peer's EOF that arrives while another task is in
    the middle of a send ends our side once that send is done (not a BusyResourceError),
    and a later send fails as Node's "write after end" does."""
    outcome: list[BaseException] = []
    reading = trio.Event()

    async def stream_while_reading(sock: net.Socket) -> None:
        async def flood() -> None:
            try:
                while True:
                    await sock.send(b"z" * 65536)
            except trio.ClosedResourceError as exc:
                outcome.append(exc)

        async with trio.open_nursery() as both:
            both.start_soon(flood)
            reading.set()
            assert await read_all(sock) == b""

    server = await nursery.start(endpoint.serve(stream_while_reading))
    with trio.fail_after(10):
        async with await endpoint.connect(server, allow_half_open=True) as sock:
            await reading.wait()
            await trio.sleep(0.1)  # the flood now blocks on a full buffer
            await sock.send_eof()
            total = len(await read_all(sock))
        while server.connections:
            await trio.sleep(0.01)
    assert total > 0
    assert len(outcome) == 1
    assert "ended" in str(outcome[0])


async def test_a_reset_the_handler_does_not_catch_is_one_log_line(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer's RST is the network's doing: logged once at INFO, without a traceback."""
    reading = trio.Event()

    async def read_forever(sock: net.Socket) -> None:
        reading.set()
        await read_all(sock)

    caplog.set_level(logging.INFO, logger="trionet")
    server = await nursery.start(partial(net.serve, read_forever, 0, host=HOST))
    with trio.fail_after(5):
        sock = await net.connect(server.port, HOST)
        await reading.wait()
        await sock.send(b"last words")
        await reset(sock)
        while server.connections:
            await trio.sleep(0.01)
    broken = [
        r for r in caplog.records if r.name.startswith("trionet") and "broken" in r.getMessage()
    ]
    assert len(broken) == 1
    assert broken[0].levelno == logging.INFO and broken[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- send() from many tasks at once (Node's write() from anywhere) --------------------
SENDERS = 20
RECORDS_PER_SENDER = 200
#: Record sizes, cycled: mostly small, some over a TLS record (16 KiB).
RECORD_SIZES = [16, 16, 16, 16, 100, 100, 1500, 17000]
#: One record per sender is this big: over the shrunk send buffer, so it goes out in pieces.
BIG_RECORD = 300_000
#: The send buffer the record tests shrink sockets to (the kernel doubles it).
#: Smaller ones make loopback TCP crawl (a 16 KiB buffer: 10x slower).
SMALL_BUFFER = 65536


def record(task: int, seq: int) -> bytes:
    """Sender ``task``'s record ``seq``: ``task:seq:`` padded with dots to its size, then LF."""
    size = BIG_RECORD if seq == task * 7 % RECORDS_PER_SENDER else RECORD_SIZES[seq % 8]
    head = f"{task}:{seq}:".encode()
    return head + b"." * (size - len(head) - 1) + b"\n"


def shrink_buffer(sock: net.Socket, option: int = stdlib_socket.SO_SNDBUF) -> None:
    """Make ``sock``'s kernel send (or receive) buffer small, so big sends block part-way."""
    raw = raw_socket(sock.stream)
    assert raw is not None
    raw.setsockopt(stdlib_socket.SOL_SOCKET, option, SMALL_BUFFER)


async def send_records_from_many_tasks(sock: net.Socket) -> None:
    """A handler: SENDERS tasks each send their records on ``sock`` at once, then end."""
    shrink_buffer(sock)

    async def sender(task: int) -> None:
        for seq in range(RECORDS_PER_SENDER):
            await sock.send(record(task, seq))

    async with trio.open_nursery() as senders:
        for task in range(SENDERS):
            senders.start_soon(sender, task)
    await sock.send_eof()


async def read_slowly(sock: net.Socket) -> bytes:
    """Everything until EOF, read late and in small pieces, so senders block mid-record."""
    await trio.sleep(0.2)  # every sender is blocked or queued by now
    chunks = []
    while chunk := await sock.receive(4096 if len(chunks) < 500 else 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def check_records(data: bytes) -> None:
    """Every record arrived whole (no other bytes inside it) and each sender's in order."""
    next_seq = [0] * SENDERS
    assert data.endswith(b"\n")
    for line in data[:-1].split(b"\n"):
        fields = line.split(b":")
        assert len(fields) == 3, f"records interleaved: {line[:80]!r}..."
        task, seq = int(fields[0]), int(fields[1])
        assert line + b"\n" == record(task, seq), f"record {task}:{seq} cut or mixed"
        assert seq == next_seq[task], f"sender {task}: record {seq} after {next_seq[task] - 1}"
        next_seq[task] += 1
    assert next_seq == [RECORDS_PER_SENDER] * SENDERS


async def test_many_tasks_sending_at_once_keep_each_record_whole_and_in_order(
    nursery: trio.Nursery, endpoint: Endpoint
) -> None:
    server = await nursery.start(endpoint.serve(send_records_from_many_tasks))
    with trio.fail_after(60):
        async with await endpoint.connect(server) as sock:
            data = await read_slowly(sock)
    check_records(data)


async def test_send_eof_from_another_task_goes_after_the_sends_in_progress(
    nursery: trio.Nursery, endpoint: Endpoint
) -> None:
    """Node's end() follows the writes before it: no BusyResourceError, no bytes lost."""

    async def write_then_end_elsewhere(sock: net.Socket) -> None:
        shrink_buffer(sock)
        async with trio.open_nursery() as tasks:
            tasks.start_soon(sock.send, b"a" * BIG_RECORD)
            await trio.testing.wait_all_tasks_blocked()  # the send is stuck on a full buffer
            tasks.start_soon(sock.send, b"b" * 1000)
            await trio.testing.wait_all_tasks_blocked()
            await sock.send_eof()

    server = await nursery.start(endpoint.serve(write_then_end_elsewhere))
    with trio.fail_after(10):
        async with await endpoint.connect(server) as sock:
            data = await read_slowly(sock)
    assert data == b"a" * BIG_RECORD + b"b" * 1000


async def test_a_send_cancelled_while_it_waits_its_turn_sends_nothing(
    nursery: trio.Nursery, endpoint: Endpoint
) -> None:
    async def cancel_a_waiting_send(sock: net.Socket) -> None:
        shrink_buffer(sock)
        async with trio.open_nursery() as tasks:
            tasks.start_soon(sock.send, b"a" * BIG_RECORD)
            await trio.testing.wait_all_tasks_blocked()
            with trio.move_on_after(0.05) as waited:
                await sock.send(b"never sent")
            assert waited.cancelled_caught
            tasks.start_soon(sock.send, b"b" * 10)  # the queue still works
        await sock.send_eof()

    server = await nursery.start(endpoint.serve(cancel_a_waiting_send))
    with trio.fail_after(10):
        async with await endpoint.connect(server) as sock:
            data = await read_slowly(sock)
    assert data == b"a" * BIG_RECORD + b"b" * 10


async def test_a_second_task_receiving_at_once_gets_busy_resource_error(
    nursery: trio.Nursery, endpoint: Endpoint
) -> None:
    """A Node socket has one reader; trionet keeps Trio's rule for receive (documented)."""
    server = await nursery.start(endpoint.serve(read_all))
    with trio.fail_after(5):
        async with await endpoint.connect(server) as sock, trio.open_nursery() as reader:
            reader.start_soon(sock.receive)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError, match="one reader"):
                await sock.receive()
            reader.cancel_scope.cancel()


async def test_send_all_keeps_trios_one_sender_rule(nursery: trio.Nursery) -> None:
    """send_all (Trio's name) raises BusyResourceError while another task sends; send waits."""
    left, right = await _clogged_socket_pair()
    async with left, right:
        with trio.fail_after(5):
            async with trio.open_nursery() as tasks:
                tasks.start_soon(left.send, b"x")
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(trio.BusyResourceError, match="send\\(\\) lets several"):
                    await left.send_all(b"y")
                tasks.cancel_scope.cancel()


# -- a gone peer is a ConnectError -------------------------------------------------
async def test_send_and_receive_after_close_raise_socket_closed_error(
    nursery: trio.Nursery, endpoint: Endpoint
) -> None:
    server = await nursery.start(endpoint.serve(read_all))
    with trio.fail_after(5):
        sock = await endpoint.connect(server)
        await sock.aclose()
        with pytest.raises(trionet.ConnectError) as sent:
            await sock.send(b"too late")
        with pytest.raises(trionet.ConnectError) as received:
            await sock.receive()
    for info in (sent, received):
        assert isinstance(info.value, net.SocketClosedError)
        assert type(info.value) is not trio.ClosedResourceError
        assert isinstance(info.value, trio.ClosedResourceError)  # Trio code still catches it


async def test_send_after_send_eof_is_nodes_write_after_end(
    nursery: trio.Nursery, endpoint: Endpoint
) -> None:
    server = await nursery.start(endpoint.serve(read_all))
    with trio.fail_after(5):
        async with await endpoint.connect(server) as sock:
            await sock.send_eof()
            with pytest.raises(net.SocketClosedError, match="write after end"):
                await sock.send(b"after the end")


async def test_send_to_a_peer_that_reset_raises_socket_broken_error(
    nursery: trio.Nursery, endpoint: Endpoint
) -> None:
    async def leave_abruptly(sock: net.Socket) -> None:
        await reset(sock)

    server = await nursery.start(endpoint.serve(leave_abruptly))
    with trio.fail_after(5):
        async with await endpoint.connect(server) as sock:
            with pytest.raises(trionet.ConnectError) as info:
                for _ in range(1000):  # the first sends may land before the reset does
                    await sock.send(b"x" * 65536)
                    await trio.sleep(0.001)
    assert isinstance(info.value, net.SocketBrokenError)
    assert info.value.errno in (errno.ECONNRESET, errno.EPIPE)
    assert isinstance(info.value, trio.BrokenResourceError)  # Trio code still catches it


async def test_receive_from_a_peer_that_reset_raises_socket_broken_error(
    nursery: trio.Nursery,
) -> None:
    async def reset_after_hello(sock: net.Socket) -> None:
        await sock.receive(1)
        await reset(sock)

    server = await nursery.start(partial(net.serve, reset_after_hello, 0, host=HOST))
    with trio.fail_after(5):
        async with await net.connect(server.port, HOST) as sock:
            await sock.send(b"hello")
            with pytest.raises(trionet.ConnectError) as info:
                await read_all(sock)
    assert isinstance(info.value, net.SocketBrokenError)
    assert info.value.errno == errno.ECONNRESET
    assert f"read ECONNRESET {HOST}:{server.port}" in str(info.value)


async def test_a_node_style_broadcast_survives_a_client_that_leaves_abruptly(
    nursery: trio.Nursery, endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    """Every handler writes to every other client, as a Node chat server does. Two
    clients flood while a third, which never reads, resets: both handlers write
    to the stuck client at once, then see it vanish, and neither is disconnected."""
    clients: set[net.Socket] = set()

    async def chat(sock: net.Socket) -> None:
        shrink_buffer(sock)
        clients.add(sock)
        try:
            async for chunk in sock:
                for other in list(clients):
                    if other is not sock:
                        try:
                            await other.send(chunk)
                        except trionet.ConnectError:  # that client left; not our problem
                            clients.discard(other)
        finally:
            clients.discard(sock)

    caplog.set_level(logging.INFO, logger="trionet")
    server = await nursery.start(endpoint.serve(chat))
    flood = [b"%d" % i * 1000 for i in range(300)]  # 300 chunks of 1-3 KB: 790 KB
    got = {"a": b"", "b": b""}

    async def talk(name: str, sock: net.Socket) -> None:
        async with trio.open_nursery() as sending:

            async def send_flood() -> None:
                for chunk in flood:
                    await sock.send(chunk)
                await sock.send(b"END")

            sending.start_soon(send_flood)
            while not got[name].endswith(b"END"):
                chunk = await sock.receive()
                assert chunk, f"{name} was disconnected"
                got[name] += chunk

    with trio.fail_after(30):
        a, b, leaver = [await endpoint.connect(server) for _ in range(3)]
        shrink_buffer(leaver, stdlib_socket.SO_RCVBUF)
        while len(clients) < 3:
            await trio.sleep(0.01)
        async with trio.open_nursery() as talking:
            talking.start_soon(talk, "a", a)
            talking.start_soon(talk, "b", b)
            await trio.sleep(0.5)  # both handlers are stuck writing to the leaver
            await reset(leaver)
        assert got["a"] == got["b"] == b"".join(flood) + b"END"
        assert len(clients) == 2  # a and b are still served
        await a.aclose()
        await b.aclose()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_handler_that_lets_another_clients_reset_through_fails_at_error(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """Its own peer's reset is one INFO line; another connection's is the handler's bug."""
    others: list[net.Socket] = []

    async def hold_or_write(sock: net.Socket) -> None:
        if not others:
            others.append(sock)
            await trio.sleep_forever()  # never reads, so the reset is not noticed here
        while True:
            await others[0].send(b"x" * 65536)  # raises once the first client is gone
            await trio.sleep(0.001)

    caplog.set_level(logging.INFO, logger="trionet")
    server = await nursery.start(partial(net.serve, hold_or_write, 0, host=HOST))
    with trio.fail_after(10):
        first = await net.connect(server.port, HOST)
        while not others:
            await trio.sleep(0.01)
        await reset(first)
        second = await net.connect(server.port, HOST)
        while server.connections > 1:
            await trio.sleep(0.01)
        await second.aclose()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "handler" in errors[0].getMessage()
    assert isinstance(errors[0].exc_info[1], net.SocketBrokenError)  # type: ignore[index]


async def test_a_reset_inside_the_handlers_nursery_is_still_one_info_line(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler with a reader and a writer task gets its peer's reset in an exception
    group: still the network's doing, logged once at INFO without a traceback."""
    reading = trio.Event()

    async def read_and_write(sock: net.Socket) -> None:
        async with trio.open_nursery() as tasks:
            tasks.start_soon(trio.sleep_forever)  # a writer waiting for something to send
            reading.set()
            await read_all(sock)

    caplog.set_level(logging.INFO, logger="trionet")
    server = await nursery.start(partial(net.serve, read_and_write, 0, host=HOST))
    with trio.fail_after(5):
        sock = await net.connect(server.port, HOST)
        await reading.wait()
        await sock.send(b"last words")
        await reset(sock)
        while server.connections:
            await trio.sleep(0.01)
    broken = [r for r in caplog.records if "broken" in r.getMessage()]
    assert len(broken) == 1 and broken[0].levelno == logging.INFO
    assert "ECONNRESET" in broken[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
