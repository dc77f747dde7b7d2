"""HTTP client throughput (req/s): trionet's Agent vs httpx on Trio, aiohttp and Node's Agent.

20,000 GETs of a 5-byte body from 100 concurrent tasks through a pool of 5
keep-alive connections, to one Node ``http`` server in another process (so the
server is not what we measure). Side by side in one run:

* ``trionet``: ``trionet.http.request(url, agent=Agent(max_sockets=5))``;
* ``httpx-trio``: ``httpx.AsyncClient`` under ``trio.run`` with
  ``Limits(max_connections=5)`` (bounded by time: it is far slower);
* ``aiohttp``: ``TCPConnector(limit_per_host=5)`` under asyncio (C parser);
* ``node``: ``http.Agent({keepAlive: true, maxSockets: 5})``, 100 concurrent.

The ratios are relative to aiohttp's client. ``--quick`` sends 2,000 per subject.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import trio
from _harness import (
    Result,
    compare,
    concurrent_load,
    free_port,
    main,
    missing_peers,
    server_process,
    skipped,
)

import trionet

HOST = "127.0.0.1"
PEERS = Path(__file__).resolve().parent.parent / "tests" / "peers"
CONCURRENCY = 100
POOL = 5
BENCHMARK = "http client GET, 100 tasks, pool of 5"


def _trionet(url: str, count: int, seconds: float) -> float:
    async def go() -> float:
        agent = trionet.agent.Agent(max_sockets=POOL)

        async def get() -> None:
            await trionet.http.request(url, agent=agent)

        stats = await concurrent_load(
            get, concurrency=CONCURRENCY, max_count=count, max_seconds=seconds
        )
        await agent.aclose()
        return stats.rate

    return trio.run(go)


def _httpx_trio(url: str, count: int, seconds: float) -> float:
    import httpx

    async def go() -> float:
        limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
        async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(None)) as client:

            async def get() -> None:
                (await client.get(url)).read()

            stats = await concurrent_load(
                get, concurrency=CONCURRENCY, max_count=count, max_seconds=seconds
            )
        return stats.rate

    return trio.run(go)


def _aiohttp(url: str, count: int, seconds: float) -> float:
    import aiohttp

    async def go() -> float:
        connector = aiohttp.TCPConnector(limit_per_host=POOL)
        async with aiohttp.ClientSession(connector=connector) as session:
            remaining = count
            done = 0
            deadline = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal remaining, done
                while remaining > 0 and time.perf_counter() < deadline:
                    remaining -= 1
                    async with session.get(url) as res:
                        await res.read()
                    done += 1

            start = time.perf_counter()
            await asyncio.wait_for(
                asyncio.gather(*(worker() for _ in range(CONCURRENCY))), seconds * 2
            )
            return done / (time.perf_counter() - start)

    return asyncio.run(go())


def _node(url: str, count: int, seconds: float) -> float:
    node = shutil.which("node")
    assert node is not None
    script = PEERS / "http_client_node.js"
    argv = [node, str(script), url, str(count), str(CONCURRENCY), str(POOL)]
    done = subprocess.run(argv, capture_output=True, timeout=seconds * 2 + 30, check=True)
    report = json.loads(done.stdout)
    return float(report["ok"] / report["seconds"])


def run(quick: bool) -> list[Result]:
    """Measure the four clients against one Node server, interleaved."""
    node = shutil.which("node")
    if node is None:
        print("http_client: node is not on PATH; skipped")
        return []
    count = 2000 if quick else 20000
    seconds = 5.0 if quick else 20.0
    port = free_port()
    argv = [node, str(PEERS / "http_client_server.js"), str(port)]
    with server_process(argv, port):
        url = f"http://{HOST}:{port}/hello"
        subjects = {
            "trionet": lambda: _trionet(url, count, seconds),
            "aiohttp": lambda: _aiohttp(url, count, seconds),
            "httpx-trio": lambda: _httpx_trio(url, count, 3.0 if quick else 6.0),
            "node": lambda: _node(url, count, seconds),
        }
        missing = missing_peers({"aiohttp": "aiohttp", "httpx-trio": "httpx"})
        for name in missing:
            del subjects[name]
        results = compare(
            BENCHMARK, "req/s", subjects, baseline="aiohttp", repeats=1 if quick else 3
        )
        return results + [skipped(BENCHMARK, name, why, "req/s") for name, why in missing.items()]


if __name__ == "__main__":
    main(run, baseline="aiohttp")
