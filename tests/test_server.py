"""trionet._server: the Server lifecycle and listeners every ``serve()`` shares.

Exercised through ``trionet.net.serve``, the thinnest protocol on top of it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import re
import resource
import socket as stdlib_socket
import struct
from functools import partial
from pathlib import Path
from typing import ClassVar

import pytest
import trio
from conftest import open_fds

import trionet.http
from trionet import net
from trionet._accept import Episode
from trionet._listen import open_tcp_listener
from trionet._server import Server, serve_listeners
from trionet._stream import Socket

HOST = "127.0.0.1"


async def echo(sock: net.Socket) -> None:
    await net.pipe(sock, sock)


async def test_server_reports_its_address_and_state(nursery: trio.Nursery) -> None:
    server = await nursery.start(partial(net.serve, echo, 0, host=HOST))
    assert server.address == (HOST, server.port)
    assert isinstance(server.port, int) and server.port > 0
    assert server.connections == 0
    assert repr(server) == f"<trionet Server ('{HOST}', {server.port}) open, 0 connections>"
    with trio.fail_after(5):
        sock = await net.connect(server.port, HOST)
        while not server.connections:
            await trio.sleep(0.01)
        server.close()
        assert repr(server).endswith("closing, 1 connections>")
        await sock.aclose()
        await server.wait_closed()
    assert repr(server).endswith("closed, 0 connections>")


async def test_close_is_idempotent_and_aclose_after_close_returns(
    nursery: trio.Nursery,
) -> None:
    server = await nursery.start(partial(net.serve, echo, 0, host=HOST))
    server.close()
    server.close()
    with trio.fail_after(5):
        await server.aclose()
        await server.aclose(timeout=1)
        await server.wait_closed()
    assert server.closing.is_set()


async def test_wait_closed_waits_for_the_last_connection(nursery: trio.Nursery) -> None:
    server = await nursery.start(partial(net.serve, echo, 0, host=HOST))
    waited = trio.Event()

    async def wait_closed() -> None:
        await server.wait_closed()
        waited.set()

    with trio.fail_after(5):
        sock = await net.connect(server.port, HOST)
        while not server.connections:
            await trio.sleep(0.01)
        server.close()
        nursery.start_soon(wait_closed)
        await sock.send(b"still served")
        assert await sock.receive() == b"still served"
        assert not waited.is_set()
        await sock.aclose()
        await waited.wait()


async def test_a_port_in_use_raises_naming_the_address(nursery: trio.Nursery) -> None:
    server = await nursery.start(partial(net.serve, echo, 0, host=HOST))
    with pytest.raises(OSError) as info:
        await nursery.start(partial(net.serve, echo, server.port, host=HOST))
    assert info.value.errno == errno.EADDRINUSE
    assert f"{HOST}:{server.port}" in str(info.value)


async def test_reuse_port_lets_two_servers_share_a_port(nursery: trio.Nursery) -> None:
    first = await nursery.start(partial(net.serve, echo, 0, host=HOST, reuse_port=True))
    second = await nursery.start(partial(net.serve, echo, first.port, host=HOST, reuse_port=True))
    assert second.port == first.port


@pytest.mark.parametrize("bad", [-1, 65536])
async def test_a_port_out_of_range_is_a_value_error(bad: int) -> None:
    with pytest.raises(ValueError, match="port"):
        await open_tcp_listener(bad, HOST)


async def test_negative_max_connections_is_a_value_error() -> None:
    listener = await open_tcp_listener(0, HOST)
    with pytest.raises(ValueError, match="max_connections"):
        Server([listener.socket], max_connections=-1)
    await listener.aclose()


async def test_port_and_path_together_are_refused() -> None:
    with pytest.raises(ValueError, match="port or path"):
        await net.serve(echo, 8124, path="/tmp/never-created.sock")


async def test_serve_listeners_drives_any_stream_handler(nursery: trio.Nursery) -> None:
    """The building block under every serve(): the handler gets a net.Socket,
    which is a Trio stream, so code written for Trio streams runs as it is."""

    async def shout(stream: trio.abc.Stream) -> None:
        await stream.send_all((await stream.receive_some()).upper())

    listener = await open_tcp_listener(0, HOST)
    server = await nursery.start(partial(serve_listeners, shout, [listener]))
    with trio.fail_after(5):
        async with await trio.open_tcp_stream(HOST, server.port) as stream:
            await stream.send_all(b"hello")
            assert await stream.receive_some() == b"HELLO"
            assert await stream.receive_some() == b""  # closed for the handler


class CountingSocket(Socket):
    """A Socket class of the server's choosing (as tls.serve picks TLSSocket)."""

    made: ClassVar[list[CountingSocket]] = []

    def __init__(self, stream: trio.abc.Stream) -> None:
        super().__init__(stream, allow_half_open=False)
        CountingSocket.made.append(self)


