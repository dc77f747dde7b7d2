"""The Agent's promises on real sockets (its pure assignment rules: tests/test_pool.py)."""

from __future__ import annotations

import gc
import random
import socket
import struct
from functools import partial

import pytest
import trio
import trio.testing
from conftest import open_fds
from http_client_support import ConnectionStats, Gate, serve_h11, serve_raw

import trionet
from trionet import http
from trionet.agent import Agent


# -- the Agent on real sockets --------------------------------------------------------------
def url(port: int, path: str = "/") -> str:
    return f"http://127.0.0.1:{port}{path}"


async def slow_hello(request: object, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    await trio.sleep(0.05)
    return 200, [], b"hello"


async def test_seed_ten_requests_through_the_default_agent_use_five_connections() -> None:
    """The seed: 10 concurrent requests, global agent, at most 5 on the wire."""
    assert http.global_agent.max_sockets == 5
    gate = Gate()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, stats = await serve_h11(nursery, gate)
            statuses: list[int] = []

            async def get() -> None:
                statuses.append((await http.request(url(port))).status)

            async with trio.open_nursery() as clients:
                for _ in range(10):
                    clients.start_soon(get)
                await gate.reached(5)  # five requests are on the server now
                await trio.testing.wait_all_tasks_blocked()
                name = f"127.0.0.1:{port}"
                assert http.global_agent.sockets == {name: 5}
                assert http.global_agent.requests == {name: 5}
                assert stats.open == 5
                gate.open()
            assert statuses == [200] * 10
            assert stats.max_open == 5 and stats.total == 5
            assert http.global_agent.free_sockets == {name: 5}
            assert http.global_agent.requests == {}
            await http.global_agent.aclose()
            nursery.cancel_scope.cancel()


async def test_ten_thousand_requests_from_200_tasks_reuse_exactly_five_connections() -> None:
    """Against trionet's own server: it never sees more than 5 connections, 5 in all."""
    sockets: set[int] = set()
    most = 0
    server: trionet.net.Server

    async def app(req: http.Request, res: http.Response) -> None:
        nonlocal most
        sockets.add(id(req.socket))
        most = max(most, server.connections)
        await res.end(b"hello")

    agent = Agent(max_sockets=5)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(http.serve, app, 0, host="127.0.0.1"))
            fds_before = open_fds()
            remaining = 10_000
            done = 0

            async def worker() -> None:
                nonlocal remaining, done
                while remaining > 0:
                    remaining -= 1
                    res = await http.request(url(server.port), agent=agent)
                    assert res.body == b"hello"
                    done += 1

            async with trio.open_nursery() as clients:
                for _ in range(200):
                    clients.start_soon(worker)
            assert done == 10_000
            assert most == 5 and len(sockets) == 5
            # 5 idle client sockets plus the 5 server sides: nothing else leaked.
            assert open_fds() - fds_before == 10
            await agent.aclose()
            await trio.sleep(0.05)  # let the server see the EOFs
            assert agent.free_sockets == {} and server.connections == 0
            gc.collect()
            assert open_fds() <= fds_before
            nursery.cancel_scope.cancel()


async def test_queued_request_cancelled_leaves_the_queue_at_once() -> None:
    agent = Agent(max_sockets=1)
    gate = Gate()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, _ = await serve_h11(nursery, gate)
            name = f"127.0.0.1:{port}"
            nursery.start_soon(lambda: http.request(url(port), agent=agent))
            await gate.reached(1)
            async with trio.open_nursery() as waiters:
                waiters.start_soon(lambda: http.request(url(port), agent=agent))
                waiters.start_soon(lambda: http.request(url(port), agent=agent))
                await trio.testing.wait_all_tasks_blocked()
                assert agent.requests == {name: 2}
                waiters.cancel_scope.cancel()
            assert agent.requests == {}
            gate.open()
            # The pool is intact: the next request is served.
            assert (await http.request(url(port), agent=agent)).status == 200
            assert agent.sockets == {} and agent.free_sockets == {name: 1}
            nursery.cancel_scope.cancel()


