"""trionet behind a real HAProxy 2.6 speaking the PROXY protocol, as docs/deploy.md shows.

HAProxy runs per test (``haproxy -f cfg -db``) from
docs/examples/deploy/haproxy.cfg with the ports replaced by the test's
(tests/_proxies.py): ``mode tcp`` in front of ``net.serve`` and ``mode http``
in front of ``http.serve``, both with ``send-proxy-v2`` (and once v1's
``send-proxy``). The proof that the app sees the original client: the test
client's own source port, which only the PROXY header can have carried,
equals the address the app reports. HAProxy's health checks send a header
too (v2: the LOCAL command; v1: the check's own addresses): the app sees
them from HAProxy's own address, the server stays up, nothing is logged at
ERROR.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from _http_server_support import RawClient, get
from _proxies import HOST, WAIT, deploy_file, fill, free_port, haproxy, wait_until_listening

import trionet
from trionet.http import Request, Response

#: Where the page's HAProxy listens and sends, replaced by the test's ports.
TCP_FRONTEND, HTTP_FRONTEND = "bind :7000", "bind :8080"
TCP_BACKEND, HTTP_BACKEND = "127.0.0.1:7001", "127.0.0.1:8001"
#: Trust HAProxy (on loopback) to send PROXY headers.
BEHIND_HAPROXY: dict[str, Any] = {"proxy_protocol": True, "forwarded_allow_ips": [HOST]}


@dataclass
class Seen:
    """The peers the apps saw: health checks and the client's requests."""

    checks: list[Any] = field(default_factory=list)
    clients: list[Any] = field(default_factory=list)


def as_address(value: Any) -> tuple[str, int]:
    host, port = value
    return str(host), int(port)


@dataclass
class Deployment:
    tcp_port: int
    http_port: int
    seen: Seen
    log: Path


@asynccontextmanager
async def behind_haproxy(
    nursery: trio.Nursery, tmp_path: Path, *, tcp_header: str = "send-proxy-v2"
) -> AsyncIterator[Deployment]:
    """HAProxy's two frontends in front of a trionet net server and an HTTP server."""
    seen = Seen()

    async def tell_address(sock: trionet.net.Socket) -> None:
        data = await sock.receive()
        if not data:  # a health check: the header, then the close
            seen.checks.append(sock.remote_address)
            return
        seen.clients.append(sock.remote_address)
        await sock.send(json.dumps(sock.remote_address).encode())
        await sock.send_eof()

    async def app(req: Request, res: Response) -> None:
        if req.path == "/health":
            seen.checks.append(req.remote_address)
            await res.end(b"ok")
            return
        seen.clients.append(req.remote_address)
        await res.end(json.dumps(req.remote_address).encode())

    net_server = await nursery.start(
        partial(trionet.net.serve, tell_address, 0, host=HOST, **BEHIND_HAPROXY)
    )
    http_server = await nursery.start(
        partial(trionet.http.serve, app, 0, host=HOST, **BEHIND_HAPROXY)
    )
    tcp_port, http_port = free_port(), free_port()
    config = fill(
        deploy_file("haproxy.cfg"),
        {
            TCP_FRONTEND: f"bind {HOST}:{tcp_port}",
            HTTP_FRONTEND: f"bind {HOST}:{http_port}",
            f"{TCP_BACKEND} send-proxy-v2": f"{HOST}:{net_server.port} {tcp_header}",
            HTTP_BACKEND: f"{HOST}:{http_server.port}",
        },
    )
    log = tmp_path / "haproxy.log"
    async with haproxy(tmp_path, config, log) as proc:
        await wait_until_listening(tcp_port, proc, log)
        await wait_until_listening(http_port, proc, log)
        yield Deployment(tcp_port, http_port, seen, log)


async def wait_for_checks(seen: Seen, count: int) -> None:
    """Until HAProxy's health checks (every second) reached the apps ``count`` times."""
    with trio.fail_after(WAIT):
        while len(seen.checks) < count:
            await trio.sleep(0.05)


async def ask_over_tcp(port: int) -> tuple[tuple[str, int], tuple[str, int]]:
    """(our own address, the address the net server saw) through HAProxy's TCP frontend."""
    with trio.fail_after(WAIT):
        sock = await trionet.net.connect(port, HOST)
        try:
            await sock.send(b"who am I?")
            answer = b""
            while data := await sock.receive():
                answer += data
        finally:
            await sock.aclose()
    assert sock.local_address is not None
    return as_address(sock.local_address), as_address(json.loads(answer))


def no_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("tcp_header", ["send-proxy-v2", "send-proxy"])
async def test_net_server_behind_haproxy_sees_the_clients_own_address(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture, tcp_header: str
) -> None:
    async with behind_haproxy(nursery, tmp_path, tcp_header=tcp_header) as deployment:
        await wait_for_checks(deployment.seen, 2)  # the server is up, checks and all
        for _ in range(3):
            ours, seen_by_app = await ask_over_tcp(deployment.tcp_port)
            assert seen_by_app == ours  # the port too: only the PROXY header carried it
    # A health check has no client: the app sees HAProxy's own address.
    assert all(as_address(check)[0] == HOST for check in deployment.seen.checks)
    assert no_errors(caplog) == []


async def test_http_server_behind_haproxy_sees_the_clients_own_address(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with behind_haproxy(nursery, tmp_path) as deployment:
        await wait_for_checks(deployment.seen, 2)
        for _ in range(3):
            with trio.fail_after(WAIT):
                sock = await trionet.net.connect(deployment.http_port, HOST)
            client = RawClient(sock)
            try:
                for _request in range(2):  # keep-alive: the same client, the same address
                    await client.send(get("/"))
                    response = await client.response()
                    assert response.status == 200, response
                    assert sock.local_address is not None
                    assert as_address(json.loads(response.body)) == as_address(sock.local_address)
            finally:
                await client.aclose()
    assert all(as_address(check)[0] == HOST for check in deployment.seen.checks)
    assert "DOWN" not in deployment.log.read_text()
    assert no_errors(caplog) == []