async def test_each_connection_gets_one_socket_from_the_servers_factory(
    nursery: trio.Nursery,
) -> None:
    """Every accepted connection becomes one Socket in one place (where a PROXY
    protocol pre-step will set the client's address), built by ``make_socket``."""
    handled: list[Socket] = []

    async def note(sock: Socket) -> None:
        handled.append(sock)
        await net.pipe(sock, sock)

    CountingSocket.made.clear()
    listener = await open_tcp_listener(0, HOST)
    start = partial(serve_listeners, note, [listener], make_socket=CountingSocket)
    server = await nursery.start(start)
    with trio.fail_after(5):
        for _ in range(2):
            async with await net.connect(server.port, HOST) as client:
                await client.send(b"ping")
                assert await client.receive() == b"ping"
                await client.send_eof()
                assert await client.receive() == b""
    assert handled == CountingSocket.made and len(handled) == 2
    assert all(not sock.allow_half_open for sock in handled)


async def test_an_accepted_socket_knows_its_peer_after_the_peer_reset(
    nursery: trio.Nursery,
) -> None:
    """The address comes from accept(): the kernel forgets a peer that reset, so a
    handler (or its error message) asking only afterwards still gets the answer."""
    addresses: list[object] = []
    reset_done = trio.Event()

    async def late_asker(sock: net.Socket) -> None:
        await reset_done.wait()
        with contextlib.suppress(trio.BrokenResourceError):
            while await sock.receive():
                pass
        addresses.append(sock.remote_address)

    server = await nursery.start(partial(net.serve, late_asker, 0, host=HOST))
    client = stdlib_socket.create_connection((HOST, server.port))
    local = client.getsockname()
    client.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, struct.pack("ii", 1, 0))
    with trio.fail_after(5):
        while not server.connections:
            await trio.sleep(0.01)
        client.close()  # SO_LINGER 0: a reset, not a FIN
        await trio.sleep(0.05)
        reset_done.set()
        while not addresses:
            await trio.sleep(0.01)
    assert addresses == [local]


