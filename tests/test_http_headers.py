"""Header rules without sockets: trionet.http._headers."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from trionet.http import _headers
from trionet.http._headers import Headers, date_line, encode_header, reason_phrase, status_line


def test_request_headers_are_case_insensitive_with_lower_case_keys() -> None:
    headers = Headers([(b"Content-Type", b"text/plain"), (b"X-Tag", b"a"), (b"x-tag", b"b")])
    assert list(headers) == ["content-type", "x-tag"]
    assert headers["CONTENT-TYPE"] == headers.get("content-type") == "text/plain"
    assert headers["x-tag"] == "a, b"  # Node joins duplicates
    assert headers.get_all("X-TAG") == ["a", "b"]
    assert "Content-Type" in headers and "nope" not in headers
    assert headers.get("nope") is None
    assert len(headers) == 2


def test_cookies_are_joined_with_semicolons() -> None:
    assert Headers([(b"Cookie", b"a=1"), (b"Cookie", b"b=2")])["cookie"] == "a=1; b=2"


def test_encode_header_values() -> None:
    assert encode_header("Content-Length", 12) == b"Content-Length: 12\r\n"
    assert encode_header("Set-Cookie", ["a=1", "b=2"]) == b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
    assert encode_header("X-Raw", b"\xff") == b"X-Raw: \xff\r\n"


@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x", "a\nb", "a\rb", "a\x00b", ["ok", "x\r\n"]])
def test_values_that_would_split_the_response_raise(value: str) -> None:
    with pytest.raises(ValueError, match="invalid character"):
        encode_header("X-A", value)


@pytest.mark.parametrize("name", ["", "X A", "X:A", "X\r\nA", "é"])
def test_names_must_be_tokens(name: str) -> None:
    with pytest.raises(ValueError, match="invalid header name"):
        encode_header(name, "v")


def test_status_lines_use_nodes_reason_phrases() -> None:
    assert status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert status_line(413) == b"HTTP/1.1 413 Payload Too Large\r\n"
    assert status_line(299) == b"HTTP/1.1 299 Unknown\r\n"
    assert status_line(200, "Fine") == b"HTTP/1.1 200 Fine\r\n"
    assert reason_phrase(431) == "Request Header Fields Too Large"
    with pytest.raises(ValueError):
        status_line(200, "OK\r\nX: y")


def test_date_line_is_an_imf_fixdate() -> None:
    line = date_line()
    assert re.fullmatch(rb"Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n", line)


def test_date_line_is_formatted_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_000_000_000.25]
    monkeypatch.setattr(_headers, "time", SimpleNamespace(time=lambda: now[0]))
    first = date_line()
    assert first == b"Date: Sun, 09 Sep 2001 01:46:40 GMT\r\n"
    now[0] += 0.5
    assert date_line() is first  # the cached bytes, not a new string
    now[0] += 1
    assert date_line() == b"Date: Sun, 09 Sep 2001 01:46:41 GMT\r\n"


def test_one_headers_class_joins_as_node_on_both_sides() -> None:
    """Requests (server side) and responses (client side) share one mapping and one join rule."""
    headers = Headers(
        [
            (b"Cookie", b"a=1"),
            (b"cookie", b"b=2"),
            (b"Set-Cookie", b"x=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT"),
            (b"set-cookie", b"y=2"),
            (b"Accept", b"text/html"),
            (b"accept", b"*/*"),
        ]
    )
    assert headers["cookie"] == "a=1; b=2"
    assert headers["Set-Cookie"] == "x=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT\ny=2"
    assert headers["accept"] == "text/html, */*"
    assert headers.get_all("set-cookie") == ["x=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT", "y=2"]

