"""TCP echo throughput (MB/s) and connection rate: trionet.net vs the same loops on raw Trio.

One process, one connection over 127.0.0.1: the client streams chunks while a
second task reads the echo back; the server echoes with ``net.pipe(sock, sock)``
(trionet) or a ``receive_some``/``send_all`` loop (Trio). Figures are MB of
echoed data per CPU-second of this process (both ends run in it, so this is
the code's cost, steady when other processes crowd the machine; on an idle
machine it matches wall-clock MB/s), best of several interleaved runs. A third workload
counts connections per second (connect, echo 4 bytes, close) from 8 clients at
once, which weighs the per-connection cost of ``serve`` and ``Socket``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import trio
from _harness import LoopStats, Result, Stopwatch, compare, concurrent_load, load_loop, main

import trionet

HOST = "127.0.0.1"

# Each workload: (name, chunk size, total bytes full run, total bytes quick run).
WORKLOADS = [
    ("tcp echo 64 KiB chunks", 65536, 512 << 20, 32 << 20),
    ("tcp echo 1 KiB chunks", 1024, 32 << 20, 2 << 20),
]

Send = Callable[[bytes], Awaitable[None]]
Receive = Callable[[], Awaitable[bytes]]


async def _drive(
    send: Send,
    send_eof: Callable[[], Awaitable[None]],
    receive: Receive,
    chunk: int,
    total: int,
    seconds: float,
) -> LoopStats:
    """Stream ``total`` bytes (or for ``seconds``) and read the echo; returns bytes echoed."""
    data = b"x" * chunk
    received = 0
    watch = Stopwatch()

    async def sender() -> None:
        await load_loop(partial(send, data), max_count=total // chunk, max_seconds=seconds)
        await send_eof()

    with trio.fail_after(seconds * 4 + 10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            while piece := await receive():
                received += len(piece)
    return watch.stats(received)


async def _trionet(chunk: int, total: int, seconds: float) -> LoopStats:
    async def echo(sock: trionet.net.Socket) -> None:
        await trionet.net.pipe(sock, sock)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(trionet.net.serve, echo, 0, host=HOST))
        sock = await trionet.net.connect(server.port, HOST)
        async with sock:
            stats = await _drive(sock.send, sock.send_eof, sock.receive, chunk, total, seconds)
        server.close()
    return stats


async def _trio(chunk: int, total: int, seconds: float) -> LoopStats:
    async def echo(stream: trio.SocketStream) -> None:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)
        await stream.send_eof()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, echo, 0, host=HOST))
        port = listeners[0].socket.getsockname()[1]
        stream = await trio.open_tcp_stream(HOST, port)
        async with stream:
            stats = await _drive(
                stream.send_all,
                stream.send_eof,
                partial(stream.receive_some, 65536),
                chunk,
                total,
                seconds,
            )
        nursery.cancel_scope.cancel()
    return stats


def _mb_per_s(
    subject: Callable[[int, int, float], Awaitable[LoopStats]],
    chunk: int,
    total: int,
    seconds: float,
) -> float:
    stats = trio.run(subject, chunk, total, seconds)
    return stats.cpu_rate / 1e6


# -- connections per second: accept, one echo, close -------------------------------
#: Clients connecting at once in the connection-rate workload.
CONCURRENCY = 8


async def _trionet_connections(count: int, seconds: float) -> LoopStats:
    async def echo(sock: trionet.net.Socket) -> None:
        await trionet.net.pipe(sock, sock)

    async def one() -> None:
        async with await trionet.net.connect(server.port, HOST) as sock:
            await sock.send(b"ping")
            await sock.send_eof()
            while await sock.receive():
                pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(trionet.net.serve, echo, 0, host=HOST))
        stats = await concurrent_load(
            one, concurrency=CONCURRENCY, max_count=count, max_seconds=seconds
        )
        server.close()
    return stats


async def _trio_connections(count: int, seconds: float) -> LoopStats:
    async def echo(stream: trio.SocketStream) -> None:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)
        await stream.send_eof()

    async def one() -> None:
        async with await trio.open_tcp_stream(HOST, port) as stream:
            await stream.send_all(b"ping")
            await stream.send_eof()
            while await stream.receive_some(65536):
                pass

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, echo, 0, host=HOST))
        port = listeners[0].socket.getsockname()[1]
        stats = await concurrent_load(
            one, concurrency=CONCURRENCY, max_count=count, max_seconds=seconds
        )
        nursery.cancel_scope.cancel()
    return stats


def _per_s(
    subject: Callable[[int, float], Awaitable[LoopStats]], count: int, seconds: float
) -> float:
    return trio.run(subject, count, seconds).cpu_rate


def run(quick: bool) -> list[Result]:
    repeats, seconds = (2, 0.5) if quick else (5, 3.0)
    results: list[Result] = []
    for name, chunk, full_total, quick_total in WORKLOADS:
        total = quick_total if quick else full_total
        subjects = {
            "trionet": partial(_mb_per_s, _trionet, chunk, total, seconds),
            "trio": partial(_mb_per_s, _trio, chunk, total, seconds),
        }
        results += compare(name, "MB/cpu-s", subjects, baseline="trio", repeats=repeats)
    count = 400 if quick else 20_000
    connections = {
        "trionet": partial(_per_s, _trionet_connections, count, seconds),
        "trio": partial(_per_s, _trio_connections, count, seconds),
    }
    name = f"tcp connect+echo+close x{CONCURRENCY}"
    results += compare(name, "conns/cpu-s", connections, baseline="trio", repeats=repeats)
    return results


if __name__ == "__main__":
    main(run, baseline="trio")
