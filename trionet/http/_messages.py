"""Request and Response: what the app sees of one HTTP exchange.

:class:`Request` is Node's ``IncomingMessage`` and :class:`Response` Node's
``ServerResponse``. Both are thin views over the connection driver in
:mod:`._server`, which owns the socket: the request's attributes are parsed
only when read, and the response builds its head in one ``bytes.join`` so
that ``end(data)`` is a single write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import h11

from .._fdio import JOIN_LIMIT
from .._stream import Address, Socket
from ._headers import (
    CLOSE_LINE,
    Headers,
    HeaderValue,
    date_line,
    encode_header,
    status_line,
    value_bytes,
)
from ._limits import RequestInfo

if TYPE_CHECKING:
    from ._server import _Connection

__all__ = ["Request", "Response"]

_CHUNKED_LINE = b"Transfer-Encoding: chunked\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
# Statuses whose responses never carry a body (RFC 9110 §6.4.1).
_NO_BODY_STATUSES = frozenset({204, 304})
# Headers whose presence in the app's set changes what the server adds.
_FRAMING_NAMES = ("content-length", "transfer-encoding", "connection", "date")


class Request:
    """An incoming request, as Node's ``http.IncomingMessage``.

    Attributes are computed when first read: a handler that never looks at
    the query or the headers does not pay for parsing them.
    """

    __slots__ = ("_conn", "_event", "_headers", "_method", "_query", "_url", "info")

    def __init__(self, event: h11.Request, connection: _Connection, info: RequestInfo) -> None:
        self._event = event
        self._conn = connection
        self.info = info
        self._method: str | None = None
        self._url: str | None = None
        self._headers: Headers | None = None
        self._query: dict[str, list[str]] | None = None

    def __repr__(self) -> str:
        return f"<trionet.http.Request {self.method} {self.url}>"

    @property
    def method(self) -> str:
        """The method, e.g. ``"GET"``."""
        if self._method is None:
            self._method = self._event.method.decode("ascii")
        return self._method

    @property
    def url(self) -> str:
        """The raw request target, e.g. ``"/search?q=trio"``."""
        if self._url is None:
            self._url = self._event.target.decode("latin-1")
        return self._url

    @property
    def path(self) -> str:
        """The target without its query string."""
        return self.url.partition("?")[0]

    @property
    def query(self) -> dict[str, list[str]]:
        """The query string parsed into lists of values (blank values kept)."""
        if self._query is None:
            self._query = parse_qs(self.url.partition("?")[2], keep_blank_values=True)
        return self._query

    @property
    def http_version(self) -> str:
        """``"1.1"`` or ``"1.0"``."""
        return self._event.http_version.decode("ascii")

    @property
    def headers(self) -> Headers:
        """Case-insensitive headers with Node's lower-case keys; duplicates joined."""
        if self._headers is None:
            self._headers = Headers(self._event.headers.raw_items())
        return self._headers

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The header lines as received: ``(name, value)`` bytes, original case."""
        return self._event.headers.raw_items()

    @property
    def remote_address(self) -> Address | None:
        """The client's ``(host, port)``."""
        return self._conn.socket.remote_address

    @property
    def socket(self) -> Socket:
        """The connection's :class:`trionet.net.Socket`."""
        return self._conn.socket

    async def read(self) -> bytes:
        """The whole body. Sends ``100 Continue`` first if the client waits for it."""
        parts = [chunk async for chunk in self]
        return b"".join(parts)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """Yield the body as it arrives; each chunk is read only when asked for."""
        while chunk := await self._conn.read_body():
            yield chunk


