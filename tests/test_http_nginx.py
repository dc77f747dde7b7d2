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

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from _http_server_support import HOST, WAIT, RawClient, get, parse_all, start
from _proxies import nginx

from trionet.http import Request, Response

MiB = 1 << 20

#: The site nginx serves (tests/_proxies.py writes the rest of its configuration).
SITE = """
client_max_body_size 10m;
server {
    listen 80;
    location / {
        proxy_pass http://UPSTREAM;
    }
}
"""


@pytest.fixture
async def nginx_in_front(
    nursery: trio.Nursery, tmp_path: Path
) -> AsyncIterator[tuple[int, Path]]:
    """nginx proxying to a trionet server with a 1 MiB body limit; yields its port and log."""

    async def collect(req: Request, res: Response) -> None:
        body = await req.read()
        await res.end(b"got %d bytes" % len(body))

    upstream = await start(nursery, collect, max_body_size=MiB)
    site = SITE.replace("UPSTREAM", f"{HOST}:{upstream.port}")
    async with nginx(tmp_path, site) as proxy:
        yield proxy.port, proxy.log


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
