"""trionet.http.serve: requests, responses, keep-alive, hooks, shutdown, real clients.

Every test runs a real server on 127.0.0.1 (port 0) and talks to it over real
sockets: raw bytes, curl, or Node's http module. Strictness, limits and
timeouts live in test_http_server_limits.py.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import ssl
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from _http_server_support import (
    HOST,
    WAIT,
    RawClient,
    exchange,
    fetch_with_trailers,
    get,
    hello,
    parse_all,
    start,
)
from conftest import PEERS, open_fds

import trionet
from trionet.http import Request, Response


# -- the basics ------------------------------------------------------------------
async def test_hello_world_has_nodes_framing_headers(nursery: trio.Nursery) -> None:
    server = await start(nursery, hello)
    client = await RawClient.connect(server.port)
    await client.send(get("/hi"))
    res = await client.response()
    assert (res.status, res.reason) == (200, "OK")
    assert res.body == b"hello GET /hi"
    # Node's order: the app's headers, then Date, Connection, Keep-Alive, framing.
    names = ["Content-Type", "Date", "Connection", "Keep-Alive", "Content-Length"]
    assert res.header_names == names
    assert res.headers["connection"] == "keep-alive"
    assert res.headers["keep-alive"] == "timeout=5"
    assert res.headers["content-length"] == "13"
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", res.headers["date"])
    # The connection stays open for the next request.
    await client.send(get("/again"))
    assert (await client.response()).body == b"hello GET /again"
    await client.aclose()


async def test_request_attributes(nursery: trio.Nursery) -> None:
    seen: dict[str, object] = {}

    async def app(req: Request, res: Response) -> None:
        seen.update(
            method=req.method,
            url=req.url,
            path=req.path,
            query=req.query,
            version=req.http_version,
            agent=req.headers["user-agent"],
            agent_any_case=req.headers.get("User-Agent"),
            missing=req.headers.get("x-missing"),
            cookie=req.headers["cookie"],
            raw=req.raw_headers,
            remote=req.remote_address,
            socket=req.socket,
        )
        await res.end()

    server = await start(nursery, app)
    request = get("/p/a?x=1&x=2&y=", "User-Agent: test", "Cookie: a=1", "cookie: b=2")
    await exchange(server.port, request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert seen["method"] == "GET"
    assert seen["url"] == "/p/a?x=1&x=2&y="
    assert seen["path"] == "/p/a"
    assert seen["query"] == {"x": ["1", "2"], "y": [""]}
    assert seen["version"] == "1.1"
    assert seen["agent"] == seen["agent_any_case"] == "test"
    assert seen["missing"] is None
    assert seen["cookie"] == "a=1; b=2"
    assert (b"User-Agent", b"test") in seen["raw"]  # type: ignore[operator]
    assert seen["remote"][0] == HOST  # type: ignore[index]
    assert isinstance(seen["socket"], trionet.net.Socket)


async def test_write_then_end_is_chunked(nursery: trio.Nursery) -> None:
    async def app(req: Request, res: Response) -> None:
        await res.write(b"a")
        await res.end(b"b")

    server = await start(nursery, app)
    client = await RawClient.connect(server.port)
    await client.send(get())
    res = await client.response()
    assert res.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in res.headers
    assert res.head.endswith(b"Transfer-Encoding: chunked\r\n\r\n")
    assert res.body == b"ab"
    await client.aclose()


async def test_large_body_given_to_end(nursery: trio.Nursery) -> None:
    body = bytes(range(256)) * 40_000  # 10 MB: goes out with writev, uncopied

    async def app(req: Request, res: Response) -> None:
        await res.end(body)

    server = await start(nursery, app)
    client = await RawClient.connect(server.port)
    for _ in range(2):
        await client.send(get())
        res = await client.response()
        assert res.headers["content-length"] == str(len(body))
        assert res.body == body
    await client.aclose()


async def test_app_set_content_length_streams_raw(nursery: trio.Nursery) -> None:
    async def app(req: Request, res: Response) -> None:
        res.write_head(201, {"Content-Length": "4", "X-Kind": "raw"})
        await res.write(b"ab")
        await res.end(b"cd")

    server = await start(nursery, app)
    client = await RawClient.connect(server.port)
    await client.send(get())
    res = await client.response()
    assert (res.status, res.reason, res.body) == (201, "Created", b"abcd")
    assert "transfer-encoding" not in res.headers
    assert res.headers["x-kind"] == "raw"
    await client.aclose()


async def test_app_content_length_is_held_to(nursery: trio.Nursery) -> None:
    """As h11 and Node do: more body than declared raises; less closes the connection."""
    errors: list[str] = []

    async def app(req: Request, res: Response) -> None:
        res.set_header("Content-Length", "4")
        if req.path == "/long":
            try:
                await res.end(b"too long")
            except ValueError as exc:
                errors.append(str(exc))
                raise
        await res.write(b"ab")
        await res.end()  # two bytes short

    server = await start(nursery, app)
    data = await exchange(server.port, get("/long"))
    assert parse_all(data)[0].status == 500 and len(errors) == 1
    # Two bytes short: the client can only learn it from the close.
    data = await exchange(server.port, get("/short"))
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nab")


async def test_http10_client_gets_close_delimited_body(nursery: trio.Nursery) -> None:
    async def app(req: Request, res: Response) -> None:
        await res.write(b"hel")
        await res.end(b"lo")

    server = await start(nursery, app)
    data = await exchange(server.port, get(version="1.0"))
    [res] = parse_all(data)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")  # Node answers 1.1 to 1.0 clients
    assert res.headers["connection"] == "close"
    assert "transfer-encoding" not in res.headers and "content-length" not in res.headers
    assert res.body == b"hello"


async def test_http10_keep_alive_when_asked(nursery: trio.Nursery) -> None:
    server = await start(nursery, hello)
    client = await RawClient.connect(server.port)
    for _ in range(2):
        await client.send(get("/", "Connection: keep-alive", version="1.0"))
        res = await client.response()
        assert res.headers["connection"] == "keep-alive"
        assert res.body == b"hello GET /"
    await client.send(get(version="1.0"))
    assert (await client.response()).headers["connection"] == "close"
    assert await client.read_until_close() == b""
    await client.aclose()


async def test_head_and_no_body_statuses(nursery: trio.Nursery) -> None:
    async def app(req: Request, res: Response) -> None:
        res.status_code = int(req.path[1:]) if req.path != "/" else 200
        await res.end(b"body that must not be sent")

    server = await start(nursery, app)
    client = await RawClient.connect(server.port)
    await client.send(get(method="HEAD"))
    res = await client.response(head_only=True)
    assert res.status == 200 and res.headers["content-length"] == "26"
    for status in (204, 304):
        await client.send(get(f"/{status}"))
        res = await client.response(head_only=True)
        assert res.status == status
        assert "content-length" not in res.headers
    # Nothing of the bodies reached the wire: the next response parses cleanly.
    await client.send(get("/"))
    assert (await client.response()).body == b"body that must not be sent"
    await client.aclose()


async def test_head_with_the_apps_content_length_keeps_the_connection(
    nursery: trio.Nursery,
) -> None:
    """A HEAD answer announces the length of a body it never sends: that is not "short"."""

    async def app(req: Request, res: Response) -> None:
        res.set_header("Content-Length", "26")
        if req.method == "HEAD":
            await res.end()
        else:
            await res.end(b"body that must not be sent")

    server = await start(nursery, app)
    client = await RawClient.connect(server.port)
    await client.send(get(method="HEAD"))
    res = await client.response(head_only=True)
    assert res.headers["content-length"] == "26" and res.headers["connection"] == "keep-alive"
    await client.send(get())
    assert (await client.response()).body == b"body that must not be sent"
    await client.aclose()


async def test_should_keep_alive_false_closes_after_the_response(nursery: trio.Nursery) -> None:
    """Node's ``res.shouldKeepAlive``: the app may ask for the close; it reads the decision."""
    decided: list[bool] = []

    async def app(req: Request, res: Response) -> None:
        if req.path == "/last":
            res.should_keep_alive = False
        await res.end(b"x")
        decided.append(res.should_keep_alive)

    server = await start(nursery, app)
    data = await exchange(server.port, get("/") + get("/last") + get("/never"))
    assert [r.headers["connection"] for r in parse_all(data)] == ["keep-alive", "close"]
    assert decided == [True, False]


