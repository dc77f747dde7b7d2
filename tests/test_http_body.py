"""Request bodies without sockets: trionet.http._body's state changes.

``RequestBody.feed`` takes the connection's buffer and returns the next piece
and where the unread bytes start; these tests hand it bytes split as TCP
might. Reading through a real connection is covered in test_http_server*.py.
"""

from __future__ import annotations

import h11
import pytest

from trionet.http._body import DRAIN_LIMIT, RequestBody, parse_head
from trionet.http._limits import ClientError, analyze_request


class NoSource:
    """A BodySource that must not be used: these tests do no I/O."""

    buf = b""
    pos = 0

    async def receive_more(self) -> None:
        raise AssertionError("no I/O expected")

    async def send_informational(self, head: bytes) -> None:
        raise AssertionError("no I/O expected")


def body_for(*headers: str, max_body_size: int | None = None) -> RequestBody:
    """The RequestBody the server makes for a POST with these header lines."""
    head = "\r\n".join(["POST / HTTP/1.1", "Host: x", *headers, "", ""]).encode()
    event, parser = parse_head(head, 16384)
    info = analyze_request(event, head)
    return RequestBody(NoSource(), parser, info, max_body_size, 16384, 0.0)


def feed_all(body: RequestBody, *reads: bytes) -> tuple[list[bytes], bytes]:
    """Feed the reads one by one as the connection appends them: (pieces, unread rest)."""
    pieces: list[bytes] = []
    buf, pos = b"", 0
    for i, data in enumerate(reads):
        buf = buf[pos:] + data
        pos = 0
        while True:
            piece, pos = body.feed(buf, pos)
            if piece is None:
                break
            if not piece:
                return pieces, buf[pos:] + b"".join(reads[i + 1 :])
            pieces.append(piece)
    return pieces, buf[pos:]


def test_a_request_without_a_body_is_done_at_once() -> None:
    body = body_for()
    assert body.done and body.may_keep_alive()
    assert body.feed(b"GET /next", 0) == (b"", 0)  # the next request is not body


def test_a_sized_body_stops_at_its_length_and_leaves_the_next_request() -> None:
    body = body_for("Content-Length: 5")
    pieces, rest = feed_all(body, b"he", b"llo" + b"GET / HTTP/1.1\r\n")
    assert pieces == [b"he", b"llo"] and rest == b"GET / HTTP/1.1\r\n"
    assert body.done and body.left == 0


def test_a_sized_piece_that_is_the_whole_buffer_is_not_copied() -> None:
    body = body_for("Content-Length: 10")
    data = b"0123456789"
    piece, pos = body.feed(data, 0)
    assert piece is data and pos == 10


def test_a_chunked_body_split_anywhere_gives_the_same_bytes_and_trailers() -> None:
    wire = b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Sum: 7\r\n\r\nGET /"
    for cut in range(1, len(wire)):
        body = body_for("Transfer-Encoding: chunked")
        pieces, rest = feed_all(body, wire[:cut], wire[cut:])
        assert b"".join(pieces) == b"abcdefg" and rest == b"GET /", cut
        assert body.done and list(body.trailers) == [(b"X-Sum", b"7")]  # as sent


def test_h11s_refusals_become_client_errors() -> None:
    body = body_for("Transfer-Encoding: chunked")
    with pytest.raises(ClientError) as info:
        feed_all(body, b"0\r\nno colon here\r\n\r\n")
    assert info.value.status == 400 and "chunked body" in str(info.value)
    with pytest.raises(ClientError) as info:
        parse_head(b"GET / HTTP/1.1\r\nHost: x\r\nBad header\r\n\r\n", 16384)
    assert info.value.status == 400 and "request head" in str(info.value)


def test_max_body_size_is_checked_on_the_declared_and_the_received_length() -> None:
    with pytest.raises(ClientError) as info:
        body_for("Content-Length: 11", max_body_size=10)
    assert info.value.status == 413
    body = body_for("Transfer-Encoding: chunked", max_body_size=10)
    with pytest.raises(ClientError) as info:
        feed_all(body, b"6\r\nabcdef\r\n6\r\nghijkl\r\n")
    assert info.value.status == 413


def test_keep_alive_depends_on_what_is_left_to_drain() -> None:
    assert body_for(f"Content-Length: {DRAIN_LIMIT}").may_keep_alive()
    assert not body_for(f"Content-Length: {DRAIN_LIMIT + 1}").may_keep_alive()
    assert body_for("Transfer-Encoding: chunked").may_keep_alive()  # drained, then maybe closed


def test_a_body_held_back_for_100_continue_closes_unless_continue_was_sent() -> None:
    body = body_for("Content-Length: 5", "Expect: 100-continue")
    assert not body.may_keep_alive()  # the client may send it after the response, or never
    body.continue_sent = True
    assert body.may_keep_alive()


async def test_no_100_continue_once_the_response_began() -> None:
    body = body_for("Content-Length: 5", "Expect: 100-continue")
    body.responded = True
    await body.send_continue()  # NoSource would fail if it tried to send
    assert not body.continue_sent


def test_version_other_than_1x_is_refused_and_1_2_served_as_1_1() -> None:
    event, _ = parse_head(b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 16384)
    assert event.http_version == b"1.1"
    with pytest.raises(ClientError):
        parse_head(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 16384)
    assert parse_head(b"GET / HTTP/1.0\r\n\r\n", 16384)[0].http_version == b"1.0"


def test_only_a_chunked_head_keeps_an_h11_connection_and_both_parse_alike() -> None:
    sized = b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Y: z\r\nContent-Length: 3\r\n\r\n"
    chunked = sized.replace(b"Content-Length: 3", b"transfer-ENCODING: chunked")
    event, parser = parse_head(sized, 16384)
    assert parser is None
    assert (event.method, event.target, event.http_version) == (b"POST", b"/a?b=1", b"1.1")
    assert event.headers.raw_items() == [
        (b"Host", b"x"), (b"X-Y", b"z"), (b"Content-Length", b"3")
    ]
    event, parser = parse_head(chunked, 16384)
    assert isinstance(parser, h11.Connection)
    assert event.headers.raw_items()[-1] == (b"transfer-ENCODING", b"chunked")
