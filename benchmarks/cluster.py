"""Worker processes: trionet.cluster with 1 and 2 workers, against uvicorn and gunicorn.

Every subject serves the same raw ASGI hello app (``Hello World\\n``) on
127.0.0.1, loaded by ``wrk -t1 -c50`` for a fixed time, two ways:

* ``keep-alive``: wrk's 50 connections stay open, so the balance between
  workers is decided once per connection, at accept;
* ``new connection``: ``Connection: close`` on every request, so every request
  is an accept: the balance of the accept queue itself.

Subjects: ``trionet x1`` (one worker), ``trionet x2`` (two workers sharing the
primary's socket: the default), ``trionet x2 reuse_port`` (each worker binds
its own ``SO_REUSEPORT`` socket: ``sharing="reuse_port"``), ``uvicorn x2``
(``uvicorn --workers 2 --http h11``) and ``gunicorn x2`` (gunicorn with
``uvicorn_worker.UvicornH11Worker``): h11 everywhere, as trionet's parser is.

Figures: requests per second, and the share of the requests each worker
served (each worker counts its requests and writes the count at its
lifespan shutdown); the "busiest worker" rows give the larger share (50% is
a perfect balance). Pinning, on a 2-core machine: ``x1`` runs the server on
core 0 and wrk on core 1; the ``x2`` servers use both cores, and wrk (still
pinned to core 1) competes with one of the workers, so ``x2`` cannot reach
2x here; a machine with more cores than workers + 1 shows the scaling.

    python benchmarks/cluster.py [--quick]
    python benchmarks/cluster.py --serve "trionet x2" PORT   # one server
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _harness import Result, free_port, main, missing_peers, run_wrk, server_process, skipped
from _harness import wrk_rate as _wrk_rate

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
BODY = b"Hello World\n"
CONNECTIONS = 50
KEEP_ALIVE_SECONDS = 120
SERVER_CORE = "0"
LOAD_CORE = "1"
#: Where each worker writes "pid count" at shutdown (set by the benchmark).
COUNT_DIR_ENV = "TRIONET_BENCH_COUNT_DIR"
#: Seconds from the port answering to every worker serving (Python start-up: ~0.5 s).
STARTUP_GRACE = 2.0

_served = 0


async def hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI hello app; counts its requests and reports the count at shutdown."""
    global _served
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[1]
            if kind == "shutdown":
                _write_count()
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    if scope["type"] != "http":
        return
    _served += 1
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", b"%d" % len(BODY))]})  # fmt: skip
    await send({"type": "http.response.body", "body": BODY})


def _write_count() -> None:
    where = os.environ.get(COUNT_DIR_ENV)
    if where:
        Path(where, str(os.getpid())).write_text(str(_served))


# -- the servers ---------------------------------------------------------------------------
def serve_trionet(workers: int, sharing: str, port: int) -> None:
    from functools import partial

    import trio

    import trionet.asgi
    from trionet import cluster

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(trionet.asgi.serve, hello_app, port, host=HOST,
                                        keep_alive_timeout=KEEP_ALIVE_SECONDS))  # fmt: skip

    cluster.run(main, workers=workers, sharing=sharing, shutdown_timeout=5)


SELF = [sys.executable, str(Path(__file__).resolve()), "--serve"]