async def test_pipelined_thousand_requests_answered_in_order(nursery: trio.Nursery) -> None:
    server = await start(nursery, hello)
    client = await RawClient.connect(server.port)
    await client.send(b"".join(get(f"/{i}") for i in range(1000)))
    for i in range(1000):
        res = await client.response()
        assert res.body == f"hello GET /{i}".encode()
    await client.aclose()


async def test_request_body_content_length_and_chunked(nursery: trio.Nursery) -> None:
    async def echo(req: Request, res: Response) -> None:
        await res.end(await req.read())

    server = await start(nursery, echo)
    client = await RawClient.connect(server.port)
    await client.send(get("/", "Content-Length: 5", method="POST") + b"hello")
    assert (await client.response()).body == b"hello"
    chunked = b"Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nX-T: y\r\n\r\n"
    await client.send(get(method="POST").replace(b"\r\n\r\n", b"\r\n" + chunked, 1))
    assert (await client.response()).body == b"hello!"
    await client.aclose()


async def test_trailers_of_a_chunked_body_are_on_the_request(nursery: trio.Nursery) -> None:
    """Node's ``message.trailers``: empty until the body was read to its end."""
    seen: list[dict[str, str]] = []

    async def app(req: Request, res: Response) -> None:
        seen.append(dict(req.trailers))
        body = await req.read()
        seen.append(dict(req.trailers))
        await res.end(body)

    server = await start(nursery, app)
    client = await RawClient.connect(server.port)
    chunked = b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Digest: abc\r\n\r\n"
    await client.send(get(method="POST").replace(b"\r\n\r\n", b"\r\n" + chunked, 1))
    assert (await client.response()).body == b"ok"
    assert seen == [{}, {"x-digest": "abc"}]
    await client.aclose()


async def test_unread_body_is_skipped_before_the_next_request(nursery: trio.Nursery) -> None:
    server = await start(nursery, hello)
    client = await RawClient.connect(server.port)
    body = b"x" * 1000
    post = get("/1", f"Content-Length: {len(body)}", method="POST") + body
    await client.send(post + get("/2"))
    assert (await client.response()).body == b"hello POST /1"
    assert (await client.response()).body == b"hello GET /2"
    await client.aclose()


