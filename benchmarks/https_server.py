"""HTTPS server: hello world over TLS keep-alive, trionet vs hypercorn (Trio worker).

Every subject serves the same response (``200``, ``Content-Type: text/plain``,
``Hello World\\n``) with the same trustme certificate (written once by
``trionet.testing.write_certs``), from its own process pinned to one core;
the load generator runs on another core. Subjects:

* ``trionet``: ``trionet.https.serve`` with ``key=``/``cert=`` (pyOpenSSL over
  memory BIOs: the path that supports Node's ``request_cert`` semantics).
* ``trionet-stdlib``: ``trionet.https.serve`` with a stdlib ``ssl.SSLContext``
  (``trio.SSLStream``), to show what the TLS layer itself costs.
* ``hypercorn-trio``: hypercorn's Trio worker with ``certfile``/``keyfile``,
  an ASGI hello world: the baseline.
* ``node``: Node's ``https.createServer``, for scale.

Load: ``wrk -t1 -c50`` over https (wrk keeps connections alive, so the
figure is TLS record work, not handshakes); without wrk, a Trio client with
50 keep-alive TLS connections. Figure: requests per second.

    python benchmarks/https_server.py [--quick]
    python benchmarks/https_server.py --serve trionet PORT CERTDIR   # one server
"""

from __future__ import annotations

import os
import shutil
import ssl
import sys
import tempfile
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
#: Connections the load generator keeps open (as the HTTP benchmark's wrk -c50).
CONNECTIONS = 50
#: Keep-alive timeout given to every server, longer than any measurement.
KEEP_ALIVE_SECONDS = 120
SERVER_CORE = "0"
LOAD_CORE = "1"


# -- the servers, each run as ``python https_server.py --serve NAME PORT CERTDIR`` --------
def serve_trionet(port: int, certs: Path, *, stdlib: bool = False) -> None:
    import functools

    import trio

    import trionet

    async def app(req: trionet.http.Request, res: trionet.http.Response) -> None:
        res.set_header("Content-Type", "text/plain")
        await res.end(BODY)

    if stdlib:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certs / "server.pem", certs / "server.key")
        tls: dict[str, Any] = {"ssl_context": context}
    else:
        tls = {"key": certs / "server.key", "cert": certs / "server.pem"}

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(
                trionet.https.serve, app, port, host=HOST,
                keep_alive_timeout=KEEP_ALIVE_SECONDS, **tls,
            ))

    trio.run(run)


async def _asgi_hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        # Answer the lifespan protocol: hypercorn's Trio worker fails to start
        # when an app returns before reading lifespan.startup.
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    # Content-Length, as trionet and Node send: without it hypercorn chunks the
    # body into a second write, and Nagle's algorithm stalls it.
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", b"%d" % len(BODY))]})
    await send({"type": "http.response.body", "body": BODY})


def serve_hypercorn_trio(port: int, certs: Path) -> None:
    import hypercorn.trio
    import trio
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{HOST}:{port}"]
    config.certfile = str(certs / "server.pem")
    config.keyfile = str(certs / "server.key")
    config.alpn_protocols = ["http/1.1"]
    config.keep_alive_timeout = KEEP_ALIVE_SECONDS
    config.accesslog = None
    trio.run(hypercorn.trio.serve, _asgi_hello, config)


NODE_SERVER = """
const https = require('https');
const fs = require('fs');
const [port, dir, keepAliveMs] = process.argv.slice(1);
const server = https.createServer(
  { key: fs.readFileSync(dir + '/server.key'), cert: fs.readFileSync(dir + '/server.pem') },
  (req, res) => { res.setHeader('Content-Type', 'text/plain'); res.end('Hello World\\n'); });
server.keepAliveTimeout = Number(keepAliveMs);
server.listen(Number(port), '127.0.0.1');
"""

