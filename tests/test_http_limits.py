"""The HTTP server's request policy, without sockets: trionet.http._limits."""

from __future__ import annotations

import h11
import pytest

from trionet.http._limits import (
    MAX_CONTENT_LENGTH,
    MAX_HEADERS_COUNT,
    ChunkedScanner,
    ClientError,
    analyze_request,
    check_head,
    check_partial_head,
    check_target,
    check_version,
    parse_error,
    skip_empty_lines,
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


# -- issue 11 §5: framing, trailers, versions, targets ----------------------------------------
def test_empty_lines_before_a_request_are_skipped_but_not_bare_lf() -> None:
    assert skip_empty_lines(b"\r\n\r\nGET", 0) == 4
    assert skip_empty_lines(b"xx\r\nGET", 2) == 4
    assert skip_empty_lines(b"GET", 0) == 0
    assert skip_empty_lines(b"\nGET", 0) == 0  # the head checks refuse it
    assert skip_empty_lines(b"\r\n\r", 0) == 2  # a CR whose LF is still to come


def test_connection_close_counts_on_any_line() -> None:
    for lines in (
        b"Connection: close\r\nConnection: x\r\n",
        b"Connection: x\r\nConnection: close\r\n",
    ):
        head = b"GET / HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n"
        assert not analyze_request(parse(head), head).keep_alive


@pytest.mark.parametrize(
    ("lines", "status"),
    [
        (b"Expect: 100-continue\r\nExpect: x\r\n", 417),
        (b"Expect: x\r\nExpect: 100-continue\r\n", 417),
        (b"Expect: 100-continue, y\r\n", 417),
    ],
)
def test_every_expect_member_counts(lines: bytes, status: int) -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n"
    assert status_of(analyze_request, parse(head), head) == status


def test_repeated_100_continue_is_still_100_continue() -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nExpect: 100-Continue\r\n\r\n"
    assert analyze_request(parse(head), head).expect_continue


def test_http10_with_transfer_encoding_must_close() -> None:
    """RFC 9112 §6.1: even if the client asked for keep-alive."""
    head = b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
    info = analyze_request(parse(head), head)
    assert (info.content_length, info.keep_alive) == (None, False)


def test_content_length_is_capped_at_2_63_minus_1() -> None:
    def head(length: int) -> bytes:
        return b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % length

    top = head(MAX_CONTENT_LENGTH)
    assert analyze_request(parse(top), top).content_length == 2**63 - 1
    over = head(MAX_CONTENT_LENGTH + 1)
    assert status_of(analyze_request, parse(over), over) == 400


@pytest.mark.parametrize("version", [b"1.2", b"1.9"])
def test_higher_minor_versions_are_served_as_1_1(version: bytes) -> None:
    event = check_version(parse(b"GET / HTTP/%s\r\nHost: x\r\n\r\n" % version))
    assert (event.http_version, event.target, event.headers) == (b"1.1", b"/", [(b"host", b"x")])


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET / HTTP/0.9\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.2\r\n\r\n",  # as 1.1, it needs a Host
    ],
    ids=["2.0", "9.9", "0.9", "1.2 without Host"],
)
def test_other_versions_get_400(head: bytes) -> None:
    assert status_of(check_version, parse(head)) == 400


@pytest.mark.parametrize(
    ("method", "target"),
    [
        (b"GET", b"/a?b"),
        (b"OPTIONS", b"*"),
        (b"GET", b"http://example.com/a"),
        (b"GET", b"https://[::1]:8443/"),
        (b"CONNECT", b"example.com:443"),
        (b"CONNECT", b"127.0.0.1:80"),
        (b"CONNECT", b"[::1]:443"),
    ],
)
def test_target_forms_their_methods_may_use(method: bytes, target: bytes) -> None:
    check_target(method, target)


@pytest.mark.parametrize(
    ("method", "target"),
    [
        (b"GET", b"localhost:80"),
        (b"POST", b"example.com:443"),
        (b"GET", b"a/b"),
        (b"GET", b"?q"),
        (b"CONNECT", b"/"),
        (b"CONNECT", b"example.com"),
        (b"CONNECT", b"http://example.com:443/"),
        (b"CONNECT", b"user@example.com:443"),
    ],
)
def test_target_forms_their_methods_may_not_use(method: bytes, target: bytes) -> None:
    assert status_of(check_target, method, target) == 400


def test_h11_errors_become_400_or_431() -> None:
    assert parse_error(h11.RemoteProtocolError("x"), "head").status == 400
    assert parse_error(h11.RemoteProtocolError("x", error_status_hint=501), "head").status == 400
    too_big = parse_error(h11.RemoteProtocolError("x", error_status_hint=431), "trailers")
    assert (too_big.status, too_big.code) == (431, "HPE_HEADER_OVERFLOW")


@pytest.mark.parametrize(
    "line",
    [b"3;a=b", b"3;a", b'3;a="x y"', b'3;a="q\\"s"', b"3;a=b;c", b"3; a = b ", b"3;a ;b", b"3  "],
)
def test_chunk_extensions_rfc_9112_allows(line: bytes) -> None:
    scanner = ChunkedScanner()
    scanner.scan(line + b"\r\nabc\r\n0\r\n\r\n")
    assert scanner.done


@pytest.mark.parametrize(
    "line",
    [b"3;a\rb", b"3;a\x00", b"3;", b"3;a b", b"3 ;a", b'3;a="open', b"3;a=\x01", b"3;=b"],
    ids=[
        "bare CR",
        "NUL",
        "no name",
        "space in name",
        "space before",
        "open quote",
        "CTL",
        "no name=",
    ],
)
def test_chunk_extensions_rfc_9112_refuses(line: bytes) -> None:
    assert status_of(ChunkedScanner().scan, line + b"\r\nabc\r\n0\r\n\r\n") == 400


def test_trailers_are_bounded_by_the_header_budget() -> None:
    line = b"X-A: " + b"t" * 95 + b"\r\n"  # 102 bytes
    scanner = ChunkedScanner(max_trailer_size=1020)
    scanner.scan(b"0\r\n" + line * 10 + b"\r\n")
    assert scanner.done
    assert status_of(ChunkedScanner(max_trailer_size=1019).scan, b"0\r\n" + line * 10) == 431


def test_an_unfinished_trailer_line_counts_too() -> None:
    """A trailer line with no end yet is refused once it alone is over the budget."""
    scanner = ChunkedScanner(max_trailer_size=100)
    assert scanner.scan(b"0\r\n" + b"x" * 100) == 3  # waits for the rest of the line
    assert status_of(ChunkedScanner(max_trailer_size=100).scan, b"0\r\n" + b"x" * 101) == 431


def test_trailers_are_bounded_by_the_header_count() -> None:
    lines = b"a:b\r\n" * MAX_HEADERS_COUNT
    scanner = ChunkedScanner(max_trailer_size=1 << 20)
    scanner.scan(b"0\r\n" + lines + b"\r\n")
    assert scanner.done
    assert (
        status_of(ChunkedScanner(max_trailer_size=1 << 20).scan, b"0\r\n" + lines + b"a:b\r\n")
        == 431
    )


def test_obs_fold_in_trailers_is_refused() -> None:
    assert status_of(ChunkedScanner().scan, b"0\r\nX: a\r\n b\r\n\r\n") == 400
