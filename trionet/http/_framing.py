"""Response framing without I/O: from what the app set to the head bytes.

One function, :func:`frame_response`, turns ``(status, headers, method, body
length, version, may keep alive)`` into ``(head bytes, chunked?, keep
alive?, declared length)``, as h11's ``_body_framing`` and
``_clean_up_response_headers_for_sending`` do for h11's own responses. It
decides, in one place:

- the body framing: ``Content-Length`` when the whole body is known (``end(data)``
  with nothing written before), chunked when it is not and the client speaks
  HTTP/1.1, else the close ends the body (HTTP/1.0; RFC 9112 section 6.3,
  rule 8); none at all for 1xx, 204 and 304 (RFC 9110 section 6.4.1) and for
  HEAD without a known length;
- Node's framing headers after the app's, in Node's order: ``Date``
  (RFC 9110 section 6.6.1), ``Connection`` (``keep-alive`` with
  ``Keep-Alive: timeout=N``, or ``close``), then the framing header;
- whether the connection stays open: only when the caller allows it (the
  client asked, the server is not closing, the request body can be drained),
  the body has a framing other than the close, and the app did not send
  ``Connection: close`` itself.

An app that sets ``Date``, ``Connection``, ``Content-Length`` or
``Transfer-Encoding`` itself takes the slow path, which keeps its values and
adds only what is missing; the framing header and ``Connection`` are
chosen by the same code on both paths.

Why not h11's response side: Node's framing differs from h11's (keep-alive for
HTTP/1.0 clients who ask, ``Keep-Alive: timeout=N``, Date, reason phrases),
and h11's response bookkeeping cost more than half of its per-request time
(measured: 37 of 63 us). Why a function rather than a method of
:class:`~._messages.Response`: so that every framing rule is checked by a
unit test without a socket (``tests/test_http_framing.py``), and the response
object keeps only the state the app changes. Its arguments are positional:
it runs once per response on the server's hottest path.
"""

from __future__ import annotations

from ._headers import CLOSE_LINE, HeaderValue, date_line, status_line, value_bytes

__all__ = [
    "CHUNKED_LINE",
    "CONTINUE_HEAD",
    "LAST_CHUNK",
    "NO_BODY_STATUSES",
    "NO_TRAILER_FIELDS",
    "AppHeaders",
    "declared_length",
    "frame_response",
    "has_body",
    "keep_alive_lines",
    "last_chunk",
    "service_unavailable",
]

#: The app's headers as :class:`~._messages.Response` keeps them: lower-case
#: name -> (the value as given, its validated wire lines).
AppHeaders = dict[str, tuple[HeaderValue, bytes]]

#: The framing line of a body of unknown length (HTTP/1.1 clients).
CHUNKED_LINE = b"Transfer-Encoding: chunked\r\n"
#: The last chunk and the empty trailer section that end a chunked body.
LAST_CHUNK = b"0\r\n\r\n"
#: Fields never sent as trailers: they frame, route or control the message,
#: so a recipient needs them before the content (RFC 9110 section 6.5.1:
#: "message framing (e.g., Transfer-Encoding and Content-Length), routing
#: (e.g., Host), request modifiers ..., authentication ..., response control
#: data ..., or determining how to process the content"); ``Trailer`` itself
#: belongs in the header section (RFC 9110 section 6.6.2).
NO_TRAILER_FIELDS = frozenset(
    {"content-length", "transfer-encoding", "host", "trailer", "connection", "keep-alive",
     "te", "upgrade", "content-encoding", "content-type", "content-range", "authorization",
     "set-cookie", "cache-control", "expires", "location", "retry-after", "vary", "date"}
)  # fmt: skip
#: The interim response that lets a client send the body it held back
#: (RFC 9110 section 10.1.1).
CONTINUE_HEAD = b"HTTP/1.1 100 Continue\r\n\r\n"
#: Statuses whose responses never carry a body (RFC 9110 section 6.4.1).
NO_BODY_STATUSES = frozenset({204, 304})
# Headers whose presence in the app's set changes what the server adds.
_FRAMING_NAMES = frozenset({"content-length", "transfer-encoding", "connection", "date"})


