"""Idle WebSocket connection memory: server RSS per connection, trionet beside its peers.

A fan-out server (chat, live prices, notifications) spends most of its memory
on connections that do nothing: 100k subscribers at 19 KiB each is 1.9 GB
(trionet's figure before one task per idle connection; 12.0 KiB with it, and
8.4 KiB since the upgrade hook runs from the HTTP connection's own frame,
``ws.request`` keeps its head packed and the idle wait sits in ``receive()``'s
frame: Node's ``ws`` measured 9.4 in the same run).
This probe opens ``CONNECTIONS`` WebSockets to each echo server of
:mod:`websocket` (the same server code, one process each), makes each do its
handshake and one echo, leaves them all open and idle, and reports the growth
of the server's resident memory divided by the count:

* a warm-up of ``WARM_UP`` connections first, so that allocator arenas, code
  caches and the first-connection costs are not charged to the rest;
* RSS read from ``/proc/<pid>/status`` (Linux), as ``benchmarks/http_server.py``
  does for idle keep-alive HTTP connections (``idle_connection_cost``);
* the client is plain blocking sockets in this process (a handshake and one
  masked 32-byte text frame each, RFC 6455 sections 4.1 and 5.3), so nothing
  of it runs in the measured process.

Subjects: trionet, trio-websocket, the ``websockets`` package (asyncio), Node's
``ws``. RSS growth counts pages, not objects: allocator slack and freed memory
kept for reuse count too, which is what an operator pays for.

    python benchmarks/ws_idle_memory.py [--quick]
"""

from __future__ import annotations

import base64
import os
import socket
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _harness import Result, free_port, main, missing_peers, server_process, skipped  # noqa: E402
from http_server import rss_bytes  # noqa: E402
from websocket import PEERS, _install_peers, _node_ready, server_argv  # noqa: E402

#: Idle connections measured (the issue's figure); --quick opens fewer.
CONNECTIONS = 3000
#: Connections opened before the first RSS reading.
WARM_UP = 100
#: The subjects, the baseline first.
SUBJECTS = ("trio-websocket", "trionet", "websockets", "node-ws")
BASELINE = "trio-websocket"
BENCHMARK = "ws idle connection memory"

#: The opening handshake (RFC 6455 section 4.1); the key is any 16 bytes, base64.
_KEY = base64.b64encode(b"0123456789abcdef").decode()
HANDSHAKE = (
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
).encode()
#: A masked text frame (clients mask, section 5.3) of 32 bytes, all-zero mask key.
PAYLOAD = b"x" * 32
FRAME = bytes([0x81, 0x80 | len(PAYLOAD)]) + b"\0\0\0\0" + PAYLOAD
#: The server's unmasked echo of it.
ECHO = bytes([0x81, len(PAYLOAD)]) + PAYLOAD


def open_idle(port: int, count: int) -> list[socket.socket]:
    """``count`` WebSockets that each did a handshake and one echo, left open."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(HANDSHAKE)
        data = b""
        while b"\r\n\r\n" not in data:
            data += _recv(s)
        head, _, rest = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"handshake refused: {head[:80]!r}")
        s.sendall(FRAME)
        while len(rest) < len(ECHO):
            rest += _recv(s)
        if rest != ECHO:
            raise RuntimeError(f"unexpected echo: {rest[:80]!r}")
        socks.append(s)
    return socks


def _recv(s: socket.socket) -> bytes:
    chunk = s.recv(65536)
    if not chunk:
        raise RuntimeError("the server closed an idle WebSocket")
    return chunk


def idle_cost(pid: int, port: int, count: int) -> float:
    """KiB of server RSS per idle WebSocket (after a warm-up)."""
    warm = open_idle(port, WARM_UP)
    time.sleep(0.3)
    before = rss_bytes(pid)
    socks = open_idle(port, count)
    time.sleep(0.5)  # let the server finish answering before reading its RSS
    after = rss_bytes(pid)
    for s in socks + warm:
        s.close()
    return (after - before) / count / 1024


def run(quick: bool) -> list[Result]:
    """Each subject once (memory is steady, unlike rates); --quick opens 300 connections."""
    _install_peers()
    count = 300 if quick else CONNECTIONS
    failed = missing_peers({"trio-websocket": "trio_websocket", "websockets": "websockets"})
    if not _node_ready():
        failed["node-ws"] = "needs node and npm's ws (tests/peers)"
    results = []
    for subject in SUBJECTS:
        if subject in failed:
            results.append(skipped(BENCHMARK, subject, failed[subject], "KiB/conn"))
            continue
        port = free_port()
        with server_process(server_argv(subject, port), port, cwd=str(PEERS)) as proc:
            cost = idle_cost(proc.pid, port, count)
        results.append(Result(BENCHMARK, subject, cost, "KiB/conn", higher_is_better=False,
                              extra={"connections": count}, baseline=subject == BASELINE))
    return results


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main(run, baseline=BASELINE)
