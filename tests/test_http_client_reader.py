"""The client's response reader decides exactly what an h11 client connection decides.

:class:`trionet.http._client_reader.ResponseReader` reads responses with h11's
readers but without an ``h11.Connection`` (the fast path of a request sent
whole). Each case below feeds the same bytes, in one piece and byte by byte,
to both and compares the events, the errors, the keep-alive verdict and the
bytes left over: a pure state module, so no sockets.
"""

from __future__ import annotations

from typing import Any

import h11
import pytest

from trionet.http._client_reader import ResponseReader

LIMIT = 16 * 1024

CASES = {
    "content-length": (b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
    "chunked": (
        b"GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n2\r\nbc\r\n0\r\n\r\n",
    ),
    "connection close": (
        b"GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    ),
    "close in a list": (
        b"GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, CLOSE\r\n\r\nok",
    ),
    "http/1.0": (b"GET", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    "head": (b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"),
    "204": (b"GET", b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"),
    "304": (b"GET", b"HTTP/1.1 304 Not Modified\r\n\r\n"),
    "1xx first": (
        b"GET",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
    ),
    "extra bytes": (b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxEXTRA"),
    "unsolicited 101": (b"GET", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"),
    "bad status line": (b"GET", b"HTTP/1.1 2000 OK\r\n\r\n"),
    "bad content-length": (b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n"),
    "gzip transfer-encoding": (b"GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
    "body cut short": (b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"),
    "head over the limit": (b"GET", b"HTTP/1.1 200 OK\r\nX: " + b"a" * (LIMIT + 10)),
}


def run(parser: Any, data: bytes, piece: int) -> list[Any]:
    """Feed ``data`` in pieces, then EOF; the events (compared by repr) and any error."""
    seen: list[Any] = []
    chunks = [data[i : i + piece] for i in range(0, len(data), piece)] + [b""]
    try:
        for chunk in chunks:
            parser.receive_data(chunk)
            while True:
                event = parser.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    break
                seen.append(repr(event))
                if type(event) is h11.EndOfMessage:
                    return [*seen, parser.our_state, parser.their_state, parser.trailing_data[0]]
    except h11.RemoteProtocolError as exc:
        seen.append(("error", parser.their_state))
        assert str(exc)
    return seen


@pytest.mark.parametrize("piece", [1, 1 << 20])
@pytest.mark.parametrize("name", list(CASES))
def test_the_reader_agrees_with_an_h11_client_connection(name: str, piece: int) -> None:
    method, response = CASES[name]
    h11_client = h11.Connection(h11.CLIENT, max_incomplete_event_size=LIMIT)
    request = h11.Request(method=method, target="/", headers=[("host", "a")])
    h11_client.send(request)
    h11_client.send(h11.EndOfMessage())
    reader = ResponseReader(method, True, LIMIT)
    assert run(reader, response, piece) == run(h11_client, response, piece)


def test_a_request_that_asked_to_close_leaves_the_connection_unusable() -> None:
    reader = ResponseReader(b"GET", False, LIMIT)
    reader.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert type(reader.next_event()) is h11.Response
    assert type(reader.next_event()) is h11.EndOfMessage
    assert (reader.our_state, reader.their_state) == (h11.MUST_CLOSE, h11.MUST_CLOSE)


def test_a_body_read_until_close_leaves_the_connection_unusable() -> None:
    """No Content-Length, no chunking (RFC 9112 §6.3 (8)): the body ends with the
    connection. h11 calls its client DONE here; the reader says MUST_CLOSE so the
    pool never takes the connection back."""
    reader = ResponseReader(b"GET", True, LIMIT)
    reader.receive_data(b"HTTP/1.1 200 OK\r\n\r\nall of it")
    assert type(reader.next_event()) is h11.Response
    assert bytes(reader.next_event().data) == b"all of it"
    assert reader.next_event() is h11.NEED_DATA
    reader.receive_data(b"")
    assert type(reader.next_event()) is h11.EndOfMessage
    assert (reader.our_state, reader.their_state) == (h11.MUST_CLOSE, h11.MUST_CLOSE)
