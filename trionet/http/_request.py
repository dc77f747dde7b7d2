"""Request: what the app sees of an HTTP request (Node's ``IncomingMessage``).

Its attributes are parsed only when read; its body is a
:class:`~._body.RequestBody`. It does not know the connection driver
(:mod:`._connection`): it reaches the connection through :class:`Exchange`,
a protocol of the few things a request and its response use (send, may the
connection stay open, whose forwarding headers count), so the driver imports
this module and not the other way round. Before, the two read and wrote each
other's private attributes across an import circle held together by
``TYPE_CHECKING``. The response is :mod:`._messages`'.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from typing import Protocol
from urllib.parse import parse_qs

import h11

from .._forwarded import Forwarded, TrustedProxies, forwarded_from
from .._stream import Address, Socket
from ..tls import TLSSocket
from ._body import BodySource, RequestBody
from ._headers import Headers
from ._limits import RequestInfo

__all__ = ["Exchange", "PackedHead", "PackedHeaders", "Request"]


class _Gone:
    """The body source of :data:`_NO_BODIES`: they are finished and never read from it."""

    buf = b""
    pos = 0

    async def receive_more(self) -> None:
        raise AssertionError("a finished body read more")  # pragma: no cover

    async def send_informational(self, head: bytes) -> None:
        """Nothing: a handed-off request gets no 1xx."""


_GONE = _Gone()

#: Finished empty bodies, one per ``(keep_alive, expect_continue, upgrade)``,
#: shared by the handed-off requests that :meth:`Request._pack_head` packed.
_NO_BODIES: dict[tuple[bool, bool, bool], RequestBody] = {}

#: Method and version bytes a packed head shares instead of keeping its own copies.
_COMMON = {value: value for value in (b"GET", b"POST", b"CONNECT", b"1.1", b"1.0")}


class Exchange(BodySource, Protocol):
    """What a request and its response need of the connection carrying them.

    The receive buffer and ``receive_more`` (a :class:`~._body.BodySource`'s)
    are what ``wait_closed()`` reads ahead into, once the body is read.
    """

    #: The request now served speaks HTTP/1.1 (else 1.0).
    http11: bool
    #: The ``Connection`` lines of a response after which the connection stays open.
    keep_alive_lines: bytes

    @property
    def socket(self) -> Socket:
        """The connection as a :class:`trionet.net.Socket`."""

    @property
    def trusted_proxies(self) -> TrustedProxies | None:
        """Whose forwarding headers count (``proxy_headers``); None: nobody's."""

    async def send(self, data: bytes, more: bytes = b"") -> None:
        """Write ``data`` then ``more`` (uncopied when large)."""

    def may_keep_alive(self) -> bool:
        """Whether a response whose head goes out now may leave the connection open."""


class Request:
    """An incoming request, as Node's ``http.IncomingMessage``.

    Attributes are computed when first read: a handler that never looks at
    the query or the headers does not pay for parsing them.
    """

    # _forwarded is set only when first read (a request that never asks pays nothing).
    __slots__ = (
        "_body", "_event", "_exchange", "_forwarded", "_headers", "_method", "_query", "_url",
    )  # fmt: skip
    _forwarded: Forwarded | None

    def __init__(self, event: h11.Request, exchange: Exchange, body: RequestBody) -> None:
        self._event: h11.Request | PackedHead = event
        self._exchange = exchange
        self._body = body
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
        """The client's ``(host, port)`` (a Unix socket: its path, ``""`` if unnamed);
        behind a trusted proxy, the client it names (port 0 if it gave none)."""
        forwarded = self.forwarded
        if forwarded is not None and forwarded.client is not None:
            return forwarded.client
        return self._exchange.socket.remote_address

    @property
    def scheme(self) -> str:
        """``"https"`` over TLS, else ``"http"``; with ``proxy_headers``, what a
        trusted proxy says the client used (``X-Forwarded-Proto``, ``Forwarded: proto``)."""
        forwarded = self.forwarded
        if forwarded is not None and forwarded.scheme is not None:
            return forwarded.scheme
        return "https" if isinstance(self._exchange.socket, TLSSocket) else "http"

    @property
    def host(self) -> str | None:
        """The ``Host`` the client asked for (``host[:port]``), None if it sent none;
        with ``proxy_headers``, a trusted proxy's ``X-Forwarded-Host`` or ``Forwarded: host``."""
        forwarded = self.forwarded
        if forwarded is not None and forwarded.host is not None:
            return forwarded.host
        for name, value in self._event.headers:
            if name == b"host":
                return value.decode("latin-1")
        return None

    @property
    def forwarded(self) -> Forwarded | None:
        """What a trusted proxy's forwarding headers say (``proxy_headers=True``).

        None when ``proxy_headers`` is off or the connection's peer is not in
        ``forwarded_allow_ips``: nothing the client sent is believed then.
        Fields the proxy did not send (or sent malformed) are None.
        """
        trust = self._exchange.trusted_proxies
        if trust is None:  # proxy_headers off: one attribute read, nothing kept
            return None
        try:
            return self._forwarded
        except AttributeError:  # the first read
            trusted = trust.trusts(self._exchange.socket.remote_address)
            found = forwarded_from(self._event.headers, trust) if trusted else None
        self._forwarded = found
        return found

    @property
    def socket(self) -> Socket:
        """The connection's :class:`trionet.net.Socket`."""
        return self._exchange.socket

    @property
    def info(self) -> RequestInfo:
        """The request's framing as the server read it (body length, keep-alive...)."""
        return self._body.info

    @property
    def trailers(self) -> Headers:
        """The trailer fields of a chunked body, once it was read to its end.

        Node's ``message.trailers``: empty until then, and for sized bodies.
        """
        return Headers(self._body.trailers)

    def _pack_head(self) -> None:
        """Keep the head compactly: the request was handed off and may be kept for hours.

        For a WebSocket's ``ws.request``, which lives as long as the
        connection: h11's event keeps each header line three times over
        (received name, lower-case name, value, as a tuple in a list, about
        1.1 KiB for a browser-less handshake); a :class:`PackedHead` keeps
        them as one bytes object and reads them again when asked. An empty
        body's state (about 200 bytes) gives way to a shared finished one.
        Every property reads the same afterwards.
        """
        if isinstance(self._event, h11.Request):
            self._event = PackedHead(self._event)
        body = self._body
        if body.done and not body.trailers and body.info.content_length == 0:
            # A body that never was: a finished one shared by such requests
            # reads the same (``info`` too), and this one's is let go.
            info = body.info
            key = (info.keep_alive, info.expect_continue, info.upgrade)
            shared = _NO_BODIES.get(key)
            if shared is None:
                shared = _NO_BODIES[key] = RequestBody(
                    _GONE, None, RequestInfo(0, *key), None, 0, math.inf
                )
            self._body = shared

    async def read(self) -> bytes:
        """The whole body. Sends ``100 Continue`` first if the client waits for it."""
        parts = [chunk async for chunk in self]
        return b"".join(parts)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """Yield the body as it arrives; each chunk is read only when asked for."""
        read = self._body.read
        while chunk := await read():
            yield chunk


class PackedHead:
    """The fields of an ``h11.Request`` event that a handed-off request keeps.

    The header lines are one bytes object, ``name:value`` lines joined by
    CRLF (a token name has no colon and h11 let no CR or LF into a value, so
    the packing loses nothing); :class:`PackedHeaders` reads them back as
    h11's ``Headers`` would give them. Alternative rejected: keeping the head
    as received and parsing it again with h11 (the lines are what h11 already
    checked; parsing again could only fail differently).
    """

    __slots__ = ("_lines", "http_version", "method", "target")

    def __init__(self, event: h11.Request) -> None:
        self.method: bytes = _COMMON.get(event.method, event.method)
        self.target: bytes = event.target
        self.http_version: bytes = _COMMON.get(event.http_version, event.http_version)
        self._lines = b"\r\n".join(
            [name + b":" + value for name, value in event.headers.raw_items()]
        )

    @property
    def headers(self) -> PackedHeaders:
        """The header lines, read as h11's ``Headers``."""
        return PackedHeaders(self._lines)


class PackedHeaders:
    """A :class:`PackedHead`'s lines with the reading side of ``h11.Headers``:
    iterating gives ``(lower-case name, value)``, ``raw_items()`` the received case."""

    __slots__ = ("_lines",)

    def __init__(self, lines: bytes) -> None:
        self._lines = lines

    def raw_items(self) -> list[tuple[bytes, bytes]]:
        """``(name, value)`` pairs, names as received."""
        if not self._lines:
            return []
        return [_split_line(line) for line in self._lines.split(b"\r\n")]

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        for name, value in self.raw_items():
            yield name.lower(), value

    def __len__(self) -> int:
        return len(self.raw_items())

    @property
    def _full_items(self) -> list[tuple[bytes, bytes, bytes]]:
        """h11's own triples (received name, lower-case name, value), which
        the ASGI scope reads."""
        return [(name, name.lower(), value) for name, value in self.raw_items()]


def _split_line(line: bytes) -> tuple[bytes, bytes]:
    name, _, value = line.partition(b":")
    return name, value