class Response:
    """The response to one request, as Node's ``http.ServerResponse``.

    Headers are buffered until the first :meth:`write` or :meth:`end`. A body
    given whole to ``end(data)`` goes out with ``Content-Length`` in one write;
    a body written piece by piece is chunked (or close-delimited for HTTP/1.0).
    """

    __slots__ = (
        "_chunked",
        "_conn",
        "_headers",
        "_keep_alive",
        "_method",
        "_unsent",
        "finished",
        "headers_sent",
        "status_code",
        "status_message",
    )

    def __init__(self, connection: _Connection, method: bytes) -> None:
        self._conn = connection
        self._method = method
        self.status_code = 200
        #: The reason phrase; None sends the standard one.
        self.status_message: str | None = None
        # Lower-case name -> (the value as given, its validated wire lines).
        self._headers: dict[str, tuple[HeaderValue, bytes]] = {}
        self.headers_sent = False
        #: ``end()`` has run: the whole response was handed to the kernel.
        self.finished = False
        self._chunked = False
        self._keep_alive = True
        # Body bytes still owed when the app set Content-Length itself (-1: not set).
        self._unsent = -1

    def __repr__(self) -> str:
        return f"<trionet.http.Response {self.status_code}>"

    # -- headers ---------------------------------------------------------------
    def set_header(self, name: str, value: HeaderValue) -> None:
        """Set a header, replacing any earlier value; a list sends one line per value.

        Raises:
          ValueError: the name is not a token or the value has CR, LF or NUL.
          RuntimeError: the headers were already sent.
        """
        if self.headers_sent:
            raise RuntimeError("cannot set headers after they are sent")
        self._headers[name.lower()] = (value, encode_header(name, value))

    def get_header(self, name: str) -> HeaderValue | None:
        """The value set for ``name`` (any case), or None."""
        entry = self._headers.get(name.lower())
        return None if entry is None else entry[0]

    def has_header(self, name: str) -> bool:
        """Whether a header ``name`` (any case) is set."""
        return name.lower() in self._headers

    def remove_header(self, name: str) -> None:
        """Remove a header set earlier (no error if absent)."""
        if self.headers_sent:
            raise RuntimeError("cannot remove headers after they are sent")
        self._headers.pop(name.lower(), None)

    def get_headers(self) -> dict[str, HeaderValue]:
        """All headers set so far, lower-case names to values."""
        return {name: entry[0] for name, entry in self._headers.items()}

    def write_head(
        self,
        status: int,
        headers: Mapping[str, HeaderValue] | Sequence[tuple[str, HeaderValue]] | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        """Set the status (and optionally reason and headers); sent with the first write."""
        if self.headers_sent:
            raise RuntimeError("write_head() after the headers were sent")
        if not 100 <= status <= 999:
            raise ValueError(f"invalid status code {status}")
        self.status_code = status
        if reason is not None:
            self.status_message = reason
        items = headers.items() if isinstance(headers, Mapping) else headers or ()
        for name, value in items:
            self.set_header(name, value)

    async def write_continue(self) -> None:
        """Send ``100 Continue`` (for ``on_check_continue`` hooks, Node's writeContinue)."""
        await self._conn.send_continue()

    async def write_early_hints(self, hints: Mapping[str, HeaderValue]) -> None:
        """Send ``103 Early Hints`` ahead of the response (Node's writeEarlyHints).

        ``hints`` must hold a ``Link`` (e.g. ``"</style.css>; rel=preload;
        as=style"``, or a list of them), so that a browser fetches those while
        the app prepares the response. An HTTP/1.0 client gets nothing: RFC
        9110 section 15.2 forbids 1xx responses to it.

        Raises:
          ValueError: no Link, or a name or value that is not a valid header.
          RuntimeError: the response head was already sent.
        """
        if self.headers_sent:
            raise RuntimeError("early hints after the response head was sent")
        if not any(name.lower() == "link" for name in hints):
            raise ValueError("early hints need a Link header")
        lines = b"".join(encode_header(name, value) for name, value in hints.items())
        await self._conn.send_informational(b"HTTP/1.1 103 Early Hints\r\n" + lines + b"\r\n")

    # -- body ------------------------------------------------------------------
    async def write(self, data: bytes | str) -> None:
        """Send a piece of the body (the head first, if not sent yet)."""
        if self.finished:
            raise RuntimeError("write() after end()")
        if isinstance(data, str):
            data = data.encode()
        if not self.headers_sent:
            head = self._start(None, data)
            await self._send_body(head, data)
        elif data:
            self._count(data)
            await self._send_body(b"", data)

    async def end(self, data: bytes | str = b"") -> None:
        """Finish the response, sending ``data`` as its last piece."""
        if self.finished:
            return
        if isinstance(data, str):
            data = data.encode()
        if not self.headers_sent:
            head = self._start(len(data), data)
            self.finished = True
            await self._conn.send(head, data if self._has_body() else b"")
        else:
            self._count(data)
            self.finished = True
            if self._chunked:
                await self._send_body(b"", data, _LAST_CHUNK)
            elif data and self._has_body():
                await self._conn.send(data)
        if self._unsent > 0:
            # Shorter than the app's Content-Length: only a close tells the client.
            self._keep_alive = False

    def _start(self, length: int | None, data: bytes) -> bytes:
        """The head for a first write of ``data``; nothing counts as sent if it fails."""
        head = self._head(length)
        try:
            self._count(data)
        except ValueError:
            self.headers_sent = False  # nothing went out: the app may still get a 500
            self._unsent = -1
            raise
        return head

    def _count(self, data: bytes) -> None:
        """Hold the app to the Content-Length it set (h11 would, as Node does)."""
        if self._unsent < 0 or not self._has_body():
            return
        if len(data) > self._unsent:
            raise ValueError(
                f"response body longer than its Content-Length ({self._unsent} bytes left)"
            )
        self._unsent -= len(data)

    # -- framing ---------------------------------------------------------------
    def _has_body(self) -> bool:
        return self._method != b"HEAD" and self.status_code not in _NO_BODY_STATUSES

    async def _send_body(self, head: bytes, data: bytes, last: bytes = b"") -> None:
        """Send ``head``, then ``data`` as body (one chunk if chunked), then ``last``.

        A large payload is never copied to frame it: a copy lives as long as a
        slow reader takes to read it, and 500 slow readers of 1 MiB writes
        held 500 MB that glibc never gave back. So a chunk of ``JOIN_LIMIT``
        bytes or more goes out as two writes: its size line (after ``head``)
        and the payload in one uncopied ``writev``, then the CRLF that closes
        the chunk (and ``last``). Smaller chunks keep their single write,
        joined: copying a few KiB costs less than a system call. Both sends
        complete before this returns, so no chunk is ever left open.
        """
        send = self._conn.send
        if not data or not self._has_body():
            if head or last:
                await send(head + last)
            return
        if not self._chunked:
            # The connection joins a small body to the head, and sends a large one uncopied.
            await (send(head, data) if head else send(data))
        elif len(data) < JOIN_LIMIT:
            await send(b"%s%x\r\n%s\r\n%s" % (head, len(data), data, last))
        else:
            await send(b"%s%x\r\n" % (head, len(data)), data)
            await send(b"\r\n" + last)

    def _head(self, length: int | None) -> bytes:
        """Build the head; ``length`` is the whole body's size, or None if unknown.

        Node's order: the app's headers, then Date, Connection, Keep-Alive and
        the framing header.
        """
        self.headers_sent = True
        headers = self._headers
        parts = [status_line(self.status_code, self.status_message)]
        if headers:
            for _, lines in headers.values():
                parts.append(lines)
            if any(name in headers for name in _FRAMING_NAMES):
                return self._head_with_app_framing(parts, length)
        framing = self._framing_line(length)
        keep_alive = self._keep_alive and framing is not None and self._conn.may_keep_alive()
        parts.append(date_line())
        parts.append(self._conn.config.keep_alive_lines if keep_alive else CLOSE_LINE)
        if framing:
            parts.append(framing)
        parts.append(b"\r\n")
        self._keep_alive = keep_alive
        return b"".join(parts)

    def _framing_line(self, length: int | None) -> bytes | None:
        """The body framing header; None means the body ends at the close (HTTP/1.0)."""
        if self.status_code in _NO_BODY_STATUSES or self.status_code < 200:
            return b""
        if length is not None:
            return b"Content-Length: %d\r\n" % length
        if self._method == b"HEAD":
            return b""
        if self._conn.http11:
            self._chunked = True
            return _CHUNKED_LINE
        return None

    def _head_with_app_framing(self, parts: list[bytes], length: int | None) -> bytes:
        """The slow path of :meth:`_head`: the app set Date, Connection or framing itself."""
        headers = self._headers
        keep_alive = self._keep_alive and self._conn.may_keep_alive()
        if "date" not in headers:
            parts.append(date_line())
        if "connection" in headers:
            value = value_bytes(headers["connection"][0])
            keep_alive = keep_alive and b"close" not in value
        framing: bytes | None = b""
        if "transfer-encoding" in headers:
            te = value_bytes(headers["transfer-encoding"][0])
            self._chunked = b"chunked" in te and self._has_body()
        elif "content-length" in headers:
            self._unsent = _declared_length(headers["content-length"][0])
        else:
            framing = self._framing_line(length)
        keep_alive = keep_alive and framing is not None
        if "connection" not in headers:
            parts.append(self._conn.config.keep_alive_lines if keep_alive else CLOSE_LINE)
        if framing:
            parts.append(framing)
        parts.append(b"\r\n")
        self._keep_alive = keep_alive
        return b"".join(parts)


def _declared_length(value: HeaderValue) -> int:
    """The app's Content-Length value as a number (ValueError if it is not one)."""
    text = value_bytes(value)
    if not text.isdigit():
        raise ValueError(f"invalid Content-Length {value!r}")
    return int(text)