async def test_run_counted_counts_and_logs_a_failing_job(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    listener = await open_tcp_listener(0, HOST)
    server = Server([listener.socket])
    seen = []

    async def job() -> None:
        seen.append(server.connections)
        raise RuntimeError("job broke")

    caplog.set_level(logging.ERROR, logger="trionet")
    await server.run_counted("test job", job)
    assert seen == [1]
    assert server.connections == 0
    (record,) = caplog.records
    assert record.getMessage() == "test job failed"
    assert isinstance(record.exc_info[1], RuntimeError)  # type: ignore[index]
    await listener.aclose()


async def test_running_out_of_file_descriptors_pauses_accepting_and_logs_once(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """accept() failing with EMFILE is retried, as Trio's serve_listeners does, and
    the episode is two WARNING lines (start, end with the count), not ten ERRORs a second."""
    server = await nursery.start(partial(net.serve, echo, 0, host=HOST))
    clients = [stdlib_socket.socket() for _ in range(3)]
    caplog.set_level(logging.INFO, logger="trionet")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = open_fds()
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (in_use, hard))
        for client in clients:
            client.setblocking(False)
            with contextlib.suppress(BlockingIOError):  # connecting in the background
                client.connect((HOST, server.port))
        with trio.fail_after(5):
            while not any("accept failed" in r.getMessage() for r in caplog.records):
                await trio.sleep(0.01)
        await trio.sleep(0.5)  # ~5 more retries at ACCEPT_BACKOFF
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with trio.fail_after(5):
        while server.connections < 3:
            await trio.sleep(0.01)
    for client in clients:
        client.close()
    lines = [
        r for r in caplog.records if r.name.startswith("trionet") and "accept" in r.getMessage()
    ]
    assert [r.levelno for r in lines] == [logging.WARNING, logging.WARNING]
    assert "accept failed" in lines[0].getMessage()
    ended = lines[1].getMessage()
    match = re.search(r"accepting again after [\d.]+s .*: (\d+) accepts deferred", ended)
    assert match is not None, ended
    assert int(match.group(1)) >= 3
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_an_episode_counts_events_between_its_start_and_its_end() -> None:
    episode = Episode()
    assert episode.clear(now=1.0) == (0, 0.0)  # none under way
    assert episode.hit(now=10.0) is True  # the first event starts it: log
    assert episode.hit(now=10.1) is False
    assert episode.hit(now=10.2) is False
    assert episode.count == 3
    assert episode.clear(now=12.5) == (3, 2.5)  # the end: log the count and duration
    assert episode.count == 0
    assert episode.hit(now=20.0) is True  # a new episode starts afresh


async def test_aclose_with_a_timeout_returns_as_soon_as_connections_end(
    nursery: trio.Nursery,
) -> None:
    server = await nursery.start(partial(net.serve, echo, 0, host=HOST))
    with trio.fail_after(5):
        sock = await net.connect(server.port, HOST)
        while not server.connections:
            await trio.sleep(0.01)
        async with trio.open_nursery() as closer:
            closer.start_soon(partial(server.aclose, timeout=60))
            await trio.sleep(0.05)
            await sock.send(b"still echoed while closing")
            assert await sock.receive() == b"still echoed while closing"
            start = trio.current_time()
            await sock.aclose()
        assert trio.current_time() - start < 2
    assert server.connections == 0


async def test_an_http_request_names_its_client_after_the_client_reset(
    nursery: trio.Nursery,
) -> None:
    """The HTTP server's connection holds the Socket the accept loop made, with
    the address accept() returned: an app that asks late still learns who it was."""
    seen: list[object] = []
    reset_done = trio.Event()

    async def late_app(req: trionet.http.Request, res: trionet.http.Response) -> None:
        await reset_done.wait()
        seen.append((req.remote_address, req.socket.bytes_read > 0))

    server = await nursery.start(partial(trionet.http.serve, late_app, 0, host=HOST))
    client = stdlib_socket.create_connection((HOST, server.port))
    local = client.getsockname()
    client.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    client.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, struct.pack("ii", 1, 0))
    with trio.fail_after(5):
        while not server.connections:
            await trio.sleep(0.01)
        await trio.sleep(0.05)  # the request is read and the app waits
        client.close()  # a reset, not a FIN
        await trio.sleep(0.05)
        reset_done.set()
        while not seen:
            await trio.sleep(0.01)
    assert seen == [(local, True)]


# -- stopping: the listen queue is served, in-flight work finishes -------------------------
async def answer_once(sock: net.Socket) -> None:
    """Reads one message, answers it after a moment, and ends the connection."""
    data = await sock.receive()
    await trio.sleep(0.05)
    await sock.send(b"got " + data)


def _read_until_eof(sock: stdlib_socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(1024):
        data += chunk
    return data


@pytest.mark.parametrize("kind", ["tcp", "unix"])
async def test_close_serves_the_connections_waiting_in_the_listen_queue(
    kind: str, tmp_path: Path
) -> None:
    path = str(tmp_path / "server.sock")
    where = {"host": HOST} if kind == "tcp" else {"path": path}
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(net.serve, answer_once, None, **where))
            clients = []
            for i in range(16):
                # Plain blocking calls: the kernel completes each connection, and no
                # task of ours runs to accept it before close() (no checkpoint here).
                family = stdlib_socket.AF_INET if kind == "tcp" else stdlib_socket.AF_UNIX
                client = stdlib_socket.socket(family, stdlib_socket.SOCK_STREAM)
                client.settimeout(10)
                client.connect((HOST, server.port) if kind == "tcp" else path)
                client.sendall(b"%d" % i)
                clients.append(client)
            server.close()
            answers = [await trio.to_thread.run_sync(_read_until_eof, c) for c in clients]
        # Leaving the nursery: net.serve returned, its connections done.
    for client in clients:
        client.close()
    assert answers == [b"got %d" % i for i in range(16)]
    assert not Path(path).exists()


async def test_a_handler_in_flight_at_close_finishes_and_serve_returns() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(net.serve, answer_once, 0, host=HOST))
            client = await net.connect(server.port, HOST)
            await client.send(b"x")
            while not server.connections:
                await trio.sleep(0.01)
            server.close()
            assert await client.receive() == b"got x"
            assert await client.receive() == b""
            await client.aclose()
        # Leaving the nursery means net.serve returned.
    assert repr(server).endswith("closed, 0 connections>")