SERVERS: dict[str, Callable[[int, Path], None]] = {
    "trionet": serve_trionet,
    "trionet-stdlib": lambda port, certs: serve_trionet(port, certs, stdlib=True),
    "hypercorn-trio": serve_hypercorn_trio,
}


def server_argv(name: str, port: int, certs: Path) -> list[str]:
    pin = ["taskset", "-c", SERVER_CORE] if shutil.which("taskset") else []
    if name == "node":
        keep_alive_ms = str(KEEP_ALIVE_SECONDS * 1000)
        return [*pin, "node", "-e", NODE_SERVER, str(port), str(certs), keep_alive_ms]
    script = str(Path(__file__).resolve())
    return [*pin, sys.executable, script, "--serve", name, str(port), str(certs)]


#: The peers that need the ``bench`` extra, and the module each imports.
PEER_MODULES = {"hypercorn-trio": "hypercorn"}


def subjects() -> list[str]:
    """The servers that can run here: ours, and each peer that is installed."""
    missing = missing_peers(PEER_MODULES)
    names = [name for name in SERVERS if name not in missing]
    if shutil.which("node"):
        names.append("node")
    return names


# -- load ---------------------------------------------------------------------------------
def wrk_load(port: int, seconds: float) -> float:
    """``wrk -t1 -c50`` over https for ``seconds``: requests per second."""
    return wrk_rate(run_wrk(f"https://{HOST}:{port}/", seconds, connections=CONNECTIONS,
                            core=LOAD_CORE))


def python_load(port: int, seconds: float, ca: Path) -> float:
    """The fallback: 50 keep-alive TLS connections from Trio, requests per second."""
    import trio

    request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    context = ssl.create_default_context(cafile=str(ca))
    done = 0

    async def client(deadline: float) -> None:
        nonlocal done
        stream = await trio.open_ssl_over_tcp_stream(HOST, port, ssl_context=context)
        stream.server_hostname = "localhost"
        async with stream:
            while time.perf_counter() < deadline:
                await stream.send_all(request)
                data = b""
                while not data.endswith(BODY):
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    data += chunk
                done += 1

    async def run() -> float:
        start = time.perf_counter()
        with trio.move_on_after(seconds * 2 + 10):
            async with trio.open_nursery() as nursery:
                for _ in range(CONNECTIONS):
                    nursery.start_soon(client, start + seconds)
        return time.perf_counter() - start

    elapsed = trio.run(run)
    return done / elapsed


def load(port: int, seconds: float, certs: Path) -> float:
    if shutil.which("wrk"):
        return wrk_load(port, seconds)
    return python_load(port, seconds, certs / "ca.pem")


# -- the benchmark -------------------------------------------------------------------------
def run(quick: bool) -> list[Result]:
    from trionet.testing import write_certs

    seconds = 2.0 if quick else 5.0
    repeats = 1 if quick else 3
    names = subjects()
    best: dict[str, float] = {}
    tool = "wrk" if shutil.which("wrk") else "python"
    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp)
        write_certs(certs, hosts=("localhost", HOST))
        for _ in range(repeats):  # interleaved runs; keep each subject's best
            for name in names:
                port = free_port()
                with server_process(server_argv(name, port, certs), port):
                    load(port, 0.5, certs)  # warm up
                    rate = load(port, seconds, certs)
                best[name] = max(best.get(name, 0.0), rate)
    return [
        Result("https hello keep-alive", name, best[name], "req/s",
               extra={"load": tool, "runs": repeats}, baseline=name == "hypercorn-trio")
        for name in names
    ] + [
        skipped("https hello keep-alive", name, why, "req/s")
        for name, why in missing_peers(PEER_MODULES).items()
    ]


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        sys.path.insert(0, str(HERE.parent))
        os.environ.setdefault("PYTHONHASHSEED", "0")
        SERVERS[sys.argv[2]](int(sys.argv[3]), Path(sys.argv[4]))
    else:
        sys.path.insert(0, str(HERE.parent))
        main(run, baseline="hypercorn-trio")