async def test_pool_timeout_names_the_host_and_the_queue() -> None:
    async def stuck(request: object, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        await trio.sleep(5)
        return 200, [], b""

    agent = Agent(max_sockets=1, pool_timeout=0.05)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, _ = await serve_h11(nursery, stuck)
            nursery.start_soon(lambda: http.request(url(port), agent=agent))
            await trio.sleep(0.01)
            with pytest.raises(trionet.PoolTimeout) as info:
                await http.request(url(port), agent=agent)
            assert f"127.0.0.1:{port}" in str(info.value)
            assert "queued" in str(info.value)
            assert agent.requests == {}
            nursery.cancel_scope.cancel()


async def test_max_total_sockets_caps_all_hosts_together() -> None:
    agent = Agent(max_sockets=5, max_total_sockets=2)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port_a, stats_a = await serve_h11(nursery, slow_hello)
            port_b, stats_b = await serve_h11(nursery, slow_hello)
            most = 0
            statuses: list[int] = []

            async def get(port: int) -> None:
                statuses.append((await http.request(url(port), agent=agent)).status)

            async with trio.open_nursery() as clients:
                for port in (port_a, port_b) * 3:
                    clients.start_soon(get, port)
                while len(statuses) < 6:
                    open_now = sum(agent.sockets.values()) + sum(agent.free_sockets.values())
                    most = max(most, open_now)
                    await trio.sleep(0.001)
            assert statuses == [200] * 6
            assert most == 2
            assert stats_a.total >= 1 and stats_b.total >= 1  # both hosts were served
            nursery.cancel_scope.cancel()


async def test_keep_alive_hint_from_the_server_is_honoured() -> None:
    """Keep-Alive: timeout=1 leaves no time after the 1 s margin: never reused."""

    def short(request: object, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        return 200, [("keep-alive", "timeout=1")], b"x"

    agent = Agent()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, stats = await serve_h11(nursery, short)
            await http.request(url(port), agent=agent)
            assert agent.free_sockets == {}
            await http.request(url(port), agent=agent)
            assert stats.total == 2
            nursery.cancel_scope.cancel()


async def test_keep_alive_false_closes_every_connection() -> None:
    agent = Agent(keep_alive=False)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, stats = await serve_h11(nursery, keep_requests=True)
            for _ in range(3):
                await http.request(url(port), agent=agent)
            assert stats.total == 3
            assert all(dict(r.headers)[b"connection"] == b"close" for r in stats.seen)
            nursery.cancel_scope.cancel()


async def test_repr_shows_each_host() -> None:
    agent = Agent(max_sockets=2)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, _ = await serve_h11(nursery)
            await http.request(url(port), agent=agent)
            assert repr(agent) == (
                f"<trionet.agent.Agent max_sockets=2 keep_alive=True "
                f"[127.0.0.1:{port}: 0 busy, 1 free, 0 queued]>"
            )
            nursery.cancel_scope.cancel()


def test_agent_survives_across_trio_runs() -> None:
    """global_agent outlives trio.run: the second run starts with a clean pool."""
    agent = Agent()
    seen: list[ConnectionStats] = []

    async def once() -> None:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                port, stats = await serve_h11(nursery)
                seen.append(stats)
                assert (await http.request(url(port), agent=agent)).status == 200
                nursery.cancel_scope.cancel()

    trio.run(once)
    trio.run(once)
    assert [s.total for s in seen] == [1, 1]


async def test_aclose_closes_idle_now_and_busy_when_their_response_ends() -> None:
    agent = Agent()
    gate = Gate()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, stats = await serve_h11(nursery, gate)
            name = f"127.0.0.1:{port}"
            async with trio.open_nursery() as clients:
                clients.start_soon(lambda: http.request(url(port), agent=agent))
                clients.start_soon(lambda: http.request(url(port), agent=agent))
                await gate.reached(2)
                assert agent.sockets == {name: 2}
                await agent.aclose()
                gate.open()
            assert agent.sockets == {} and agent.free_sockets == {}
            # Still usable afterwards, as Node's agent after destroy().
            assert (await http.request(url(port), agent=agent)).status == 200
            assert agent.free_sockets == {name: 1} and stats.total == 3
            nursery.cancel_scope.cancel()


async def test_random_cancellations_leave_the_pool_consistent() -> None:
    """Requests cancelled at random points (queued, connecting, mid-response):
    afterwards nothing is busy or queued, the pool still works, no fd is left."""
    import random

    rng = random.Random(4)

    async def jittery(request: object, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        await trio.sleep(rng.random() * 0.004)
        return 200, [], b"x" * rng.randrange(1, 70000)

    agent = Agent(max_sockets=3)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port, stats = await serve_h11(nursery, jittery)
            fds_before = open_fds()
            completed = cancelled = 0

            async def worker() -> None:
                nonlocal completed, cancelled
                for _ in range(20):
                    with trio.move_on_after(rng.random() * 0.05) as scope:
                        await http.request(url(port), agent=agent)
                        completed += 1
                    cancelled += scope.cancelled_caught

            async with trio.open_nursery() as clients:
                for _ in range(30):
                    clients.start_soon(worker)
            assert completed > 0 and cancelled > 0
            assert agent.sockets == {} and agent.requests == {}
            assert stats.max_open <= 3 + 3  # closed-by-cancel ones may linger server-side
            assert (await http.request(url(port), agent=agent)).status == 200
            await agent.aclose()
            await trio.sleep(0.1)
            gc.collect()
            assert open_fds() <= fds_before
            nursery.cancel_scope.cancel()


# -- the cap under churn, counted by the server ----------------------------------------------
#: ``tcpi_state`` of an ESTABLISHED connection (Linux include/net/tcp_states.h):
#: once the client closes its end, the server's end is CLOSE_WAIT or CLOSED.
TCP_ESTABLISHED = 1


def established(sock: trio.socket.SocketType) -> bool:
    """Is this server-side connection still open at the client's end?"""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == TCP_ESTABLISHED


class ChurningServer:
    """HTTP/1.1 keep-alive server that closes connections under the client's feet.

    At every accept it counts its connections that are still ESTABLISHED (the
    client has not closed them) and keeps the most. After a response it closes
    one connection in ten a moment later without warning (the client finds it
    dead while idle, or sends its next request into the close); every 150th
    request is reset half-way through its body; ``/slow`` sends half a body
    and then waits for the client to give up.
    """

    BODY = b"x" * 2000

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.streams: set[trio.SocketStream] = set()
        self.most = 0
        self.accepted = 0
        self.requests = 0
        self.idle_closes = 0
        self.resets = 0

    async def run(self, listener: trio.SocketListener) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                stream = await listener.accept()
                self.accepted += 1
                self.streams.add(stream)
                now_open = sum(established(s.socket) for s in self.streams)
                self.most = max(self.most, now_open)
                nursery.start_soon(self._serve, stream)

    async def _serve(self, stream: trio.SocketStream) -> None:
        head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(self.BODY)
        buffered = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffered:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffered += data
                request, _, buffered = buffered.partition(b"\r\n\r\n")
                self.requests += 1
                if request.startswith(b"GET /slow "):
                    await stream.send_all(head + self.BODY[:1000])
                    with trio.move_on_after(5):
                        await stream.receive_some(65536)  # the client's close
                    return
                if self.requests % 150 == 0:
                    await stream.send_all(head + self.BODY[:1000])
                    linger = struct.pack("ii", 1, 0)  # close() sends RST
                    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    self.resets += 1
                    return
                await stream.send_all(head + self.BODY)
                if self.rng.random() < 0.1:
                    await trio.sleep(self.rng.random() * 0.002)
                    self.idle_closes += 1
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.streams.discard(stream)
            stream.socket.close()


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="reads TCP states (Linux)")
async def test_max_sockets_caps_open_connections_while_the_server_churns() -> None:
    """issue 11 §1: 100 tasks x 30 GETs through Agent(max_sockets=4), 10 of them
    cancelled mid-response, the server closing kept-alive connections at random
    and resetting some mid-response. The server never has more than 4 open,
    and the requests not cancelled succeed (the stale ones retried)."""
    rng = random.Random(11)
    server = ChurningServer(rng)
    agent = Agent(max_sockets=4)
    ok = failed = cancelled = 0
    client_most = 0
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listener.socket.getsockname()[1]
            name = f"127.0.0.1:{port}"
            nursery.start_soon(server.run, listener)

            async def client(task: int) -> None:
                nonlocal ok, failed, cancelled
                for i in range(30):
                    if task < 10 and i == 15:
                        with trio.move_on_after(0.1) as scope:
                            await http.request(url(port, "/slow"), agent=agent)
                        assert scope.cancelled_caught
                        cancelled += 1
                        continue
                    try:
                        res = await http.request(url(port), agent=agent)
                    except (trionet.ConnectError, trionet.ProtocolError):
                        failed += 1
                    else:
                        assert res.status == 200 and res.body == ChurningServer.BODY
                        ok += 1

            async def watch_the_client() -> None:
                nonlocal client_most
                while True:
                    in_pool = agent.sockets.get(name, 0) + agent.free_sockets.get(name, 0)
                    client_most = max(client_most, in_pool)
                    await trio.sleep(0.001)

            nursery.start_soon(watch_the_client)
            async with trio.open_nursery() as clients:
                for task in range(100):
                    clients.start_soon(client, task)
            nursery.cancel_scope.cancel()
    await agent.aclose()
    # The churn really happened: connections were replaced many times over.
    assert server.idle_closes > 50 and server.resets > 5 and server.accepted > 100
    assert cancelled == 10 and ok + failed == 100 * 30 - 10
    assert server.most <= 4 and client_most <= 4
    # Only the resets mid-response fail; every stale connection was retried.
    assert failed <= server.resets
    assert ok >= 0.99 * (ok + failed)


# -- the agent's side of the interface: any connection, any opener ----------------------------
class EchoOrigin:
    """Where an echo connection goes: what :class:`trionet.agent.PoolOrigin` asks."""

    def __init__(self, port: int) -> None:
        self.port = port

    @property
    def name(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, 0)


class EchoConnection:
    """A pooled connection of no HTTP at all: what :class:`trionet.agent.PooledConnection` asks."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.generation = 0
        self.serial = 0
        self.keep_alive_hint: float | None = None

    def looks_alive(self) -> bool:
        return self.stream.socket.fileno() != -1

    def close(self) -> None:
        self.stream.socket.close()

    def close_foreign(self) -> None:
        self.stream.socket.close()


async def test_the_agent_pools_any_connection_its_caller_opens() -> None:
    """The agent knows connections only through PooledConnection and gets the opener
    from its caller (the HTTP client passes ``open_connection``): one connection,
    opened once, reused, numbered, closed by ``aclose``."""
    opened: list[EchoConnection] = []

    async def open_echo(origin: EchoOrigin) -> EchoConnection:
        conn = EchoConnection(await trio.open_tcp_stream("127.0.0.1", origin.port))
        opened.append(conn)
        return conn

    async def echo(sock: trionet.net.Socket) -> None:
        while data := await sock.receive():
            await sock.send(data)

    agent = Agent(max_sockets=1)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            origin = EchoOrigin(await serve_raw(nursery, echo))
            for word in (b"one", b"two"):
                slot = await agent.acquire(origin, opener=open_echo)
                await slot.conn.stream.send_all(word)
                assert await slot.conn.stream.receive_some(100) == word
                agent.release(slot)
                assert agent.free_sockets == {origin.name: 1}
            assert len(opened) == 1 and opened[0].serial == 1 and slot.reused
            await agent.aclose()
            assert agent.free_sockets == {} and not opened[0].looks_alive()
            nursery.cancel_scope.cancel()