def keep_alive_lines(keep_alive_timeout: float) -> bytes:
    """The ``Connection`` line(s) of a response after which the connection stays open.

    Node adds ``Keep-Alive: timeout=N`` (its ``keepAliveTimeout`` in
    seconds) so that a client closes an idle connection before the server
    does; with the timeout off (0) there is nothing to announce.
    """
    lines = b"Connection: keep-alive\r\n"
    if keep_alive_timeout:
        lines += b"Keep-Alive: timeout=%s\r\n" % f"{keep_alive_timeout:g}".encode()
    return lines


def last_chunk(trailers: bytes) -> bytes:
    """The last chunk of a chunked body, with its trailer section (encoded lines, or empty).

    RFC 9112 section 7.1: ``last-chunk trailer-section CRLF``.
    """
    return b"0\r\n%s\r\n" % trailers if trailers else LAST_CHUNK


def has_body(status: int, method: bytes) -> bool:
    """Whether a response to ``method`` with ``status`` carries body bytes on the wire."""
    return method != b"HEAD" and status not in NO_BODY_STATUSES


def frame_response(
    status: int,
    reason: str | None,
    headers: AppHeaders,
    method: bytes,
    length: int | None,
    http11: bool,
    may_keep_alive: bool,
    keep_alive_lines: bytes,
) -> tuple[bytes, bool, bool, int]:
    """The head of a response and how its body is framed.

    Args:
      status, reason: the status line (``reason`` None: the standard phrase).
      headers: what the app set, in the order it set them.
      method: the request's method (a HEAD response has no body bytes).
      length: the whole body's size, or None if it is not known yet.
      http11: the client speaks HTTP/1.1 (may be sent a chunked body).
      may_keep_alive: the connection may stay open after this response.
      keep_alive_lines: the ``Connection`` lines that say it stays open.

    Returns:
      ``(head, chunked, keep_alive, declared)``: the head bytes through the
      blank line; whether body writes must be chunk-framed; whether the
      connection stays open after the response; the ``Content-Length`` the
      app set itself (-1 if none), which the body must not exceed.

    Raises:
      ValueError: a reason phrase with CR, LF or NUL, or an app
        ``Content-Length`` that is not a number.
    """
    parts = [status_line(status, reason)]
    for _, lines in headers.values():
        parts.append(lines)
    chunked = False
    declared = -1
    app_connection = False
    app_framing = False
    if not headers or _FRAMING_NAMES.isdisjoint(headers):
        parts.append(date_line())
    else:  # the slow path: keep what the app set, add only what is missing
        if "date" not in headers:
            parts.append(date_line())
        if "connection" in headers:
            app_connection = True
            value = value_bytes(headers["connection"][0])
            may_keep_alive = may_keep_alive and b"close" not in value
        if "transfer-encoding" in headers:
            app_framing = True
            te = value_bytes(headers["transfer-encoding"][0])
            chunked = b"chunked" in te and has_body(status, method)
        elif "content-length" in headers:
            app_framing = True
            declared = declared_length(headers["content-length"][0])
    framing: bytes | None = b""
    if not app_framing and status >= 200 and status not in NO_BODY_STATUSES:
        if length is not None:
            framing = b"Content-Length: %d\r\n" % length
        elif method != b"HEAD":
            chunked = http11
            framing = CHUNKED_LINE if http11 else None
    # The tail both paths share. No framing (None): only the close ends the body.
    keep_alive = may_keep_alive and framing is not None
    if not app_connection:
        parts.append(keep_alive_lines if keep_alive else CLOSE_LINE)
    if framing:
        parts.append(framing)
    parts.append(b"\r\n")
    return b"".join(parts), chunked, keep_alive, declared


def declared_length(value: HeaderValue) -> int:
    """The app's Content-Length value as a number.

    Raises:
      ValueError: the value is not a string of digits.
    """
    # bytes (ASGI apps send them) skip value_bytes' list and join.
    text = value if type(value) is bytes else value_bytes(value)
    if not text.isdigit():
        raise ValueError(f"invalid Content-Length {value!r}")
    return int(text)


def service_unavailable(count: int) -> bytes:
    """``count`` bodiless 503 responses, Node's answer to requests pipelined past
    ``max_requests_per_socket`` (``Connection: close``, ``Content-Length: 0``).
    """
    one = b"%s%s%sContent-Length: 0\r\n\r\n" % (status_line(503), date_line(), CLOSE_LINE)
    return one * count
