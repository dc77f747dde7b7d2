"""UDP datagrams per second: trionet.dgram vs raw Trio sockets.

One process over 127.0.0.1: a client sends a 64-byte datagram, the server
echoes it, the client waits for the echo (lock-step, so nothing is lost to a
full receive buffer), and the figure is echoed datagrams per second. trionet's
side is ``dgram.serve`` plus a ``dgram.bind`` client; Trio's side is the same
loop on ``trio.socket`` (``recvfrom``/``sendto``). Rates are per CPU-second of
this process, which holds both ends (see ``_harness.LoopStats.cpu_rate``).
"""

from __future__ import annotations

import socket as _stdlib_socket
from collections.abc import Awaitable, Callable
from functools import partial

import trio
from _harness import LoopStats, Result, compare, load_loop, main

import trionet

HOST = "127.0.0.1"
PAYLOAD = b"d" * 64
#: A lost datagram is re-sent after this long instead of stalling the loop.
RETRY_AFTER = 0.2


async def _trionet(count: int, seconds: float) -> LoopStats:
    async def echo(
        message: bytes, rinfo: trionet.dgram.RemoteInfo, sock: trionet.dgram.UDPSocket
    ) -> None:
        await sock.send(message, (rinfo.address, rinfo.port))

    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(trionet.dgram.serve, echo, 0, host=HOST))
        async with await trionet.dgram.bind(0, HOST) as client:
            await client.connect((HOST, server.port))

            async def ping() -> None:
                while True:
                    await client.send(PAYLOAD)
                    with trio.move_on_after(RETRY_AFTER):
                        await client.receive()
                        return

            stats = await load_loop(ping, max_count=count, max_seconds=seconds)
        server.close()
    return stats


async def _trio(count: int, seconds: float) -> LoopStats:
    server = trio.socket.socket(_stdlib_socket.AF_INET, _stdlib_socket.SOCK_DGRAM)
    client = trio.socket.socket(_stdlib_socket.AF_INET, _stdlib_socket.SOCK_DGRAM)
    with server, client:
        await server.bind((HOST, 0))
        await client.bind((HOST, 0))
        await client.connect(server.getsockname())

        async def echo() -> None:
            while True:
                data, sender = await server.recvfrom(65535)
                await server.sendto(data, sender)

        async def ping() -> None:
            while True:
                await client.send(PAYLOAD)
                with trio.move_on_after(RETRY_AFTER):
                    await client.recvfrom(65535)  # as UDPSocket.receive: data and sender
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            stats = await load_loop(ping, max_count=count, max_seconds=seconds)
            nursery.cancel_scope.cancel()
    return stats


def _rate(
    subject: Callable[[int, float], Awaitable[LoopStats]], count: int, seconds: float
) -> float:
    return trio.run(subject, count, seconds).cpu_rate


def run(quick: bool) -> list[Result]:
    repeats, count, seconds = (2, 3_000, 0.5) if quick else (7, 100_000, 1.5)
    subjects = {
        "trionet": partial(_rate, _trionet, count, seconds),
        "trio": partial(_rate, _trio, count, seconds),
    }
    return compare("udp echo 64 B", "dgrams/cpu-s", subjects, baseline="trio", repeats=repeats)


if __name__ == "__main__":
    main(run, baseline="trio")