#: Subject -> (its command for a port, how many workers it runs).
SUBJECTS: dict[str, tuple[Callable[[int], list[str]], int]] = {
    "trionet x1": (lambda port: [*SELF, "trionet x1", str(port)], 1),
    "trionet x2": (lambda port: [*SELF, "trionet x2", str(port)], 2),
    "trionet x2 reuse_port": (lambda port: [*SELF, "trionet x2 reuse_port", str(port)], 2),
    "uvicorn x2": (lambda port: [
        sys.executable, "-m", "uvicorn", "cluster:hello_app", "--workers", "2", "--http", "h11",
        "--host", HOST, "--port", str(port), "--no-access-log", "--log-level", "warning",
        "--timeout-keep-alive", str(KEEP_ALIVE_SECONDS), "--lifespan", "on",
    ], 2),
    "gunicorn x2": (lambda port: [
        sys.executable, "-m", "gunicorn", "cluster:hello_app", "-w", "2",
        "-k", "uvicorn_worker.UvicornH11Worker", "-b", f"{HOST}:{port}",
        "--keep-alive", str(KEEP_ALIVE_SECONDS), "--log-level", "warning",
    ], 2),
}  # fmt: skip
SERVE: dict[str, Callable[[int], None]] = {
    "trionet x1": lambda port: serve_trionet(1, "primary", port),
    "trionet x2": lambda port: serve_trionet(2, "primary", port),
    "trionet x2 reuse_port": lambda port: serve_trionet(2, "reuse_port", port),
}
PEER_MODULES = {"uvicorn x2": "uvicorn", "gunicorn x2": "uvicorn_worker"}
BASELINE = "uvicorn x2"


def _argv(subject: str, port: int) -> list[str]:
    command, workers = SUBJECTS[subject]
    pin = ["taskset", "-c", SERVER_CORE] if workers == 1 and shutil.which("taskset") else []
    return [*pin, *command(port)]


# -- the benchmark -------------------------------------------------------------------------
def measure(subject: str, seconds: float, close: bool) -> tuple[float, list[float]]:
    """(req/s, each worker's share of the requests, largest first)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="trionet-bench-cluster-") as counts:
        env = {COUNT_DIR_ENV: counts, "PYTHONPATH": os.pathsep.join(
            [str(HERE.parent), str(HERE), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
        with server_process(_argv(subject, port), port, env=env, cwd=str(HERE), timeout=20):
            # The port answers once the first worker is up; wrk's 50 keep-alive
            # connections would all go to it if the others were still starting.
            time.sleep(STARTUP_GRACE)
            rate = _load(port, seconds, close)
        served = [int(p.read_text() or 0) for p in Path(counts).iterdir()]
    total = sum(served)
    shares = sorted((n / total for n in served), reverse=True) if total else []
    return rate, shares


def _load(port: int, seconds: float, close: bool) -> float:
    url = f"http://{HOST}:{port}/"
    if not close:
        return _wrk_rate(run_wrk(url, seconds, connections=CONNECTIONS, core=LOAD_CORE))
    pin = ["taskset", "-c", LOAD_CORE] if shutil.which("taskset") else []
    argv = [*pin, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s",
            "-H", "Connection: close", url]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    return _wrk_rate(out)


def run(quick: bool) -> list[Result]:
    if shutil.which("wrk") is None:
        return [skipped("cluster hello keep-alive", s, "needs wrk", "req/s") for s in SUBJECTS]
    seconds = 1.0 if quick else 4.0
    missing = missing_peers(PEER_MODULES)
    # --quick: trionet only (the peers' start-up alone would take seconds).
    names = [s for s in SUBJECTS if s not in missing and (not quick or s.startswith("trionet"))]
    results: list[Result] = []
    for close in (False, True) if not quick else (False,):
        kind = "new connection" if close else "keep-alive"
        for name in names:
            rate, shares = measure(name, seconds, close)
            workers = SUBJECTS[name][1]
            extra = {"per_worker": round(rate / workers),
                     "shares": "/".join(f"{s:.0%}" for s in shares)}  # fmt: skip
            base = name == BASELINE
            results.append(Result(f"cluster hello {kind}", name, rate, "req/s", extra=extra,
                                  baseline=base))  # fmt: skip
            if workers > 1 and shares:
                results.append(Result(f"cluster {kind}: busiest worker's share", name,
                                      shares[0] * 100, "%", higher_is_better=False,
                                      baseline=base))  # fmt: skip
    return results + [
        skipped("cluster hello keep-alive", name, why, "req/s") for name, why in missing.items()
    ]


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        sys.path.insert(0, str(HERE.parent))
        SERVE[sys.argv[2]](int(sys.argv[3]))
    else:
        main(run, baseline=BASELINE)