async def test_large_upload_streams_with_backpressure(nursery: trio.Nursery) -> None:
    """A 1 GiB upload read with ``async for`` never sits in memory whole."""
    total = 1 << 30
    biggest = 0
    received = 0

    def rss() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")  # pragma: no cover

    async def app(req: Request, res: Response) -> None:
        nonlocal biggest, received
        async for chunk in req:
            received += len(chunk)
            biggest = max(biggest, len(chunk))
        await res.end(str(received))

    server = await start(nursery, app)
    before = rss()
    peak = before
    client = await RawClient.connect(server.port)
    block = b"u" * (1 << 20)
    with trio.fail_after(120):
        await client.send(get("/", f"Content-Length: {total}", method="PUT"))
        for _ in range(total // len(block)):
            await client.sock.send(block)
            peak = max(peak, rss())
        res = await client.response()
    assert res.body == str(total).encode()
    assert biggest <= 65536
    assert peak - before < 64 << 20
    await client.aclose()


# -- the app's mistakes ------------------------------------------------------------
async def test_app_that_forgets_end_is_ended(nursery: trio.Nursery) -> None:
    async def app(req: Request, res: Response) -> None:
        res.status_code = 202

    server = await start(nursery, app)
    client = await RawClient.connect(server.port)
    await client.send(get())
    res = await client.response()
    assert (res.status, res.headers["content-length"], res.body) == (202, "0", b"")
    await client.aclose()


async def test_app_exception_gives_500_and_is_logged(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(req: Request, res: Response) -> None:
        if req.path == "/boom":
            res.set_header("X-Half", "done")
            raise ValueError("boom")
        await res.end(b"fine")

    server = await start(nursery, app)
    with caplog.at_level(logging.ERROR, logger="trionet"):
        data = await exchange(server.port, get("/boom") + get("/next"))
    [res] = parse_all(data)  # the failed request ends the connection
    assert res.status == 500 and res.body == b""
    assert "x-half" not in res.headers
    assert res.headers["connection"] == "close"
    assert "GET /boom" in caplog.text and "ValueError: boom" in caplog.text
    # The server goes on.
    data = await exchange(server.port, get("/ok", "Connection: close"))
    assert parse_all(data)[0].body == b"fine"


async def test_an_invalid_status_message_still_gets_the_500(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """The head is "sent" only once it was built: a refused reason phrase leaves room for a 500."""

    async def app(req: Request, res: Response) -> None:
        res.status_message = "OK\r\nSet-Cookie: injected=1"
        await res.end(b"never")

    server = await start(nursery, app)
    with caplog.at_level(logging.ERROR, logger="trionet"):
        data = await exchange(server.port, get())
    [res] = parse_all(data)
    assert res.status == 500 and "set-cookie" not in res.headers
    # The server's records carry its module's logger name (as Trio's do).
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.name == "trionet.http.server" and "status message" in caplog.text


async def test_app_exception_after_headers_aborts_the_connection(nursery: trio.Nursery) -> None:
    async def app(req: Request, res: Response) -> None:
        await res.write(b"partial")
        raise RuntimeError("late")

    server = await start(nursery, app)
    data = await exchange(server.port, get())
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert data.endswith(b"7\r\npartial\r\n")  # no last chunk: the client sees the abort


async def test_app_closing_the_socket_never_writes_to_a_newer_connection(
    nursery: trio.Nursery,
) -> None:
    """After ``req.socket.aclose()`` the descriptor number may be reused at once."""
    closed = trio.Event()

    async def app(req: Request, res: Response) -> None:
        if req.path == "/close":
            await req.socket.aclose()
            closed.set()
            await trio.sleep(0.2)  # meanwhile a new connection may take the number
            return  # the forgotten end() must not reach anyone
        await res.end(b"second")

    server = await start(nursery, app)
    first = await RawClient.connect(server.port)
    await first.send(get("/close"))
    await closed.wait()
    second = await RawClient.connect(server.port)
    await second.send(get("/other"))
    res = await second.response()
    assert res.body == b"second"
    extra = b""
    with trio.move_on_after(0.5):
        extra = await second.sock.receive()
    assert extra == b""  # nothing else arrived on the newer connection
    assert await first.read_until_close() == b""
    await first.aclose()
    await second.aclose()


async def test_client_leaving_mid_response_is_not_an_app_error(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    wrote = trio.Event()
    outcome: list[str] = []

    async def stream(req: Request, res: Response) -> None:
        try:
            await res.write(b"first")
            wrote.set()
            for _ in range(10_000):
                await res.write(b"x" * 65536)
        except trio.BrokenResourceError:
            outcome.append("client left")
            raise

    server = await start(nursery, stream)
    client = await RawClient.connect(server.port)
    await client.send(get())
    await wrote.wait()
    await client.aclose()
    with caplog.at_level(logging.DEBUG, logger="trionet"), trio.fail_after(WAIT):
        while server.connections:
            await trio.sleep(0.01)
    assert outcome == ["client left"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    data = await exchange(server.port, get("/", "Connection: close").replace(b"GET", b"HEAD"))
    assert data.startswith(b"HTTP/1.1 200 OK")


@pytest.mark.parametrize(
    "value", ["a\r\nSet-Cookie: evil=1", "a\nb", "a\rb", "nul\x00"]
)
async def test_header_value_with_cr_lf_raises(nursery: trio.Nursery, value: str) -> None:
    errors: list[BaseException] = []

    async def app(req: Request, res: Response) -> None:
        try:
            res.set_header("X-Evil", value)
        except ValueError as exc:
            errors.append(exc)
        with pytest.raises(ValueError):
            res.write_head(200, [("X-Evil", value)])
        await res.end(b"safe")

    server = await start(nursery, app)
    data = await exchange(server.port, get("/", "Connection: close"))
    assert errors and b"evil" not in data.lower() and b"X-Evil" not in data
    assert parse_all(data)[0].body == b"safe"


# -- hooks ---------------------------------------------------------------------------
async def test_on_upgrade_gets_socket_and_head(nursery: trio.Nursery) -> None:
    handed: list[tuple[str, bytes]] = []

    async def on_upgrade(req: Request, sock: trionet.net.Socket, head: bytes) -> None:
        handed.append((req.headers["upgrade"], head))
        await sock.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n\r\n" + head)
        await sock.send(await sock.receive())

    server = await start(nursery, hello, on_upgrade=on_upgrade)
    client = await RawClient.connect(server.port)
    await client.send(get("/", "Upgrade: echo", "Connection: Upgrade") + b"early")
    res = await client.response(head_only=True)
    assert res.status == 101
    await client.send(b"later")
    # The echo of both pieces, then the close that follows the hook's return.
    assert await client.read_until_close() == b"earlylater"
    assert handed == [("echo", b"early")]
    await client.aclose()


async def test_upgrade_without_hook_goes_to_the_app(nursery: trio.Nursery) -> None:
    server = await start(nursery, hello)
    data = await exchange(server.port, get("/", "Upgrade: echo", "Connection: Upgrade, close"))
    assert parse_all(data)[0].body == b"hello GET /"


async def test_connect_hook_and_default_405(nursery: trio.Nursery) -> None:
    async def on_connect(req: Request, sock: trionet.net.Socket, head: bytes) -> None:
        await sock.send(b"HTTP/1.1 200 Connection Established\r\n\r\n" + req.url.encode() + head)

    request = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nabc"
    server = await start(nursery, hello, on_connect=on_connect)
    data = await exchange(server.port, request)
    assert data == b"HTTP/1.1 200 Connection Established\r\n\r\nexample.com:443abc"
    plain = await start(nursery, hello)
    data = await exchange(plain.port, request)
    assert data.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")


async def test_100_continue_sent_when_the_app_reads(nursery: trio.Nursery) -> None:
    async def app(req: Request, res: Response) -> None:
        if req.path == "/refuse":
            res.status_code = 413
            await res.end()
            return
        await res.end(await req.read())

    server = await start(nursery, app)
    client = await RawClient.connect(server.port)
    head = get("/", "Content-Length: 4", "Expect: 100-continue", method="POST")
    await client.send(head)
    interim = await client.response()
    assert (interim.status, interim.reason) == (100, "Continue")
    await client.send(b"data")
    assert (await client.response()).body == b"data"
    # An app that refuses never asks for the body: no 100, and the connection closes.
    await client.send(head.replace(b"POST /", b"POST /refuse"))
    res = await client.response()
    assert res.status == 413 and res.headers["connection"] == "close"
    assert await client.read_until_close() == b""
    await client.aclose()


async def test_on_check_continue_runs_instead_of_app(nursery: trio.Nursery) -> None:
    async def check(req: Request, res: Response) -> None:
        await res.write_continue()
        await res.end(b"checked " + await req.read())

    server = await start(nursery, hello, on_check_continue=check)
    client = await RawClient.connect(server.port)
    await client.send(get("/", "Content-Length: 2", "Expect: 100-continue", method="PUT"))
    assert (await client.response()).status == 100
    await client.send(b"ok")
    assert (await client.response()).body == b"checked ok"
    await client.aclose()


PRELOAD = "</style.css>; rel=preload; as=style"


async def early_hints_app(req: Request, res: Response) -> None:
    await res.write_early_hints({"Link": [PRELOAD, "</app.js>; rel=preload; as=script"]})
    await res.end(b"page\n")


async def test_early_hints_go_out_before_the_response(nursery: trio.Nursery) -> None:
    server = await start(nursery, early_hints_app)
    client = await RawClient.connect(server.port)
    await client.send(get("/"))
    hints = await client.response(head_only=True)
    assert (hints.status, hints.reason) == (103, "Early Hints")
    assert hints.head == (
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n"
        b"Link: </app.js>; rel=preload; as=script\r\n\r\n"
    )
    final = await client.response()
    assert (final.status, final.body) == (200, b"page\n")
    await client.aclose()
    # Our client skips 1xx heads, as Node's does unless one listens for 'information'.
    with trio.fail_after(WAIT):
        res = await trionet.http.request(f"http://{HOST}:{server.port}/")
    assert (res.status, res.text()) == (200, "page\n")


async def test_no_early_hints_for_an_http10_client(nursery: trio.Nursery) -> None:
    server = await start(nursery, early_hints_app)
    data = await exchange(server.port, get("/", version="1.0"))
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"page\n")


async def test_early_hints_need_a_link_and_must_come_first(nursery: trio.Nursery) -> None:
    errors: list[str] = []

    async def app(req: Request, res: Response) -> None:
        for hints in ({"X-Other": "1"}, {"Link": "<a>\r\nSet-Cookie: x=1"}):
            try:
                await res.write_early_hints(hints)
            except ValueError as exc:
                errors.append(str(exc))
        await res.write(b"started")
        try:
            await res.write_early_hints({"Link": PRELOAD})
        except RuntimeError as exc:
            errors.append(str(exc))
        await res.end()

    server = await start(nursery, app)
    data = await exchange(server.port, get("/", "Connection: close"))
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"103" not in data
    assert errors == [
        "early hints need a Link header",
        "invalid character in header 'Link': '<a>\\r\\nSet-Cookie: x=1'",
        "early hints after the response head was sent",
    ]


async def test_curl_sees_early_hints(nursery: trio.Nursery, curl: object) -> None:
    server = await start(nursery, early_hints_app)
    responses, out, _ = await run_curl(f"http://{HOST}:{server.port}/")
    assert [status for status, _ in responses] == [103, 200]
    assert responses[0][1]["link"].startswith("</") and out == "page\n"


async def test_on_client_error_hook(nursery: trio.Nursery) -> None:
    seen: list[tuple[int, str]] = []

    async def on_client_error(exc: trionet.http.ClientError, sock: trionet.net.Socket) -> None:
        seen.append((exc.status, exc.code))
        await sock.send(b"HTTP/1.1 400 Custom\r\nConnection: close\r\n\r\n")

    server = await start(nursery, hello, on_client_error=on_client_error)
    data = await exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    assert data == b"HTTP/1.1 400 Custom\r\nConnection: close\r\n\r\n"
    assert seen == [(400, "HPE_INVALID")]


# -- connection management ----------------------------------------------------------------
async def test_max_requests_per_socket(nursery: trio.Nursery) -> None:
    server = await start(nursery, hello, max_requests_per_socket=2)
    data = await exchange(server.port, get("/1") + get("/2") + get("/3") + get("/4"))
    one, two, *rest = parse_all(data)
    assert one.headers["connection"] == "keep-alive"
    assert two.headers["connection"] == "close" and two.body == b"hello GET /2"
    assert [r.status for r in rest] == [503, 503]


async def test_keep_alive_timeout_closes_idle_connection(nursery: trio.Nursery) -> None:
    server = await start(nursery, hello, keep_alive_timeout=0.2)
    client = await RawClient.connect(server.port)
    await client.send(get())
    res = await client.response()
    assert res.headers["keep-alive"] == "timeout=0.2"
    with trio.fail_after(2):
        assert await client.read_until_close() == b""
    await client.aclose()


async def test_500_concurrent_keep_alive_connections(nursery: trio.Nursery) -> None:
    server = await start(nursery, hello)
    clients = []
    with trio.fail_after(60):
        for _ in range(500):
            clients.append(await RawClient.connect(server.port))

        async def twice(client: RawClient, i: int) -> None:
            for round_ in range(2):
                await client.send(get(f"/{i}/{round_}"))
                assert (await client.response()).body == f"hello GET /{i}/{round_}".encode()

        async with trio.open_nursery() as inner:
            for i, client in enumerate(clients):
                inner.start_soon(twice, client, i)
        assert server.connections == 500
        for client in clients:
            await client.aclose()


async def test_graceful_shutdown_finishes_in_flight_response(nursery: trio.Nursery) -> None:
    started = trio.Event()

    async def slow(req: Request, res: Response) -> None:
        if req.path == "/slow":
            started.set()
            await trio.sleep(0.3)
        await res.end(b"done")

    server = await start(nursery, slow)
    idle = await RawClient.connect(server.port)
    await idle.send(get("/warm"))
    await idle.response()
    busy = await RawClient.connect(server.port)
    await busy.send(get("/slow"))
    await started.wait()
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as inner:
            inner.start_soon(server.aclose)
            # The idle keep-alive connection is closed at once ...
            assert await idle.read_until_close() == b""
            # ... the in-flight one completes, told to close.
            res = await busy.response()
            assert res.body == b"done"
            assert res.headers["connection"] == "close"
    with pytest.raises(trionet.ConnectError):
        await trionet.net.connect(server.port, HOST)
    await idle.aclose()
    await busy.aclose()


def count_tasks() -> int:
    """Every live task in this run, counted from the root down."""

    def below(task: trio.lowlevel.Task) -> int:
        return 1 + sum(below(child) for n in task.child_nurseries for child in n.child_tasks)

    return below(trio.lowlevel.current_root_task())


async def test_aclose_timeout_cancels_what_is_left(nursery: trio.Nursery) -> None:
    started = trio.Event()

    async def stuck(req: Request, res: Response) -> None:
        started.set()
        await trio.sleep_forever()

    server = await start(nursery, stuck)
    client = await RawClient.connect(server.port)
    await client.send(get())
    await started.wait()
    with trio.fail_after(WAIT):
        before = trio.current_time()
        await server.aclose(timeout=0.2)
        assert trio.current_time() - before < 2
        assert await client.read_until_close() == b""
    assert server.connections == 0
    await client.aclose()


async def test_https_with_ssl_context(
    nursery: trio.Nursery, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    server = await start(nursery, hello, ssl_context=server_ssl_context)
    with trio.fail_after(WAIT):
        stream = await trio.open_ssl_over_tcp_stream(
            HOST, server.port, ssl_context=client_ssl_context, https_compatible=True
        )
        await stream.send_all(get("/tls", "Connection: close"))
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
        await stream.aclose()
    [res] = parse_all(data)
    assert (res.status, res.body) == (200, b"hello GET /tls")


async def test_serve_on_a_unix_socket(nursery: trio.Nursery, tmp_path: Path) -> None:
    path = str(tmp_path / "http.sock")
    server = await nursery.start(partial(trionet.http.serve, hello, path=path))
    assert server.address == path
    with trio.fail_after(WAIT):
        stream = await trio.open_unix_socket(path)
        await stream.send_all(get("/unix", "Connection: close"))
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
        await stream.aclose()
    assert parse_all(data)[0].body == b"hello GET /unix"


async def test_no_leaks_after_ten_thousand_requests(nursery: trio.Nursery) -> None:
    server = await start(nursery, hello)
    await trio.testing.wait_all_tasks_blocked()  # the server's own tasks have started
    fds_before = open_fds()
    tasks_before = count_tasks()

    async def worker(count: int) -> None:
        for i in range(count // 50):
            # A fresh connection every 50 requests, so connections churn too.
            client = await RawClient.connect(server.port)
            await client.send(b"".join(get(f"/{i}") for _ in range(50)))
            for _ in range(50):
                assert (await client.response()).status == 200
            await client.aclose()

    with trio.fail_after(120):
        async with trio.open_nursery() as inner:
            for _ in range(4):
                inner.start_soon(worker, 2500)
        while server.connections:
            await trio.sleep(0.01)
        await trio.testing.wait_all_tasks_blocked()  # the last tasks finish closing
    assert open_fds() == fds_before
    assert count_tasks() == tasks_before


IDLE_SERVER = """
import sys, trio, trionet
from functools import partial

async def app(req, res):
    await res.end(b"ok")

async def main():
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(
            trionet.http.serve, app, 0, host="127.0.0.1", keep_alive_timeout=60))
        print(server.port, flush=True)

trio.run(main)
"""


def _rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]


def test_an_idle_keep_alive_connection_costs_under_8_kib() -> None:
    """RSS growth of a server process over 300 idle keep-alive connections."""
    count = 300
    proc = subprocess.Popen(
        [sys.executable, "-c", IDLE_SERVER], stdout=subprocess.PIPE, text=True
    )
    socks: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())

        def open_idle(n: int) -> None:
            for _ in range(n):
                sock = socket.create_connection((HOST, port), timeout=10)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                data = b""
                while not data.endswith(b"ok"):
                    data += sock.recv(4096)
                socks.append(sock)

        open_idle(30)  # warm up allocators
        time.sleep(0.2)
        before = _rss(proc.pid)
        open_idle(count)
        time.sleep(0.3)
        per_connection = (_rss(proc.pid) - before) / count
    finally:
        for sock in socks:
            sock.close()
        proc.kill()
        proc.wait(timeout=10)
    assert per_connection < 8 * 1024, f"{per_connection:.0f} bytes per connection"


# -- real clients -----------------------------------------------------------------------------
CURL = "/usr/bin/curl"


def curl_v(*args: str) -> tuple[list[tuple[int, dict[str, str]]], str, str]:
    """Run curl -v; return each response's status and headers, stdout and stderr."""
    done = subprocess.run(
        [CURL, "-sS", "-v", "--max-time", "20", *args], capture_output=True, timeout=30
    )
    err = done.stderr.decode(errors="replace")
    responses: list[tuple[int, dict[str, str]]] = []
    for line in err.splitlines():
        if line.startswith("< HTTP/"):
            responses.append((int(line.split()[2]), {}))
        elif line.startswith("< ") and ":" in line and responses:
            name, _, value = line[2:].partition(":")
            responses[-1][1][name.lower()] = value.strip()
    return responses, done.stdout.decode(errors="replace"), err


async def run_curl(*args: str) -> tuple[list[tuple[int, dict[str, str]]], str, str]:
    return await trio.to_thread.run_sync(lambda: curl_v(*args))


@pytest.fixture
def curl() -> Callable[..., object]:
    if not Path(CURL).exists():
        pytest.skip("curl is not installed")
    return run_curl


async def echo_app(req: Request, res: Response) -> None:
    body = await req.read()
    res.set_header("X-Method", req.method)
    res.set_header("X-Body-Length", str(len(body)))
    await res.end(body if req.method != "GET" else b"hello from trionet\n")


async def test_curl_two_urls_reuse_one_connection(nursery: trio.Nursery, curl: object) -> None:
    server = await start(nursery, echo_app)
    base = f"http://{HOST}:{server.port}"
    responses, out, err = await run_curl(f"{base}/a", f"{base}/b")
    assert [status for status, _ in responses] == [200, 200]
    assert responses[0][1]["connection"] == "keep-alive"
    assert responses[0][1]["keep-alive"] == "timeout=5"
    assert "Re-using existing connection" in err
    assert out == "hello from trionet\n" * 2


async def test_curl_http10(nursery: trio.Nursery, curl: object) -> None:
    server = await start(nursery, echo_app)
    responses, out, _ = await run_curl("--http1.0", f"http://{HOST}:{server.port}/")
    [(status, headers)] = responses
    assert status == 200 and headers["connection"] == "close"
    assert out == "hello from trionet\n"


async def test_curl_chunked_upload_from_stdin(nursery: trio.Nursery, curl: object) -> None:
    server = await start(nursery, echo_app)
    payload = b"streamed " * 10_000

    def upload() -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [CURL, "-sS", "-v", "--max-time", "20", "-T", "-", f"http://{HOST}:{server.port}/up"],
            input=payload,
            capture_output=True,
            timeout=30,
        )

    done = await trio.to_thread.run_sync(upload)
    assert b"Transfer-Encoding: chunked" in done.stderr
    assert done.stdout == payload
    assert b"< X-Method: PUT" in done.stderr


async def test_curl_large_post_uses_100_continue(
    nursery: trio.Nursery, curl: object, tmp_path: Path
) -> None:
    server = await start(nursery, echo_app)
    big = tmp_path / "big.txt"
    big.write_bytes(b"0123456789abcdef" * (1 << 17))  # 2 MiB: curl sends Expect
    responses, _, err = await run_curl(
        "--data-binary", f"@{big}", "-o", "/dev/null", f"http://{HOST}:{server.port}/"
    )
    assert "Expect: 100-continue" in err
    assert [status for status, _ in responses] == [100, 200]
    assert responses[1][1]["x-body-length"] == str(2 << 20)


async def test_curl_head(nursery: trio.Nursery, curl: object) -> None:
    server = await start(nursery, echo_app)
    responses, out, _ = await run_curl("-I", f"http://{HOST}:{server.port}/")
    [(status, headers)] = responses
    assert status == 200 and headers["x-method"] == "HEAD"
    assert out.startswith("HTTP/1.1 200 OK")


@pytest.mark.parametrize("agent", ["keepalive", "none"])
async def test_node_http_client(nursery: trio.Nursery, node: str, agent: str) -> None:
    server = await start(nursery, echo_app)
    script = PEERS / "http_server_client.js"
    with trio.fail_after(30):
        done = await trio.run_process(
            [node, str(script), str(server.port), agent], capture_stdout=True, capture_stderr=True
        )
    lines = done.stdout.decode().splitlines()
    # Node's one-shot agent (agent: false) sends Connection: close; a pool keeps it alive.
    connection = "keep-alive" if agent == "keepalive" else "close"
    assert lines == [
        f"200 {connection} GET 0 hello from trionet",
        f"200 {connection} POST 11 hello again",
        f"200 {connection} PUT 6 abcdef",
        f"sockets used: {1 if agent == 'keepalive' else 3}",
    ]


# -- refusing an upload: the lingering close (RFC 9112 section 9.6) -----------------
MiB = 1 << 20
UPLOAD = b"u" * (4 * MiB)


async def upload_then_read(port: int, head: bytes, body: bytes = UPLOAD) -> bytes:
    """Send the whole request, as a simple client does, and only then read the answer.

    Fails if the server resets the connection before the upload is through:
    the client would never see the answer waiting in its receive buffer.
    """
    client = await RawClient.connect(port)
    try:
        with trio.fail_after(WAIT):
            await client.sock.send(head + body)
        return await client.read_until_close()
    finally:
        await client.aclose()


def sized_post(size: int = len(UPLOAD), *headers: str) -> bytes:
    return get("/upload", f"Content-Length: {size}", *headers, method="POST")


async def read_all_body(req: Request, res: Response) -> None:
    body = await req.read()
    await res.end(b"got %d bytes" % len(body))


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_4_mib_upload_over_a_1_mib_limit_gets_its_413(
    nursery: trio.Nursery, framing: str
) -> None:
    """The whole upload goes through and the client reads the 413 after it."""
    server = await start(nursery, read_all_body, max_body_size=MiB)
    if framing == "chunked":
        head = get("/upload", "Transfer-Encoding: chunked", method="POST")
        body = b"".join(b"10000\r\n" + UPLOAD[:65536] + b"\r\n" for _ in range(64)) + b"0\r\n\r\n"
    else:
        head, body = sized_post(), UPLOAD
    [res] = parse_all(await upload_then_read(server.port, head, body))
    assert res.status == 413
    assert res.body == b"413 Payload Too Large\n"


@pytest.mark.parametrize(
    ("status", "head"),
    [
        (431, sized_post(len(UPLOAD), "X-Big: " + "b" * 20_000)),
        (400, sized_post(len(UPLOAD), "Bad Header")),
    ],
    ids=["431", "400"],
)
async def test_refused_head_with_a_4_mib_body_arriving(
    nursery: trio.Nursery, status: int, head: bytes
) -> None:
    server = await start(nursery, read_all_body)
    [res] = parse_all(await upload_then_read(server.port, head))
    assert res.status == status and res.headers["connection"] == "close"


async def test_app_refusing_an_upload_unread_gets_its_answer_through(
    nursery: trio.Nursery,
) -> None:
    """An app that answers without reading the body: the rest is read and dropped."""

    async def refuse(req: Request, res: Response) -> None:
        res.status_code = 403
        await res.end(b"uploads are closed")

    server = await start(nursery, refuse)
    [res] = parse_all(await upload_then_read(server.port, sized_post()))
    assert (res.status, res.body) == (403, b"uploads are closed")
    assert res.headers["connection"] == "close"


async def test_our_client_posting_4_mib_over_the_limit_gets_the_413(
    nursery: trio.Nursery,
) -> None:
    server = await start(nursery, read_all_body, max_body_size=MiB)
    with trio.fail_after(WAIT):
        res = await trionet.http.request(
            f"http://{HOST}:{server.port}/upload", method="POST", body=UPLOAD, agent=False
        )
    assert res.status == 413 and res.body == b"413 Payload Too Large\n"


async def test_on_client_error_sends_a_custom_413_body_during_an_upload(
    nursery: trio.Nursery,
) -> None:
    custom = b'{"error": "too big", "limit": 1048576}'

    async def on_client_error(exc: trionet.http.ClientError, sock: trionet.net.Socket) -> None:
        await sock.send(
            b"HTTP/1.1 %d Too Big\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (exc.status, len(custom), custom)
        )

    server = await start(nursery, read_all_body, max_body_size=MiB, on_client_error=on_client_error)
    [res] = parse_all(await upload_then_read(server.port, sized_post()))
    assert (res.status, res.reason, res.body) == (413, "Too Big", custom)


@pytest.mark.parametrize(
    ("status", "request_bytes", "options"),
    [
        (400, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", {}),
        (413, sized_post(11) + b"x" * 11, {"max_body_size": 10}),
        (431, get("/", "X-Big: " + "b" * 100), {"max_header_size": 64}),
        (405, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", {}),
        (408, sized_post(10) + b"abc", {"request_timeout": 0.3}),
    ],
    ids=["400", "413", "431", "405", "408"],
)
async def test_default_error_responses_carry_date_and_a_short_text_body(
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
    status: int,
    request_bytes: bytes,
    options: dict[str, float],
) -> None:
    server = await start(nursery, read_all_body, **options)
    with caplog.at_level(logging.DEBUG, logger="trionet"):
        data = await exchange(server.port, request_bytes)
    [res] = parse_all(data)
    phrase = trionet.http._headers.reason_phrase(status)
    assert res.status == status and res.reason == phrase
    assert res.body == f"{status} {phrase}\n".encode()
    assert res.headers["content-length"] == str(len(res.body))
    assert res.headers["content-type"] == "text/plain; charset=utf-8"
    assert res.headers["connection"] == "close"
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", res.headers["date"])
    refusals = [r for r in caplog.records if r.getMessage().startswith("refused a request")]
    assert [r.levelno for r in refusals] == [logging.INFO]  # one line, below ERROR
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_shutdown_ends_a_lingering_connection_at_once(nursery: trio.Nursery) -> None:
    server = await start(nursery, hello, max_body_size=10)
    # A client that got its 413 but neither sends more nor closes.
    client = await RawClient.connect(server.port)
    client.sock.allow_half_open = True
    await client.send(sized_post(11))
    assert (await client.response()).status == 413
    with trio.fail_after(WAIT):
        before = trio.current_time()
        await server.aclose()  # graceful: waits for busy connections, not lingering ones
        assert trio.current_time() - before < 1
    assert server.connections == 0
    await client.aclose()


async def test_a_trickling_client_is_cut_off_after_the_linger_time(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client sending a byte every 50 ms after its 413 holds the connection only so long."""
    monkeypatch.setattr(trionet._linger, "LINGER_TIME", 0.5)
    server = await start(nursery, hello, max_body_size=10)
    client = await RawClient.connect(server.port)
    await client.send(sized_post(len(UPLOAD)))
    assert (await client.response()).status == 413
    with trio.fail_after(WAIT):
        before = trio.current_time()
        with contextlib.suppress(trio.BrokenResourceError):
            while server.connections:
                await client.sock.send(b".")
                await trio.sleep(0.05)
        assert trio.current_time() - before < 3
        # Meanwhile and after, everyone else is served.
        [ok] = parse_all(await exchange(server.port, get("/", "Connection: close")))
        assert ok.status == 200
    await client.aclose()


async def test_lingering_connections_count_and_then_go(nursery: trio.Nursery) -> None:
    """50 refused clients lingering: counted in server.connections, gone once they close."""
    server = await start(nursery, hello, max_body_size=10)
    fds = open_fds()
    clients = [await RawClient.connect(server.port) for _ in range(50)]
    for client in clients:
        client.sock.allow_half_open = True
        await client.send(sized_post(11))
        assert (await client.response()).status == 413
    assert server.connections == 50
    [ok] = parse_all(await exchange(server.port, get("/", "Connection: close")))
    assert ok.status == 200
    for client in clients:
        await client.aclose()
    with trio.fail_after(WAIT):
        while server.connections:
            await trio.sleep(0.01)
    assert open_fds() <= fds


# -- Response.write without copying (issue 11 section 6) ------------------------------
@pytest.mark.parametrize("how", ["first write", "later write", "end", "http/1.0 write"])
async def test_writing_1_mib_to_a_slow_reader_holds_no_copy(
    nursery: trio.Nursery, how: str
) -> None:
    """tracemalloc's peak while a 1 MiB write waits on a slow reader stays under half of it."""
    payload = b"p" * MiB  # allocated before tracing: only copies count
    peaks: list[int] = []

    async def app(req: Request, res: Response) -> None:
        if how != "first write":
            await res.write(b"head start ")
        tracemalloc.start()
        try:
            if how == "end":
                await res.end(payload)
            else:
                await res.write(payload)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        await res.end()

    server = await start(nursery, app)
    version = "1.0" if how.startswith("http/1.0") else "1.1"
    with trio.fail_after(WAIT):
        sock = trio.socket.socket()
        await sock.connect((HOST, server.port))
        await sock.send(get("/", "Connection: close", version=version))
        await trio.sleep(0.2)  # a slow reader: the write blocks on a full socket
        received = 0
        tail = b""
        while data := await sock.recv(65536):  # counted, not kept: tracing is on
            received += len(data)
            tail = (tail + data)[-16:]
        sock.close()
    assert received > MiB
    assert tail.endswith(b"0\r\n\r\n" if version == "1.1" else b"p")
    assert peaks and peaks[0] < MiB // 2, f"peak {peaks[0]} bytes while writing 1 MiB"


@pytest.mark.parametrize("sizes", [[100_000, 5, 300_000], [16384, 16383, 1], [70_000, 70_000]])
async def test_large_and_small_chunks_frame_correctly(
    nursery: trio.Nursery, sizes: list[int]
) -> None:
    pieces = [bytes([65 + i]) * size for i, size in enumerate(sizes)]

    async def app(req: Request, res: Response) -> None:
        for piece in pieces[:-1]:
            await res.write(piece)
        await res.end(pieces[-1])

    server = await start(nursery, app)
    client = await RawClient.connect(server.port)
    await client.send(get() + get("/again"))
    for _ in range(2):  # the framing leaves the keep-alive connection in step
        res = await client.response()
        assert res.headers["transfer-encoding"] == "chunked"
        assert res.body == b"".join(pieces)
    await client.aclose()


async def test_https_upload_over_the_limit_gets_its_413(
    nursery: trio.Nursery, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    """Over TLS too: the lingering close reads the rest of the upload through TLS."""
    server = await start(nursery, read_all_body, max_body_size=MiB, ssl_context=server_ssl_context)
    with trio.fail_after(WAIT):
        stream = await trio.open_ssl_over_tcp_stream(
            HOST, server.port, ssl_context=client_ssl_context, https_compatible=True
        )
        await stream.send_all(sized_post() + UPLOAD)
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
        await stream.aclose()
    [res] = parse_all(data)
    assert (res.status, res.body) == (413, b"413 Payload Too Large\n")


async def test_curl_upload_over_the_limit_shows_the_413_text(
    nursery: trio.Nursery, curl: object, tmp_path: Path
) -> None:
    server = await start(nursery, read_all_body, max_body_size=MiB)
    big = tmp_path / "big.bin"
    big.write_bytes(UPLOAD)
    responses, out, err = await run_curl(
        "-H", "Expect:", "--data-binary", f"@{big}", f"http://{HOST}:{server.port}/upload"
    )
    assert [status for status, _ in responses] == [413], err
    assert out == "413 Payload Too Large\n"


# -- hooks for protocols on top: set_headers, add_trailers, send_file ---------------
async def test_set_headers_takes_pairs_and_repeats_a_name_per_line(nursery: trio.Nursery) -> None:
    async def app(req: Request, res: Response) -> None:
        res.set_header("X-Old", "replaced")
        res.set_headers([(b"set-cookie", b"a=1"), ("Set-Cookie", "b=2"), (b"X-Old", b"new")])
        await res.end(b"ok")

    server = await start(nursery, app)
    raw = await exchange(server.port, get("/", "Connection: close"))
    assert b"set-cookie: a=1\r\nSet-Cookie: b=2\r\n" in raw
    assert b"X-Old: new\r\n" in raw and b"replaced" not in raw


async def test_add_trailers_sends_a_trailer_section_after_the_chunked_body(
    nursery: trio.Nursery,
) -> None:
    refused: list[Exception] = []

    async def app(req: Request, res: Response) -> None:
        res.set_header("Trailer", "X-Checksum")
        await res.write(b"hello ")
        try:
            res.add_trailers({"Content-Length": "5"})  # framing never goes in a trailer
        except ValueError as exc:
            refused.append(exc)
        res.add_trailers([(b"X-Checksum", b"5d41402a")])
        await res.end(b"world")

    server = await start(nursery, app)
    head, body, trailers = await fetch_with_trailers(server.port, get("/"))
    assert (head.status_code, body) == (200, b"hello world")
    assert trailers == [(b"X-Checksum", b"5d41402a")]
    assert len(refused) == 1


async def test_trailers_added_before_the_head_make_end_data_chunked(
    nursery: trio.Nursery,
) -> None:
    async def app(req: Request, res: Response) -> None:
        res.add_trailers({"Server-Timing": "app;dur=1"})
        await res.end(b"whole")

    server = await start(nursery, app)
    head, body, trailers = await fetch_with_trailers(server.port, get("/"))
    assert (b"transfer-encoding", b"chunked") in head.headers
    assert body == b"whole"
    assert trailers == [(b"Server-Timing", b"app;dur=1")]


async def test_send_file_sends_a_file_with_its_length_and_keeps_the_connection(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB: several sendfile calls on loopback
    (tmp_path / "data.bin").write_bytes(data)

    async def app(req: Request, res: Response) -> None:
        if req.url == "/part":
            with open(tmp_path / "data.bin", "rb") as file:  # a descriptor the app owns
                await res.send_file(file.fileno(), offset=10, count=100)
        else:
            await res.send_file(tmp_path / "data.bin")

    server = await start(nursery, app)
    client = await RawClient.connect(server.port)
    await client.send(get("/") + get("/part") + get("/", method="HEAD"))
    whole, part, head = await client.response(), await client.response(), await client.response(
        head_only=True
    )
    await client.aclose()
    assert whole.headers["content-length"] == str(len(data)) and whole.body == data
    assert part.body == data[10:110]
    assert head.headers["content-length"] == str(len(data))
    assert client.buffer == b""  # no body bytes after the HEAD response


async def test_send_file_of_a_missing_file_lets_the_server_answer_500(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async def app(req: Request, res: Response) -> None:
        await res.send_file(tmp_path / "missing")

    server = await start(nursery, app)
    raw = await exchange(server.port, get("/", "Connection: close"))
    assert raw.startswith(b"HTTP/1.1 500 ")


async def test_send_file_after_write_continues_the_chunked_body_over_tls(
    serve: Any, server_identity: Any, ca_pem: bytes, tmp_path: Path
) -> None:
    data = b"0123456789" * 20000  # over FILE_CHUNK: read in pieces, as TLS needs
    (tmp_path / "data.bin").write_bytes(data)

    async def app(req: Request, res: Response) -> None:
        await res.write(b"head:")
        await res.send_file(str(tmp_path / "data.bin"))

    server = await serve(trionet.https.serve, app, **server_identity.options())
    res = await trionet.https.request(f"https://localhost:{server.port}/", ca=ca_pem, timeout=WAIT)
    assert res.headers["transfer-encoding"] == "chunked"
    assert res.body == b"head:" + data
