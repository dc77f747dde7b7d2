"""HTTP/1.1 server: hello world over keep-alive, trionet vs its peers.

Every subject serves the same response (``200``, ``Content-Type: text/plain``,
``Hello World\\n``) from its own process pinned to one core (``taskset``);
the load generator runs on another core. Subjects:

* ``trionet``: ``trionet.http.serve``.
* ``trio+h11``: a minimal hand-written Trio + h11 loop (below), the baseline:
  the framework should cost nothing over the bare state machine.
* ``hypercorn-trio``: hypercorn with its Trio worker, an ASGI hello world.
* ``uvicorn-h11``: uvicorn with its h11 protocol (asyncio).
* ``node``: Node's ``http.createServer``.

Load: ``wrk -t1 -c50`` (install: ``apt-get install wrk``); without wrk, a
bundled Python load generator drives the same keep-alive load (slower, so
only the ratios compare). Figures: requests per second, p50 and p99 latency.

Two more figures: the server's CPU time per request during the same run
(user + system, from /proc; steadier than req/s on a shared machine, where
other processes take the server's core), and the memory an idle keep-alive
connection costs: RSS growth over 500 connections that each made one request
and then sit idle, divided by 500.

The last run's figures are in docs/benchmarks.md (``trionet bench
--update-docs`` writes them there), with what profiling this server showed and
what was done about it: figures written here would go stale unseen.

    python benchmarks/http_server.py [--quick]
    python benchmarks/http_server.py --serve trionet PORT    # one server, for profiling
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _harness import (
    Result,
    free_port,
    main,
    missing_peers,
    run_wrk,
    server_process,
    skipped,
    wrk_rate,
)

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
BODY = b"Hello World\n"
#: Connections the load generator keeps open (the issue's wrk -c50).
CONNECTIONS = 50
#: Idle keep-alive connections opened for the memory figure.
IDLE_CONNECTIONS = 500
#: Keep-alive timeout given to every server, longer than any measurement.
KEEP_ALIVE_SECONDS = 120
SERVER_CORE = "0"
LOAD_CORE = "1"


# -- the servers, each run as ``python http_server.py --serve NAME PORT`` ---------------
def serve_trionet(port: int) -> None:
    import trio

    import trionet

    async def app(req: trionet.http.Request, res: trionet.http.Response) -> None:
        res.set_header("Content-Type", "text/plain")
        await res.end(BODY)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                _partial(trionet.http.serve, app, port, host=HOST,
                         keep_alive_timeout=KEEP_ALIVE_SECONDS)
            )

    trio.run(run)


def serve_trio_h11(port: int) -> None:
    """The baseline: the smallest correct keep-alive loop on Trio and h11."""
    import h11
    import trio

    headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]

    async def handle(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif type(event) is h11.EndOfMessage:
                data = conn.send(h11.Response(status_code=200, headers=headers))
                data += conn.send(h11.Data(data=BODY))
                data += conn.send(h11.EndOfMessage())
                await stream.send_all(data)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
            elif type(event) is not h11.Request:
                return  # ConnectionClosed, or anything unexpected

    async def guarded(stream: trio.SocketStream) -> None:
        with contextlib.suppress(h11.RemoteProtocolError, trio.BrokenResourceError):
            await handle(stream)

    trio.run(_partial(trio.serve_tcp, guarded, port, host=HOST))


async def _asgi_hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[1]  # "startup" / "shutdown"
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", b"%d" % len(BODY))]})
    await send({"type": "http.response.body", "body": BODY})


def serve_hypercorn_trio(port: int) -> None:
    import hypercorn.trio
    import trio
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{HOST}:{port}"]
    config.keep_alive_timeout = KEEP_ALIVE_SECONDS
    config.accesslog = None
    trio.run(hypercorn.trio.serve, _asgi_hello, config)


def serve_uvicorn_h11(port: int) -> None:
    import uvicorn

    uvicorn.run(_asgi_hello, host=HOST, port=port, http="h11", loop="asyncio",
                log_level="warning", access_log=False,
                timeout_keep_alive=KEEP_ALIVE_SECONDS)


NODE_SERVER = """
const http = require('http');
const server = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'text/plain');
  res.end('Hello World\\n');
});
server.keepAliveTimeout = Number(process.argv[2]);
server.listen(Number(process.argv[1]), '127.0.0.1');
"""

SERVERS: dict[str, Callable[[int], None]] = {
    "trionet": serve_trionet,
    "trio+h11": serve_trio_h11,
    "hypercorn-trio": serve_hypercorn_trio,
    "uvicorn-h11": serve_uvicorn_h11,
}


def _partial(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from functools import partial

    return partial(fn, *args, **kwargs)


def server_argv(name: str, port: int) -> list[str]:
    pin = ["taskset", "-c", SERVER_CORE] if shutil.which("taskset") else []
    if name == "node":
        return [*pin, "node", "-e", NODE_SERVER, str(port), str(KEEP_ALIVE_SECONDS * 1000)]
    return [*pin, sys.executable, str(Path(__file__).resolve()), "--serve", name, str(port)]


#: The peers that need the ``bench`` extra, and the module each imports.
PEER_MODULES = {"hypercorn-trio": "hypercorn", "uvicorn-h11": "uvicorn"}


def subjects() -> list[str]:
    """The servers that can run here: ours, and each peer that is installed."""
    missing = missing_peers(PEER_MODULES)
    names = [name for name in SERVERS if name not in missing]
    if shutil.which("node"):
        names.append("node")
    return names


# -- load ---------------------------------------------------------------------------------
def wrk_load(port: int, seconds: float) -> tuple[float, float, float]:
    """``wrk -t1 -c50`` for ``seconds``: (req/s, p50 ms, p99 ms)."""
    out = run_wrk(f"http://{HOST}:{port}/", seconds, connections=CONNECTIONS, core=LOAD_CORE,
                  latency=True)
    return wrk_rate(out), _wrk_latency(out, "50%"), _wrk_latency(out, "99%")


def _wrk_latency(out: str, label: str) -> float:
    match = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if match is None:
        return float("nan")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
    return float(match.group(1)) * scale


def python_load(port: int, seconds: float) -> tuple[float, float, float]:
    """The fallback load generator: 50 keep-alive connections from Trio, same figures."""
    import trio

    request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    latencies: list[float] = []

    async def client(deadline: float) -> None:
        stream = await trio.open_tcp_stream(HOST, port)
        async with stream:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                await stream.send_all(request)
                data = b""
                while BODY not in data:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    data += chunk
                latencies.append(time.perf_counter() - start)

    async def run() -> float:
        start = time.perf_counter()
        with trio.move_on_after(seconds * 2 + 10):
            async with trio.open_nursery() as nursery:
                for _ in range(CONNECTIONS):
                    nursery.start_soon(client, start + seconds)
        return time.perf_counter() - start

    elapsed = trio.run(run)
    latencies.sort()
    if not latencies:
        return 0.0, float("nan"), float("nan")

    def percentile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return len(latencies) / elapsed, percentile(0.50), percentile(0.99)


def load(port: int, seconds: float) -> tuple[float, float, float]:
    return wrk_load(port, seconds) if shutil.which("wrk") else python_load(port, seconds)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(pid: int, port: int, seconds: float) -> tuple[float, float, float, float]:
    """Load the server: (req/s, p50 ms, p99 ms, server CPU microseconds per request).

    CPU time per request is the steadier figure on a shared machine: other
    processes taking the server's core lower its req/s, not its CPU per request.
    """
    cpu = cpu_seconds(pid)
    rate, p50, p99 = load(port, seconds)
    used = cpu_seconds(pid) - cpu
    requests = rate * max(1, round(seconds))
    return rate, p50, p99, used / requests * 1e6 if requests else float("nan")


# -- memory -------------------------------------------------------------------------------
def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its children (taskset execs, so usually one)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) * 1024  # type: ignore[union-attr]


def idle_connection_cost(pid: int, port: int, count: int = IDLE_CONNECTIONS) -> float:
    """KiB of server RSS per idle keep-alive connection (each made one request)."""
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    warm = _open_idle(port, request, 50)  # let allocators and caches settle first
    time.sleep(0.2)
    before = rss_bytes(pid)
    socks = _open_idle(port, request, count)
    time.sleep(0.3)
    after = rss_bytes(pid)
    for s in socks + warm:
        s.close()
    return (after - before) / count / 1024


def _open_idle(port: int, request: bytes, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.create_connection((HOST, port), timeout=10)
        s.sendall(request)
        data = b""
        while BODY not in data:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("server closed a keep-alive connection")
            data += chunk
        socks.append(s)
    return socks


#: The headline benchmark's name in the results table.
BENCHMARK = "http hello keep-alive"


# -- the benchmark -------------------------------------------------------------------------
def run(quick: bool) -> list[Result]:
    # --quick is a smoke run inside `trionet bench --quick` (a minute for all
    # benchmarks): one second of load per subject, no warm-up, fewer idle sockets.
    seconds = 1.0 if quick else 5.0
    repeats = 1 if quick else 3
    idle = 200 if quick else IDLE_CONNECTIONS
    names = subjects()
    best: dict[str, tuple[float, float, float, float]] = {}
    memory: dict[str, float] = {}
    tool = "wrk" if shutil.which("wrk") else "python"
    for _ in range(repeats):  # interleaved runs; keep each subject's best
        for name in names:
            port = free_port()
            with server_process(server_argv(name, port), port) as proc:
                if not quick:
                    load(port, 1)  # warm up
                figures = measure(proc.pid, port, seconds)
                if name not in memory:
                    memory[name] = idle_connection_cost(proc.pid, port, idle)
            if name not in best or figures[0] > best[name][0]:
                best[name] = figures
    results = []
    for name in names:
        rate, p50, p99, _ = best[name]
        results.append(Result(
            BENCHMARK, name, rate, "req/s",
            extra={"p50_ms": p50, "p99_ms": p99, "load": tool, "runs": repeats},
            baseline=name == "trio+h11",
        ))
    for name in names:
        results.append(Result(
            "http hello server CPU", name, best[name][3], "us/req",
            higher_is_better=False, baseline=name == "trio+h11",
        ))
    for name in names:
        results.append(Result(
            "http idle keep-alive memory", name, memory[name], "KiB/conn",
            higher_is_better=False, baseline=name == "trio+h11",
        ))
    missing = missing_peers(PEER_MODULES)
    return results + [skipped(BENCHMARK, name, why, "req/s") for name, why in missing.items()]


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        sys.path.insert(0, str(HERE.parent))
        os.environ.setdefault("PYTHONHASHSEED", "0")
        SERVERS[sys.argv[2]](int(sys.argv[3]))
    else:
        main(run, baseline="trio+h11")
