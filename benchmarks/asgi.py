"""ASGI servers: a raw ASGI hello and a Starlette JSON app, trionet vs its peers.

The same two apps run on every subject, each in its own process pinned to
one core (``taskset``), loaded by ``wrk -t1 -c50`` from another core:

* ``hello``: a raw ASGI app answering ``Hello World\\n`` (the server's own cost).
* ``starlette-json``: a Starlette route returning ``JSONResponse({"hello": "world"})``
  (what a FastAPI/Starlette user gets).
* ``starlette-ws``: a Starlette WebSocket endpoint echoing text, loaded by the
  Node ``ws`` client of benchmarks/websocket.py (its ``ws echo 32B x50``
  workload: 50 connections, each sending 32 bytes and waiting for the echo,
  for a fixed time). Only trionet and hypercorn-trio: uvicorn runs on asyncio,
  and the question is which server a Trio user picks for a WebSocket app.

Subjects: ``trionet`` (:func:`trionet.asgi.serve`, access log off),
``hypercorn-trio`` (hypercorn's Trio worker), ``uvicorn-h11`` and
``uvicorn-httptools`` (asyncio; httptools is a C parser, reported beside).
Figures: requests per second, the server's CPU microseconds per request
(steadier on a shared machine), and for ``hello`` the RSS an idle keep-alive
connection costs; for ``starlette-ws`` messages per second and per server
CPU-second. The issue's targets: >= 5x hypercorn-trio and >= 1.5x
uvicorn-h11 on both apps; idle connection <= 8 KiB.

    python benchmarks/asgi.py [--quick]
    python benchmarks/asgi.py --serve trionet hello PORT    # one server, for profiling
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from _harness import Result, free_port, main, missing_peers, server_process, skipped
from http_server import CONNECTIONS, HOST, KEEP_ALIVE_SECONDS, SERVER_CORE, idle_connection_cost
from http_server import load as wrk_load
from http_server import measure as measure_load
from websocket import ECHO_CONNECTIONS, ECHO_SIZE, cpu_seconds
from websocket import _node_ready as node_ready
from websocket import load as ws_load

HERE = Path(__file__).resolve().parent
BODY = b"Hello World\n"


# -- the apps ------------------------------------------------------------------------------
async def hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", b"%d" % len(BODY))]})  # fmt: skip
    await send({"type": "http.response.body", "body": BODY})


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def index(request: Any) -> JSONResponse:
        return JSONResponse({"hello": "world"})

    return Starlette(routes=[Route("/", index)])


def starlette_ws_app() -> Any:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(text)

    return Starlette(routes=[WebSocketRoute("/", echo)])


APPS: dict[str, Callable[[], Any]] = {
    "hello": lambda: hello_app,
    "starlette-json": starlette_app,
    "starlette-ws": starlette_ws_app,
}
#: The HTTP apps wrk loads; ``starlette-ws`` has its own loop (:func:`run_ws`).
HTTP_APPS = ("hello", "starlette-json")
#: The servers a Trio user chooses between for a WebSocket app.
WS_SERVERS = ("trionet", "hypercorn-trio")
WS_ECHO = f"asgi starlette ws echo {ECHO_SIZE}B x{ECHO_CONNECTIONS}"


# -- the servers, each run as ``python asgi.py --serve NAME APP PORT`` ---------------------
def serve_trionet(app: Any, port: int) -> None:
    import trio

    import trionet.asgi

    trio.run(partial(trionet.asgi.serve, app, port, host=HOST,
                     keep_alive_timeout=KEEP_ALIVE_SECONDS))  # fmt: skip


def serve_hypercorn_trio(app: Any, port: int) -> None:
    import hypercorn.trio
    import trio
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{HOST}:{port}"]
    config.keep_alive_timeout = KEEP_ALIVE_SECONDS
    config.accesslog = None
    trio.run(hypercorn.trio.serve, app, config)


def serve_uvicorn(http: str, app: Any, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=HOST, port=port, http=http, loop="asyncio", log_level="warning",
                access_log=False, timeout_keep_alive=KEEP_ALIVE_SECONDS)  # fmt: skip


SERVERS: dict[str, Callable[[Any, int], None]] = {
    "trionet": serve_trionet,
    "hypercorn-trio": serve_hypercorn_trio,
    "uvicorn-h11": partial(serve_uvicorn, "h11"),
    "uvicorn-httptools": partial(serve_uvicorn, "httptools"),
}
PEER_MODULES = {"hypercorn-trio": "hypercorn", "uvicorn-h11": "uvicorn",
                "uvicorn-httptools": "httptools", "starlette": "starlette"}  # fmt: skip


def server_argv(name: str, app: str, port: int) -> list[str]:
    pin = ["taskset", "-c", SERVER_CORE] if shutil.which("taskset") else []
    return [*pin, sys.executable, str(Path(__file__).resolve()), "--serve", name, app, str(port)]


# -- the benchmark -------------------------------------------------------------------------
def run(quick: bool) -> list[Result]:
    seconds = 1.0 if quick else 5.0
    missing = missing_peers(PEER_MODULES)
    names = [name for name in SERVERS if name not in missing]
    apps = [app for app in HTTP_APPS if app != "starlette-json" or "starlette" not in missing]
    results: list[Result] = []
    for app in apps:
        benchmark = f"asgi {app} keep-alive"
        for name in names:
            port = free_port()
            with server_process(server_argv(name, app, port), port) as proc:
                if not quick:
                    wrk_load(port, 1)  # warm up
                rate, p50, p99, cpu = measure_load(proc.pid, port, seconds)
                memory = idle_connection_cost(proc.pid, port, 200) if app == "hello" else None
            base = name == "hypercorn-trio"
            extra = {"p50_ms": p50, "p99_ms": p99, "connections": CONNECTIONS}
            results.append(Result(benchmark, name, rate, "req/s", extra=extra, baseline=base))
            results.append(Result(f"asgi {app} server CPU", name, cpu, "us/req",
                                  higher_is_better=False, baseline=base))  # fmt: skip
            if memory is not None:
                results.append(Result("asgi idle keep-alive memory", name, memory, "KiB/conn",
                                      higher_is_better=False, baseline=base))  # fmt: skip
    results += run_ws(seconds, missing)
    return results + [
        skipped("asgi hello keep-alive", name, why, "req/s") for name, why in missing.items()
    ]


def run_ws(seconds: float, missing: dict[str, str]) -> list[Result]:
    """``starlette-ws`` on trionet and hypercorn-trio: echoed messages per second.

    Also per server CPU-second (the server's /proc CPU time over the load),
    which moves less than the wall-clock rate on a shared machine.
    """
    if not node_ready():
        why = "needs node and npm's ws (npm install in tests/peers)"
        return [skipped(WS_ECHO, name, why, "msg/s") for name in WS_SERVERS]
    if "starlette" in missing:
        return [skipped(WS_ECHO, name, missing["starlette"], "msg/s") for name in WS_SERVERS]
    results: list[Result] = []
    for name in (name for name in WS_SERVERS if name not in missing):
        port = free_port()
        url = f"ws://{HOST}:{port}/"
        with server_process(server_argv(name, "starlette-ws", port), port) as proc:
            cpu0 = cpu_seconds(proc.pid)
            load = ["echo", url, str(ECHO_CONNECTIONS), str(seconds), str(ECHO_SIZE)]
            echo = ws_load(load, seconds)
            cpu1 = cpu_seconds(proc.pid)
        base = name == "hypercorn-trio"
        rate = echo["messages"] / echo["seconds"]
        per_cpu = echo["messages"] / max(cpu1 - cpu0, 1e-3)
        extra = {"messages": int(echo["messages"])}
        results.append(Result(WS_ECHO, name, rate, "msg/s", extra=extra, baseline=base))
        results.append(
            Result(f"{WS_ECHO} per server CPU-s", name, per_cpu, "msg/CPU-s", baseline=base)
        )
    return results


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        sys.path.insert(0, str(HERE.parent))
        os.environ.setdefault("PYTHONHASHSEED", "0")
        SERVERS[sys.argv[2]](APPS[sys.argv[3]](), int(sys.argv[4]))
    else:
        main(run, baseline="hypercorn-trio")
