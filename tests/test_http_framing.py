"""Response framing without sockets: trionet.http._framing.frame_response."""

from __future__ import annotations

import pytest

from trionet.http._framing import (
    AppHeaders,
    declared_length,
    frame_response,
    has_body,
    keep_alive_lines,
    service_unavailable,
)
from trionet.http._headers import HeaderValue, date_line, encode_header

KEEP = keep_alive_lines(5.0)


def app_headers(**pairs: HeaderValue) -> AppHeaders:
    """Headers as Response.set_header keeps them (``X_Tag`` -> ``X-Tag``)."""
    headers: AppHeaders = {}
    for key, value in pairs.items():
        name = key.replace("_", "-")
        headers[name.lower()] = (value, encode_header(name, value))
    return headers


def frame(
    status: int = 200,
    headers: AppHeaders | None = None,
    *,
    method: bytes = b"GET",
    length: int | None = 5,
    http11: bool = True,
    may_keep_alive: bool = True,
    reason: str | None = None,
) -> tuple[list[str], bool, bool, int]:
    """frame_response, with the head split into its lines (Date checked and elided)."""
    head, chunked, keep_alive, declared = frame_response(
        status, reason, headers or {}, method, length, http11, may_keep_alive, KEEP
    )
    assert head.endswith(b"\r\n\r\n")
    lines = head[:-4].decode("latin-1").split("\r\n")
    if date_line()[:-2].decode() in lines:
        lines[lines.index(date_line()[:-2].decode())] = "Date: *"
    return lines, chunked, keep_alive, declared


def test_a_known_length_gets_content_length_after_nodes_headers() -> None:
    lines, chunked, keep_alive, declared = frame(headers=app_headers(Content_Type="text/plain"))
    assert lines == [
        "HTTP/1.1 200 OK",
        "Content-Type: text/plain",
        "Date: *",
        "Connection: keep-alive",
        "Keep-Alive: timeout=5",
        "Content-Length: 5",
    ]
    assert (chunked, keep_alive, declared) == (False, True, -1)


def test_an_unknown_length_is_chunked_for_http11_and_close_delimited_for_http10() -> None:
    lines, chunked, keep_alive, _ = frame(length=None)
    assert lines[-1] == "Transfer-Encoding: chunked" and chunked and keep_alive
    lines, chunked, keep_alive, _ = frame(length=None, http11=False)
    # RFC 9112 section 6.3: without framing, only the close ends the body.
    assert lines[-1] == "Connection: close" and not chunked and not keep_alive


@pytest.mark.parametrize("status", [101, 204, 304])
def test_statuses_without_a_body_get_no_framing_header(status: int) -> None:
    for length in (None, 12):
        lines, chunked, keep_alive, _ = frame(status, length=length)
        assert not any(line.startswith(("Content-Length", "Transfer-Encoding")) for line in lines)
        assert not chunked and keep_alive


def test_head_keeps_the_length_of_the_body_it_would_have() -> None:
    lines, chunked, _, _ = frame(method=b"HEAD", length=26)
    assert lines[-1] == "Content-Length: 26" and not chunked
    lines, chunked, keep_alive, _ = frame(method=b"HEAD", length=None)
    assert lines[-1] == "Keep-Alive: timeout=5" and not chunked and keep_alive


def test_the_caller_decides_whether_the_connection_may_stay_open() -> None:
    lines, _, keep_alive, _ = frame(may_keep_alive=False)
    assert "Connection: close" in lines and "Keep-Alive: timeout=5" not in lines
    assert not keep_alive


def test_no_keep_alive_hint_when_the_timeout_is_off() -> None:
    assert keep_alive_lines(0) == b"Connection: keep-alive\r\n"
    assert keep_alive_lines(2.5) == b"Connection: keep-alive\r\nKeep-Alive: timeout=2.5\r\n"


def test_app_framing_headers_are_kept_and_not_repeated() -> None:
    date = "Tue, 01 Jan 2030 00:00:00 GMT"
    headers = app_headers(Date=date, Content_Length="4", Connection="close")
    lines, chunked, keep_alive, declared = frame(headers=headers, length=None)
    assert lines == [
        "HTTP/1.1 200 OK",
        f"Date: {date}",
        "Content-Length: 4",
        "Connection: close",
    ]
    assert (chunked, keep_alive, declared) == (False, False, 4)


def test_app_transfer_encoding_chunked_means_chunk_framed_writes() -> None:
    headers = app_headers(Transfer_Encoding="chunked")
    lines, chunked, keep_alive, declared = frame(headers=headers, length=None)
    assert lines.count("Transfer-Encoding: chunked") == 1
    assert (chunked, keep_alive, declared) == (True, True, -1)
    # ... but never for a response without a body.
    assert not frame(headers=headers, method=b"HEAD")[1]


def test_app_connection_keep_alive_still_needs_the_callers_permission() -> None:
    headers = app_headers(Connection="keep-alive")
    lines, _, keep_alive, _ = frame(headers=headers)
    assert lines.count("Connection: keep-alive") == 1 and keep_alive
    lines, _, keep_alive, _ = frame(headers=headers, may_keep_alive=False)
    assert not keep_alive  # the app's line is sent as set; the server closes anyway


def test_reason_phrases_standard_custom_and_refused() -> None:
    assert frame(418)[0][0] == "HTTP/1.1 418 I'm a Teapot"
    assert frame(200, reason="Fine")[0][0] == "HTTP/1.1 200 Fine"
    with pytest.raises(ValueError, match="status message"):
        frame(200, reason="x\r\nSet-Cookie: a=b")


def test_a_content_length_that_is_not_a_number_is_refused() -> None:
    assert declared_length(["12"]) == 12
    with pytest.raises(ValueError, match="invalid Content-Length"):
        frame(headers=app_headers(Content_Length="12, 12"))


def test_has_body() -> None:
    assert has_body(200, b"GET") and has_body(404, b"POST")
    assert not has_body(200, b"HEAD") and not has_body(204, b"GET") and not has_body(304, b"GET")


def test_service_unavailable_repeats_a_bodiless_503() -> None:
    refusals = service_unavailable(2)
    assert refusals.count(b"HTTP/1.1 503 Service Unavailable\r\n") == 2
    assert refusals.endswith(b"Connection: close\r\nContent-Length: 0\r\n\r\n")
