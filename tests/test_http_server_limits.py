"""trionet.http.serve is as strict as Node: malformed input, limits and timeouts.

Each malformed message that h11 alone accepts (Node 20's llhttp refuses them all:
https://nodejs.org/docs/latest-v20.x/api/http.html#event-clienterror) is sent
as raw bytes; the server must answer 400 (or 431/417/413/408) and close,
and a request smuggled behind the bad one must never reach the app.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
from collections.abc import Iterator

import pytest
import trio
from _http_server_support import RawClient, exchange, get, hello, parse_all, start
from conftest import PEERS

import trionet
from trionet.http import Request, Response

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
CHUNKED = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What was logged at ERROR or above: for client errors, this must stay empty."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def recording_app(paths: list[str]) -> trionet.http._server.App:
    """An app that reads the body, echoes it, and records every path it served."""

    async def app(req: Request, res: Response) -> None:
        paths.append(req.path)
        await res.end(await req.read())

    return app


# Rows h11 0.16 accepts (or answers differently) and Node refuses with 400.
STRICTNESS_ROWS = {
    "bare LF line ends": b"GET / HTTP/1.1\nHost: x\n\n",
    "bare LF in one header line": b"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n",
    "obs-fold continuation": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n",
    "obs-fold with tab": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tfolded\r\n\r\n",
    "repeated Content-Length": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"
    ),
    "listed Content-Length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc",
    "conflicting Content-Length": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
    ),
    "signed Content-Length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
    "lower-case method": b"get / HTTP/1.1\r\nHost: x\r\n\r\n",
    "unknown method": b"FROB / HTTP/1.1\r\nHost: x\r\n\r\n",
    "missing Host on 1.1": b"GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n",
    "NUL in a value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "malformed request line": b"GET /\r\nHost: x\r\n\r\n",
    "garbage request line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    "unsupported Transfer-Encoding": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"
    ),
    "Content-Length with Transfer-Encoding": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n"
    ),
    "Transfer-Encoding with Content-Length": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n"
        b"0\r\n\r\n"
    ),
    "duplicate Transfer-Encoding lines": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "Transfer-Encoding chunked, identity": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"
    ),
    "lone CR hiding a header (GHSA-cggh-pq45-6h9x)": (
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Abc: \rxTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "chunk size of 17 hex digits": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"00000000000000001\r\na\r\n0\r\n\r\n"
    ),
    "chunk size of 18 F": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\n"
    ),
    "chunk size not hex": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n"
    ),
    "bare LF in chunked framing": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n"
    ),
    "chunk longer than its size": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n"
    ),
    # Issue 11 §5 rows: each was a 200 or a 500 before.
    "bare CR in a chunk extension": CHUNKED + b"3;a\rb\r\nabc\r\n0\r\n\r\n",
    "NUL in a chunk extension": CHUNKED + b"3;a\x00\r\nabc\r\n0\r\n\r\n",
    "chunk extension without a name": CHUNKED + b"3;\r\nabc\r\n0\r\n\r\n",
    "space inside a chunk extension": CHUNKED + b"3;a b\r\nabc\r\n0\r\n\r\n",
    "space before a chunk extension": CHUNKED + b"3 ;a\r\nabc\r\n0\r\n\r\n",
    "trailer line without a colon": CHUNKED + b"3\r\nabc\r\n0\r\nfoo\r\n\r\n",
    "space before colon in a trailer": CHUNKED + b"3\r\nabc\r\n0\r\nfoo : b\r\n\r\n",
    "NUL in a trailer": CHUNKED + b"3\r\nabc\r\n0\r\nfoo: a\x00b\r\n\r\n",
    "obs-fold in trailers": CHUNKED + b"3\r\nabc\r\n0\r\nfoo: b\r\n c\r\n\r\n",
    "HTTP/2.0 on HTTP/1": b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    "HTTP/9.9": b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    "HTTP/0.9 with a version": b"GET / HTTP/0.9\r\nHost: x\r\n\r\n",
    "HTTP/1.2 without Host (served as 1.1)": b"GET / HTTP/1.2\r\n\r\n",
    "authority-form target on GET": b"GET localhost:80 HTTP/1.1\r\nHost: x\r\n\r\n",
    "authority-form target on POST": (
        b"POST localhost:80 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    ),
    "relative target": b"GET a/b HTTP/1.1\r\nHost: x\r\n\r\n",
    "Content-Length over 2^64": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n"
    ),
}


@pytest.fixture(scope="module")
def node_server(node: str) -> Iterator[int]:
    """Node's own http server, the oracle the strictness rows are checked against."""
    proc = subprocess.Popen(
        [node, str(PEERS / "http_server_node.js")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait(timeout=10)


def exchange_blocking(port: int, data: bytes) -> bytes:
    """Send raw bytes with a plain socket and read until the peer closes (bounded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    return received


# Rows where trionet is stricter than Node 20 on purpose: llhttp refuses a
# chunk size only when it overflows 64 bits, so 17 digits with leading zeros
# pass; trionet caps the digits, as the issue asks.
STRICTER_THAN_NODE = {"chunk size of 17 hex digits"}


@pytest.mark.parametrize("raw", STRICTNESS_ROWS.values(), ids=STRICTNESS_ROWS.keys())
def test_node_refuses_the_same_rows(
    node_server: int, raw: bytes, request: pytest.FixtureRequest
) -> None:
    """The oracle: Node 20's llhttp answers each row with 400 as well."""
    row = request.node.callspec.id
    data = exchange_blocking(node_server, raw + SMUGGLED)
    if row in STRICTER_THAN_NODE:
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    else:
        assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert b"/smuggled" not in data


@pytest.mark.parametrize("raw", STRICTNESS_ROWS.values(), ids=STRICTNESS_ROWS.keys())
async def test_strict_like_node_400_and_close(
    nursery: trio.Nursery, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    paths: list[str] = []
    server = await start(nursery, recording_app(paths))
    data = await exchange(server.port, raw + SMUGGLED)  # returns once the server closed
    [res] = parse_all(data)
    assert res.status == 400
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n") and res.headers["connection"] == "close"
    assert "/smuggled" not in paths
    assert errors_logged(caplog) == []


async def test_cl_te_smuggling_is_never_served(nursery: trio.Nursery) -> None:
    """CL.TE: a front end honouring Content-Length would forward the prefix below as body."""
    paths: list[str] = []
    server = await start(nursery, recording_app(paths))
    smuggle = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    attack = (
        b"POST /front HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n%s" % (len(smuggle), smuggle)
    )
    data = await exchange(server.port, attack + get("/after"))
    assert [r.status for r in parse_all(data)] == [400]
    assert paths == []


async def test_valid_chunk_extension_and_sixteen_digit_size(nursery: trio.Nursery) -> None:
    paths: list[str] = []
    server = await start(nursery, recording_app(paths))
    body = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"0000000000000003;name=value\r\nabc\r\n0\r\n\r\n"
    )
    [res] = parse_all(await exchange(server.port, body))
    assert (res.status, res.body) == (200, b"abc")


async def test_duplicate_host_gets_400_as_rfc_9112_says(nursery: trio.Nursery) -> None:
    # Node 20 answers 200 here, h11 answers 400; RFC 9112 §3.2 says 400. We keep h11's.
    server = await start(nursery, hello)
    [res] = parse_all(await exchange(server.port, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"))
    assert res.status == 400


# -- the header budget ------------------------------------------------------------------
async def test_20kb_request_line_in_one_write_gets_431(nursery: trio.Nursery) -> None:
    server = await start(nursery, hello)
    data = await exchange(server.port, get("/" + "a" * 20_000))
    assert data.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


async def test_20kb_request_line_in_many_writes_gets_431(nursery: trio.Nursery) -> None:
    server = await start(nursery, hello)
    client = await RawClient.connect(server.port)
    request = get("/" + "a" * 20_000)
    try:
        for i in range(0, len(request), 1000):
            await client.send(request[i : i + 1000])
            await trio.sleep(0.001)
    except trio.BrokenResourceError:
        pass  # the server may close before the last piece
    data = await client.read_until_close()
    assert data.startswith(b"HTTP/1.1 431 ")
    await client.aclose()


async def test_head_arriving_byte_by_byte_is_served(nursery: trio.Nursery) -> None:
    server = await start(nursery, hello)
    client = await RawClient.connect(server.port)
    for byte in get("/slow", "X-Pad: " + "p" * 500):
        await client.send(bytes([byte]))
    res = await client.response()
    assert (res.status, res.body) == (200, b"hello GET /slow")
    await client.aclose()


async def test_header_block_over_max_header_size(nursery: trio.Nursery) -> None:
    server = await start(nursery, hello, max_header_size=1024)
    small = await exchange(server.port, get("/", "X-A: " + "b" * 900, "Connection: close"))
    assert small.startswith(b"HTTP/1.1 200 OK")
    big = await exchange(server.port, get("/", "X-A: " + "b" * 1100))
    assert big.startswith(b"HTTP/1.1 431 ")


async def test_more_than_2000_headers_gets_431(nursery: trio.Nursery) -> None:
    server = await start(nursery, hello)
    many = ["a:b"] * 2001  # 10 KB: under the byte budget, over the count
    data = await exchange(server.port, get("/", *many))
    assert data.startswith(b"HTTP/1.1 431 ")
    ok = await exchange(server.port, get("/", *many[:1997], "Connection: close"))
    assert ok.startswith(b"HTTP/1.1 200 OK")


async def test_expect_other_than_100_continue_gets_417(nursery: trio.Nursery) -> None:
    paths: list[str] = []
    server = await start(nursery, recording_app(paths))
    data = await exchange(server.port, get("/", "Expect: something-else"))
    assert data.startswith(b"HTTP/1.1 417 Expectation Failed\r\n")
    assert paths == []


# -- bodies ---------------------------------------------------------------------------------
async def test_body_over_max_body_size_gets_413(nursery: trio.Nursery) -> None:
    paths: list[str] = []
    server = await start(nursery, recording_app(paths), max_body_size=10)
    sized = await exchange(server.port, get("/", "Content-Length: 11", method="POST") + b"x" * 11)
    assert sized.startswith(b"HTTP/1.1 413 Payload Too Large\r\n")
    assert paths == []  # refused before the app runs
    chunked = get("/c", "Transfer-Encoding: chunked", method="POST") + b"6\r\nxxxxxx\r\n" * 2
    data = await exchange(server.port, chunked + b"0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 413 ")
    ok = await exchange(
        server.port, get("/", "Content-Length: 10", "Connection: close", method="POST") + b"y" * 10
    )
    assert parse_all(ok)[0].body == b"y" * 10


async def test_client_closing_mid_body_is_a_400_for_the_app(nursery: trio.Nursery) -> None:
    errors: list[BaseException] = []

    async def app(req: Request, res: Response) -> None:
        try:
            await req.read()
        except trionet.ProtocolError as exc:
            errors.append(exc)
            raise

    server = await start(nursery, app)
    client = await RawClient.connect(server.port)
    await client.send(get("/", "Content-Length: 100", method="POST") + b"short")
    await client.sock.send_eof()
    data = await client.read_until_close()
    assert data.startswith(b"HTTP/1.1 400 ")
    assert len(errors) == 1
    await client.aclose()


# -- timeouts ----------------------------------------------------------------------------------
async def test_slowloris_closed_after_headers_timeout_while_others_are_served(
    nursery: trio.Nursery,
) -> None:
    server = await start(nursery, hello, headers_timeout=0.5)
    slow = await RawClient.connect(server.port)
    start_time = trio.current_time()
    await slow.send(b"GET / HTTP/1.1\r\nHost: x\r\n")

    async def drip() -> None:
        try:
            for i in range(100):
                await slow.send(f"X-{i}: y\r\n".encode())
                await trio.sleep(0.05)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async with trio.open_nursery() as inner:
        inner.start_soon(drip)
        # Meanwhile a normal client is served at once.
        normal = await exchange(server.port, get("/", "Connection: close"))
        assert parse_all(normal)[0].status == 200
        data = await slow.read_until_close()
        inner.cancel_scope.cancel()
    elapsed = trio.current_time() - start_time
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and b"Connection: close" in data
    assert 0.4 < elapsed < 3
    await slow.aclose()


async def test_headers_timeout_starts_at_accept(nursery: trio.Nursery) -> None:
    server = await start(nursery, hello, headers_timeout=0.3, keep_alive_timeout=10)
    client = await RawClient.connect(server.port)
    with trio.fail_after(3):
        assert await client.read_until_close() == b""  # silent: not one byte arrived
    await client.aclose()


async def test_request_timeout_bounds_a_slow_body(nursery: trio.Nursery) -> None:
    server = await start(nursery, recording_app([]), request_timeout=0.3)
    client = await RawClient.connect(server.port)
    await client.send(get("/", "Content-Length: 10", method="POST") + b"abc")
    with trio.fail_after(3):
        data = await client.read_until_close()
    assert data.startswith(b"HTTP/1.1 408 ")
    await client.aclose()


async def test_max_connections(nursery: trio.Nursery) -> None:
    server = await start(nursery, hello, max_connections=1)
    first = await RawClient.connect(server.port)
    await first.send(get())
    await first.response()
    second = await RawClient.connect(server.port)
    assert await second.read_until_close() == b""
    await first.aclose()
    await second.aclose()


@pytest.mark.parametrize(
    "option",
    [
        {"headers_timeout": -1},
        {"max_header_size": 0},
        {"max_body_size": -5},
        {"max_requests_per_socket": -1},
    ],
)
async def test_nonsense_limits_are_refused(nursery: trio.Nursery, option: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(option))):
        await start(nursery, hello, **option)


# -- framing that must close, trailers, versions, targets (issue 11 §5) -----------------------
def version_app(seen: list[str]) -> trionet.http._server.App:
    """An app that reads the body and answers with the version it was served as."""

    async def app(req: Request, res: Response) -> None:
        seen.append(req.path)
        body = await req.read()
        await res.end(f"{req.http_version} {len(body)}".encode())

    return app


async def test_http10_with_transfer_encoding_is_served_then_closed(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 9112 §6.1: a 1.0 message with Transfer-Encoding has faulty framing: close after it."""
    paths: list[str] = []
    server = await start(nursery, recording_app(paths))
    request = (
        b"POST /te HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    [res] = parse_all(await exchange(server.port, request + SMUGGLED))
    assert (res.status, res.body, res.headers["connection"]) == (200, b"abc", "close")
    assert paths == ["/te"]
    assert errors_logged(caplog) == []


@pytest.mark.parametrize(
    "lines", [("close", "x-trace"), ("x-trace", "close")], ids=["first line", "last line"]
)
async def test_connection_close_on_any_line_closes(
    nursery: trio.Nursery, lines: tuple[str, str]
) -> None:
    paths: list[str] = []
    server = await start(nursery, recording_app(paths))
    request = get("/one", *(f"Connection: {value}" for value in lines))
    [res] = parse_all(await exchange(server.port, request + SMUGGLED))
    assert (res.status, res.headers["connection"]) == (200, "close")
    assert paths == ["/one"]


@pytest.mark.parametrize(
    "lines", [("100-continue", "x-odd"), ("x-odd", "100-continue")], ids=["first", "last"]
)
async def test_expect_is_read_from_every_line(
    nursery: trio.Nursery, lines: tuple[str, str]
) -> None:
    """RFC 9110 §10.1.1: an Expect member other than 100-continue gets 417, on any line."""
    paths: list[str] = []
    server = await start(nursery, recording_app(paths))
    request = get("/", *(f"Expect: {v}" for v in lines), "Content-Length: 1", method="POST")
    data = await exchange(server.port, request + b"a")
    assert data.startswith(b"HTTP/1.1 417 Expectation Failed\r\n") and b"Connection: close" in data
    assert paths == []


async def test_valid_trailer_split_across_reads_is_served(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A 106-byte trailer whose blank line comes in a later read: once a 500 (data loss)."""
    server = await start(nursery, version_app([]))
    client = await RawClient.connect(server.port)
    trailer = b"X-Checksum: " + b"c" * 92 + b"\r\n"
    assert len(trailer) == 106
    await client.send(
        get("/up", "Transfer-Encoding: chunked", method="POST") + b"3\r\nabc\r\n0\r\n"
    )
    await trio.sleep(0.05)  # the server reads the size line and waits for the trailers
    await client.send(trailer)
    await trio.sleep(0.05)
    await client.send(b"\r\n")
    res = await client.response()
    assert (res.status, res.body) == (200, b"1.1 3")
    await client.send(get("/again"))  # the connection is still good
    assert (await client.response()).status == 200
    await client.aclose()
    assert errors_logged(caplog) == []


@pytest.mark.parametrize("piece", [None, 1000], ids=["one write", "1000-byte writes"])
async def test_trailers_over_the_header_budget_get_431(
    nursery: trio.Nursery, piece: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    """3,000 trailer lines (18 KB) are over max_header_size: 431, not a 500 and a reset."""
    server = await start(nursery, version_app([]))
    request = CHUNKED + b"3\r\nabc\r\n0\r\n" + b"a: b\r\n" * 3000 + b"\r\n"
    client = await RawClient.connect(server.port)
    step = piece or len(request)
    try:
        for i in range(0, len(request), step):
            await client.send(request[i : i + step])
            await trio.sleep(0.001)
    except trio.BrokenResourceError:
        pass  # the server may close before the last piece
    data = await client.read_until_close()
    await client.aclose()
    assert data.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"Connection: close" in data
    assert errors_logged(caplog) == []


async def test_trailers_get_max_header_size(nursery: trio.Nursery) -> None:
    server = await start(nursery, version_app([]), max_header_size=1024)
    body = b"3\r\nabc\r\n0\r\n"
    ok = CHUNKED + body + b"X-A: " + b"t" * 900 + b"\r\n\r\n"
    assert (
        parse_all(await exchange(server.port, ok + get("/", "Connection: close")))[0].status == 200
    )
    big = CHUNKED + body + b"X-A: " + b"t" * 1100 + b"\r\n\r\n"
    assert (await exchange(server.port, big)).startswith(b"HTTP/1.1 431 ")


async def test_http_1_2_is_served_as_1_1(nursery: trio.Nursery) -> None:
    """RFC 9110 §2.5: a higher minor version is served as the highest the server has."""
    paths: list[str] = []
    server = await start(nursery, version_app(paths))
    client = await RawClient.connect(server.port)
    await client.send(get("/a", version="1.2") + get("/b"))
    first, second = await client.response(), await client.response()
    assert (first.body, first.headers["connection"]) == (b"1.1 0", "keep-alive")
    assert (second.status, paths) == (200, ["/a", "/b"])
    await client.aclose()


@pytest.mark.parametrize(
    "pieces",
    [
        [b"\r\n" + get("/a", "Connection: close")],
        [b"\r\n\r\n\r\n" + get("/a", "Connection: close")],
        [b"\r", b"\n\r", b"\n" + get("/a", "Connection: close")],
    ],
    ids=["one CRLF", "three CRLFs", "CRLFs split across writes"],
)
async def test_empty_lines_before_a_request_are_ignored(
    nursery: trio.Nursery, pieces: list[bytes]
) -> None:
    """RFC 9112 §2.2: a server SHOULD ignore at least one empty line before a request."""
    server = await start(nursery, hello)
    client = await RawClient.connect(server.port)
    for piece in pieces:
        await client.send(piece)
        await trio.sleep(0.02)
    [res] = parse_all(await client.read_until_close())
    assert (res.status, res.body) == (200, b"hello GET /a")
    await client.aclose()


async def test_crlf_after_a_body_does_not_spoil_the_next_request(nursery: trio.Nursery) -> None:
    paths: list[str] = []
    server = await start(nursery, recording_app(paths))
    post = get("/post", "Content-Length: 3", method="POST") + b"abc\r\n"
    responses = parse_all(await exchange(server.port, post + get("/next", "Connection: close")))
    assert [r.status for r in responses] == [200, 200]
    assert paths == ["/post", "/next"]


async def test_content_length_over_2_63_is_refused_at_once(nursery: trio.Nursery) -> None:
    """Not after request_timeout (300 s) of waiting for a body no one can send."""
    server = await start(nursery, hello)
    client = await RawClient.connect(server.port)
    await client.send(get("/", f"Content-Length: {2**63}", method="POST") + b"abc")
    with trio.fail_after(3):
        data = await client.read_until_close()
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    await client.aclose()
    largest = await exchange(server.port, get("/", f"Content-Length: {2**63 - 1}", method="POST"))
    assert largest.startswith(b"HTTP/1.1 200 OK\r\n")  # the app answered without reading


async def test_connect_needs_an_authority_form_target(nursery: trio.Nursery) -> None:
    """RFC 9112 §3.2.3: CONNECT names host:port; anything else is a 400, not a tunnel."""
    tunnels: list[str] = []

    async def on_connect(req: Request, sock: trionet.net.Socket, head: bytes) -> None:
        tunnels.append(req.url)

    server = await start(nursery, hello, on_connect=on_connect)
    data = await exchange(server.port, b"CONNECT / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    await exchange(server.port, b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n")
    assert tunnels == ["[::1]:443"]


@pytest.mark.parametrize(
    "request_line", [b"OPTIONS * HTTP/1.1", b"GET http://example.com/a?b=c HTTP/1.1"]
)
async def test_asterisk_and_absolute_form_reach_the_app(
    nursery: trio.Nursery, request_line: bytes
) -> None:
    server = await start(nursery, hello)
    data = await exchange(server.port, request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
    [res] = parse_all(data)
    method, target, _ = request_line.split(b" ")
    assert (res.status, res.body) == (200, b"hello %s %s" % (method, target))
