"""The HTTP server's request policy, without sockets: trionet.http._limits."""

from __future__ import annotations

import h11
import pytest

from trionet.http._limits import (
    MAX_HEADERS_COUNT,
    ChunkedScanner,
    ClientError,
    analyze_request,
    check_head,
    check_partial_head,
)


def parse(head: bytes) -> h11.Request:
    """Parse a head with h11, as the driver does before applying the rules."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head)
    event = conn.next_event()
    assert isinstance(event, h11.Request)
    return event


def status_of(fn: object, *args: object) -> int:
    with pytest.raises(ClientError) as info:
        fn(*args)  # type: ignore[operator]
    return info.value.status


# -- whole heads ---------------------------------------------------------------------
def test_a_plain_head_passes() -> None:
    check_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 16384)


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET / HTTP/1.1\nHost: x\n\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nA: b\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\tc\r\n\r\n", 400),
        (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"a:b\r\n" * (MAX_HEADERS_COUNT + 1) + b"\r\n", 431),
    ],
    ids=["bare LF", "one bare LF", "obs-fold", "obs-fold tab", "20 KB line", "2001 headers"],
)
def test_heads_node_refuses(head: bytes, status: int) -> None:
    assert status_of(check_head, head, 16384) == status


def test_the_budget_does_not_depend_on_read_sizes() -> None:
    """An incomplete head over the budget is refused as early as a complete one."""
    head = b"GET /" + b"a" * 20_000
    for cut in (1000, 16_000, 16_385, len(head)):
        if cut > 16384:
            assert status_of(check_partial_head, head[:cut], 16384) == 431
        else:
            check_partial_head(head[:cut], 16384)


def test_partial_head_bare_lf_is_refused_before_the_blank_line() -> None:
    assert status_of(check_partial_head, b"GET / HTTP/1.1\nHost: x\n", 16384) == 400
    check_partial_head(b"GET / HTTP/1.1\r\nHost: x\r", 16384)  # CR now, LF next read


def test_partial_head_checks_only_new_bytes_but_sees_straddling_pairs() -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r"
    check_partial_head(head + b"\n", 16384, new_from=len(head))  # CR, then LF
    with pytest.raises(ClientError):
        check_partial_head(head + b"\nX: y\n", 16384, new_from=len(head))
    check_partial_head(b"bare\n" + b"GET / HTTP/1.1\r\n", 16384, new_from=5)  # checked before


# -- parsed heads -----------------------------------------------------------------------
def test_framing_and_keep_alive_of_a_get() -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    info = analyze_request(parse(head), head)
    assert (info.content_length, info.keep_alive, info.expect_continue, info.upgrade) == (
        0,
        True,
        False,
        False,
    )


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [("1.1", "", True), ("1.1", "close", False), ("1.0", "", False), ("1.0", "keep-alive", True)],
)
def test_keep_alive_rules(version: str, connection: str, keep_alive: bool) -> None:
    extra = f"Connection: {connection}\r\n" if connection else ""
    head = f"GET / HTTP/{version}\r\nHost: x\r\n{extra}\r\n".encode()
    assert analyze_request(parse(head), head).keep_alive is keep_alive


def test_chunked_body_has_no_length_and_upgrade_needs_connection_upgrade() -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert analyze_request(parse(head), head).content_length is None
    head = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    assert analyze_request(parse(head), head).upgrade
    head = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"
    assert not analyze_request(parse(head), head).upgrade


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"get / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"FROB / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n", 417),
    ],
    ids=["lower-case method", "unknown method", "repeated CL", "listed CL", "CL+TE", "Expect"],
)
def test_parsed_heads_node_refuses(head: bytes, status: int) -> None:
    assert status_of(analyze_request, parse(head), head) == status


# -- chunked framing ------------------------------------------------------------------------
BODY = b"3;ext=1\r\nabc\r\n10\r\n" + b"x" * 16 + b"\r\n0\r\nTrailer: t\r\n\r\n"


def test_scanner_finds_the_end_of_a_chunked_body() -> None:
    scanner = ChunkedScanner()
    end = scanner.scan(BODY + b"GET /next")
    assert scanner.done and BODY[:end] == BODY


@pytest.mark.parametrize("cut", range(1, len(BODY)))
def test_scanner_gives_the_same_end_however_the_bytes_are_split(cut: int) -> None:
    scanner = ChunkedScanner()
    data = BODY[:cut]
    consumed = scanner.scan(data)
    data = data[consumed:] + BODY[cut:] + b"NEXT"
    end = scanner.scan(data)
    assert scanner.done and data[end:] == b"NEXT"


@pytest.mark.parametrize(
    "body",
    [b"1" + b"0" * 16 + b"\r\n", b"FFFFFFFFFFFFFFFFFF\r\n", b"zz\r\n", b"3\nabc", b"3\r\nabcd\r\n"],
    ids=["17 digits", "18 F", "not hex", "bare LF", "data longer than size"],
)
def test_scanner_refuses_what_llhttp_refuses(body: bytes) -> None:
    assert status_of(ChunkedScanner().scan, body) == 400


def test_sixteen_digit_sizes_are_fine() -> None:
    scanner = ChunkedScanner()
    scanner.scan(b"0000000000000001\r\na\r\n0\r\n\r\n")
    assert scanner.done
