"""Header rules without I/O: the received headers' mapping and the response head.

Received headers (a request's on the server, a response's on the client)
arrive as ``(bytes, bytes)`` pairs; :class:`Headers` turns
them, only when asked, into Node's view: a case-insensitive mapping with
lower-case keys whose duplicates are joined. The response side validates what
the app sets (no CR, LF or NUL may reach the wire) and builds the head bytes
with Node's framing headers: ``Date`` (cached, refreshed once a second),
``Connection``, ``Keep-Alive`` and the standard reason phrase.

:func:`error_response` is the whole default answer to a refused request
(400, 408, 413, 431, 505...). Node sends only ``HTTP/1.1 400 Bad
Request\r\nConnection: close\r\n\r\n``; trionet adds what its other
responses carry (``Date``, RFC 9110 section 6.6.1: an origin server with a
clock must send it) and a one-line text body naming the status, with its
``Content-Length``, so that a browser or ``curl`` shows the user a reason
rather than an empty page. The body never echoes the request: the refused
bytes came from the network and may be anything.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping
from email.utils import formatdate
from functools import lru_cache
from http import HTTPStatus

__all__ = [
    "CLOSE_LINE",
    "HeaderValue",
    "Headers",
    "date_line",
    "encode_header",
    "error_response",
    "reason_phrase",
    "status_line",
    "value_bytes",
]

#: The framing line of a response after which the connection closes.
CLOSE_LINE = b"Connection: close\r\n"

#: What an app may pass as a header value: one value or one per repeated line.
HeaderValue = str | int | bytes | list[str] | list[bytes] | tuple[str, ...]

# Node joins repeated headers with ", ", except Cookie, joined with "; ", and
# Set-Cookie, which Node keeps as an array and trionet joins with "\n" (a
# cookie's Expires date holds a comma): message.headers in
# https://nodejs.org/docs/latest-v20.x/api/http.html#messageheaders. One rule
# for requests (server side) and responses (client side), as Node's one
# IncomingMessage serves both.
_JOIN = ", "
_JOINS = {"cookie": "; ", "set-cookie": "\n"}

# RFC 9110 §5.1: field-name = token.
_TOKEN_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# RFC 9110 §5.5: CR, LF and NUL are never valid in a field value (response splitting).
_INVALID_VALUE_RE = re.compile(rb"[\x00\r\n]")


class Headers(Mapping[str, str]):
    """A message's headers as Node shows them: lower-case keys, duplicates joined.

    The one mapping for both sides: ``req.headers`` on the server and
    ``res.headers`` on the client.

    Built from the raw pairs on first use. Lookups ignore case, so
    ``headers["Content-Type"]`` and ``headers.get("content-type")`` agree.
    """

    __slots__ = ("_map", "_raw")

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self._raw = list(raw)
        self._map: dict[str, str] | None = None

    def _build(self) -> dict[str, str]:
        mapping: dict[str, str] = {}
        for raw_name, raw_value in self._raw:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            if name in mapping:
                mapping[name] = mapping[name] + _JOINS.get(name, _JOIN) + value
            else:
                mapping[name] = value
        self._map = mapping
        return mapping

    def __getitem__(self, name: str) -> str:
        mapping = self._map if self._map is not None else self._build()
        return mapping[name.lower()]

    def __contains__(self, name: object) -> bool:
        mapping = self._map if self._map is not None else self._build()
        return isinstance(name, str) and name.lower() in mapping

    def __iter__(self) -> Iterator[str]:
        mapping = self._map if self._map is not None else self._build()
        return iter(mapping)

    def __len__(self) -> int:
        mapping = self._map if self._map is not None else self._build()
        return len(mapping)

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in arrival order, unjoined (e.g. for set-cookie)."""
        wanted = name.lower().encode("latin-1")
        return [v.decode("latin-1") for n, v in self._raw if n.lower() == wanted]

    def __repr__(self) -> str:
        return f"Headers({dict(self)!r})"


def encode_header(name: str, value: HeaderValue) -> bytes:
    """Validate one app header and encode it as wire lines (``Name: value\\r\\n``).

    A list or tuple value gives one line per item. Apps set the same few
    headers on every response, so single values are validated once and cached.

    Raises:
      ValueError: the name is not a token, or a value holds CR, LF or NUL
        (Node's ERR_INVALID_CHAR): such a value would split the response.
    """
    if isinstance(value, list | tuple):
        return b"".join(_encode_line(name, item) for item in value)
    return _encode_line(name, value)


@lru_cache(maxsize=512)
def _encode_line(name: str, value: str | int | bytes) -> bytes:
    raw_name = name.encode("latin-1") if isinstance(name, str) else bytes(name)
    if not _TOKEN_RE.match(raw_name):
        raise ValueError(f"invalid header name {name!r}")
    raw = value if isinstance(value, bytes) else str(value).encode("latin-1")
    if _INVALID_VALUE_RE.search(raw):
        raise ValueError(f"invalid character in header {name!r}: {value!r}")
    return b"%s: %s\r\n" % (raw_name, raw)


def value_bytes(value: HeaderValue) -> bytes:
    """An app header's value(s) as one lower-case byte string, for framing decisions."""
    items = value if isinstance(value, list | tuple) else [value]
    text = b",".join(v if isinstance(v, bytes) else str(v).encode("latin-1") for v in items)
    return text.lower()


# Where Node's http.STATUS_CODES differs from Python's http.HTTPStatus.
_NODE_PHRASES = {
    413: "Payload Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    509: "Bandwidth Limit Exceeded",
}


def reason_phrase(status: int) -> str:
    """Node's reason phrase for ``status`` (h11 would send an empty one)."""
    phrase = _NODE_PHRASES.get(status)
    if phrase is not None:
        return phrase
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


_STATUS_LINES: dict[int, bytes] = {}


def status_line(status: int, reason: str | None = None) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\n``; Node answers HTTP/1.1 even to 1.0 clients."""
    if reason is None:
        line = _STATUS_LINES.get(status)
        if line is None:
            line = b"HTTP/1.1 %d %s\r\n" % (status, reason_phrase(status).encode("latin-1"))
            _STATUS_LINES[status] = line
        return line
    raw = reason.encode("latin-1")
    if _INVALID_VALUE_RE.search(raw):
        raise ValueError(f"invalid character in status message {reason!r}")
    return b"HTTP/1.1 %d %s\r\n" % (status, raw)


_date_second = -1
_date_line = b""


def date_line() -> bytes:
    """``Date: <IMF-fixdate>\\r\\n`` for now, formatted at most once a second."""
    global _date_second, _date_line
    now = int(time.time())
    if now != _date_second:
        _date_line = b"Date: %s\r\n" % formatdate(now, usegmt=True).encode("ascii")
        _date_second = now
    return _date_line


_ERROR_TYPE_LINE = b"Content-Type: text/plain; charset=utf-8\r\n"


def error_response(status: int) -> bytes:
    """The default response refusing a request: a short text body, then the close.

    Node's header order (the content headers, then Date, Connection, the
    framing): e.g. ``HTTP/1.1 413 Payload Too Large``, ``Content-Type:
    text/plain; charset=utf-8``, ``Date``, ``Connection: close``,
    ``Content-Length: 22`` and the body ``413 Payload Too Large\\n``.
    """
    body = b"%d %s\n" % (status, reason_phrase(status).encode("latin-1"))
    return b"%s%s%s%sContent-Length: %d\r\n\r\n%s" % (
        status_line(status),
        _ERROR_TYPE_LINE,
        date_line(),
        CLOSE_LINE,
        len(body),
        body,
    )
