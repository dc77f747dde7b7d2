"""trionet behind a real nginx: what a refused upload looks like through a proxy.

The usual deployment: nginx in front, buffering the request body
(``proxy_request_buffering on``, its default), then replaying it to trionet.
When trionet refuses the body (413) and closes while nginx still writes it,
the close resets the connection and nginx answers the client 502 ("writev()
failed (32: Broken pipe) while sending request to upstream"): 10 of 20 tries
did before the lingering close. Each test starts its own nginx from a
generated configuration in a temporary directory (no master process, no
daemon, every path under the directory), listening on 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from _http_server_support import HOST, WAIT, RawClient, get, parse_all, start
from conftest import require_tool

import trionet
from trionet.http import Request, Response

MiB = 1 << 20

CONFIG = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 10m;
    server {{
        listen {host}:{port};
        location / {{
            proxy_pass http://{host}:{upstream};
        }}
    }}
}}
"""


def free_port() -> int:
    """A port nobody listens on now (nginx cannot be handed a bound socket)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


async def wait_until_listening(port: int, proc: trio.Process) -> None:
    with trio.fail_after(WAIT):
        while True:
            assert proc.returncode is None, "nginx exited at start: see its error.log"
            try:
                sock = await trionet.net.connect(port, HOST)
            except trionet.ConnectError:
                await trio.sleep(0.05)
            else:
                await sock.aclose()
                return


@pytest.fixture
async def nginx_in_front(
    nursery: trio.Nursery, tmp_path: Path
) -> AsyncIterator[tuple[int, Path]]:
    """nginx proxying to a trionet server with a 1 MiB body limit; yields its port and log."""
    # Debian installs it in /usr/sbin, which a user's PATH may lack.
    sbin = Path("/usr/sbin/nginx")
    nginx = str(sbin) if sbin.exists() else require_tool("nginx", "nginx")

    async def collect(req: Request, res: Response) -> None:
        body = await req.read()
        await res.end(b"got %d bytes" % len(body))

    upstream = await start(nursery, collect, max_body_size=MiB)
    port = free_port()
    config = tmp_path / "nginx.conf"
    config.write_text(CONFIG.format(tmp=tmp_path, host=HOST, port=port, upstream=upstream.port))
    error_log = tmp_path / "error.log"
    proc = await trio.lowlevel.open_process(
        [nginx, "-p", str(tmp_path), "-c", str(config), "-e", str(error_log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_until_listening(port, proc)
        yield port, error_log
    finally:
        proc.kill()
        with trio.move_on_after(WAIT):
            await proc.wait()


async def post(port: int, size: int) -> bytes:
    """POST ``size`` bytes, all of them, and only then read the answer."""
    client = await RawClient.connect(port)
    try:
        with trio.fail_after(WAIT):
            head = get("/upload", f"Content-Length: {size}", "Connection: close", method="POST")
            await client.sock.send(head + b"z" * size)
        return await client.read_until_close()
    finally:
        await client.aclose()


async def test_5_mib_post_over_the_limit_is_a_413_through_nginx_every_time(
    nginx_in_front: tuple[int, Path],
) -> None:
    port, error_log = nginx_in_front
    statuses = []
    for _ in range(20):
        [res] = parse_all(await post(port, 5 * MiB))
        statuses.append(res.status)
    assert statuses == [413] * 20  # never nginx's 502
    log = error_log.read_text()
    assert "Broken pipe" not in log and "reset by peer" not in log


async def test_a_post_under_the_limit_goes_through_nginx(
    nginx_in_front: tuple[int, Path],
) -> None:
    port, _ = nginx_in_front
    [res] = parse_all(await post(port, MiB // 2))
    assert (res.status, res.body) == (200, b"got %d bytes" % (MiB // 2))
