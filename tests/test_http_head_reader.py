"""The server's fast head reader gives what h11 gives, or leaves the head to h11.

``trionet.http._body`` reads the common request head in one pass with h11's
own grammar instead of h11's reader (a quarter of the server's time per
request). It must never accept a head h11 refuses, nor read one differently:
these tests hold it to h11's ``Connection`` as the oracle, on heads built
from the lines that matter (Host, Content-Length, Transfer-Encoding, odd
bytes and spacing). Through real sockets the same heads are covered by
test_http_server_limits.py and test_http_server_fuzz.py.
"""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trionet.http._body import _read_plain_head, parse_head
from trionet.http._limits import ClientError

CURL_HEAD = (
    b"GET /json?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: curl/8.5.0\r\n"
    b"Accept: */*\r\n\r\n"
)

REQUEST_LINES = [
    b"GET / HTTP/1.1", b"GET / HTTP/1.0", b"POST /a?b=1 HTTP/1.1", b"get /x HTTP/1.1",
    b"GET * HTTP/1.1", b"GET / HTTP/1.2", b"GET / HTTP/2.0", b"GET  / HTTP/1.1",
    b"GET / HTTP/1.1 ", b"G@T / HTTP/1.1", b"GET /\x80 HTTP/1.1", b"GET / http/1.1",
    b"", b"GET /",
]  # fmt: skip
HEADER_LINES = [
    b"Host: x", b"host:x", b"HOST:  x  ", b"Host:", b"Host: a b",
    b"Content-Length: 3", b"content-length:0", b"Content-Length: 03", b"Content-Length: 3, 3",
    b"Content-Length: 3,4", b"Content-Length: ", b"Content-Length: x",
    b"Content-Length: 123456789012345678901", b"Content-Length: 12345678901234567890",
    b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip",
    b"X-A: v", b"X-A:\tv\t", b"X-A: v  w", b"X-A: \x80\xff", b"X-A: a\x00b", b"X-A: a\rb",
    b"X-A : v", b"X A: v", b"X-A", b": v", b" folded", b"Connection: close",
    b"Expect: 100-continue", b"Upgrade: websocket",
]  # fmt: skip


def with_h11(head: bytes) -> h11.Request | None:
    """What h11's own connection makes of ``head``: the event, or None if it refuses."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    assert isinstance(event, h11.Request)
    return event


def fields(event: h11.Request) -> tuple[object, ...]:
    return (
        event.method, event.target, event.http_version, event.headers._full_items,
        list(event.headers), event.headers.raw_items(),
    )  # fmt: skip


def test_a_curl_head_is_read_in_one_pass_to_the_event_h11_makes() -> None:
    event = _read_plain_head(CURL_HEAD)
    assert event is not None
    expected = with_h11(CURL_HEAD)
    assert expected is not None
    assert fields(event) == fields(expected)
    assert event == expected
    assert type(event.method) is bytes and type(event.headers[0][1]) is bytes


@pytest.mark.parametrize(
    "lines",
    [
        [b"Host: a", b"Host: b"],  # h11: "Found multiple Host: headers"
        [b"X-A: v"],  # HTTP/1.1 without Host
        [b"Host: x", b"Content-Length: 3", b"Content-Length: 3"],  # h11 folds the repeat
        [b"Host: x", b"Content-Length: 3, 3"],  # and the list
        [b"Host: x", b"Transfer-Encoding: chunked"],  # needs h11's connection for the body
        [b"Host: x", b"X A: v"],  # not h11's grammar
    ],
)
def test_what_h11_refuses_or_rewrites_is_left_to_h11(lines: list[bytes]) -> None:
    head = b"\r\n".join([b"POST / HTTP/1.1", *lines, b"", b""])
    assert _read_plain_head(head) is None


@settings(max_examples=400, deadline=None)
@given(
    request_line=st.sampled_from(REQUEST_LINES),
    header_lines=st.lists(st.sampled_from(HEADER_LINES), max_size=6),
)
def test_the_fast_reader_and_parse_head_agree_with_h11(
    request_line: bytes, header_lines: list[bytes]
) -> None:
    head = b"\r\n".join([request_line, *header_lines, b"", b""])
    expected = with_h11(head)
    fast = _read_plain_head(head)
    if fast is not None:
        assert expected is not None, head
        assert fields(fast) == fields(expected), head
    if expected is None:
        with pytest.raises(ClientError):
            parse_head(head, 16384)
    elif expected.http_version in (b"1.0", b"1.1"):
        event, _ = parse_head(head, 16384)
        assert fields(event) == fields(expected), head
