"""ASGI servers: a raw ASGI hello and a Starlette JSON app, trionet vs its peers.

The same two apps run on every subject, each in its own process pinned to
one core (``taskset``), loaded by ``wrk -t1 -c50`` from another core:

* ``hello``: a raw ASGI app answering ``Hello World\\n`` (the server's own cost).
* ``starlette-json``: a Starlette route returning ``JSONResponse({"hello": "world"})``
  (what a FastAPI/Starlette user gets).

Subjects: ``trionet`` (:func:`trionet.asgi.serve`, access log off),
``hypercorn-trio`` (hypercorn's Trio worker), ``uvicorn-h11`` and
``uvicorn-httptools`` (asyncio; httptools is a C parser, reported beside).
Figures: requests per second, the server's CPU microseconds per request
(steadier on a shared machine), and for ``hello`` the RSS an idle keep-alive
connection costs. The issue's targets: >= 5x hypercorn-trio and >= 1.5x
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


APPS: dict[str, Callable[[], Any]] = {"hello": lambda: hello_app, "starlette-json": starlette_app}


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
    apps = [app for app in APPS if app != "starlette-json" or "starlette" not in missing]
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
    return results + [
        skipped("asgi hello keep-alive", name, why, "req/s") for name, why in missing.items()
    ]


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        sys.path.insert(0, str(HERE.parent))
        os.environ.setdefault("PYTHONHASHSEED", "0")
        SERVERS[sys.argv[2]](APPS[sys.argv[3]](), int(sys.argv[4]))
    else:
        main(run, baseline="hypercorn-trio")
