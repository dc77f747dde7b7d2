"""Leaving HTTP: the upgrade handshake (``101 Switching Protocols``) and CONNECT tunnels.

Both send one request on a connection of their own (never pooled: after a 101
or a 2xx to CONNECT the connection is no longer HTTP's, RFC 9110 §7.8 and
§9.3.6) and hand the raw stream to the caller with whatever the server sent
after its response head. h11 stops at that head and keeps the bytes past it
in ``trailing_data`` (h11's ``SWITCHED_PROTOCOL`` state): they are already
the new protocol, so the upgrade returns them as ``leftover`` for the caller
to feed first, and the tunnel puts them in front of the stream (:class:`_Replay`),
since a tunnel's user reads a plain socket and knows nothing of a head.

The upgrade is the way in for every protocol that leaves HTTP, the WebSocket
client included: :func:`switch_protocols` opens the connection itself (the
HTTP client's opener), :func:`request_switch` runs the same exchange on a
connection its caller opened (``trionet.ws.connect`` opens TCP or TLS with
:mod:`trionet.net` / :mod:`trionet.tls`, for Node's TLS options, reasons and
``authorized``). One head writer and reader (h11, through
:class:`HTTPConnection`), one refusal reader.

A refusal's body is read for the message only: at most
:data:`MAX_REFUSAL_BODY` bytes, for at most :data:`REFUSAL_BODY_TIMEOUT`
seconds, the rest is dropped with the connection. An error page is small; a
server that streams a large or endless one must not hold the caller nor fill
its memory (the WebSocket client has always capped it so; Node's ws hands
the refusal's response to an ``'unexpected-response'`` listener, or aborts
it unread). A body cut short or malformed is kept as far as it went: the
status is the answer, the connection is closed either way.

Rejected: pooling upgraded connections (nothing to give back), and sharing
:meth:`HTTPConnection.exchange`: it reads a final response and skips every
1xx, while here a ``101`` is the answer.
"""

from __future__ import annotations

import logging
import ssl

import h11
import trio

from .._errors import ConnectError, ProtocolError
from .._stream import Socket
from ._client_conn import END, HTTPConnection, Origin, check_framing, open_connection
from ._client_request import HeadersArg, _Prepared, prepare_upgrade
from ._client_response import ClientResponse

__all__ = [
    "MAX_REFUSAL_BODY",
    "REFUSAL_BODY_TIMEOUT",
    "open_tunnel",
    "request_switch",
    "switch_protocols",
    "upgrade_request",
]

logger = logging.getLogger("trionet.http.client")

#: The most of a refusal's body kept on its response (the WebSocket client's
#: cap, 64 KiB: an error page, not a download).
MAX_REFUSAL_BODY = 65536

#: How long a refusal's body is waited for, seconds (the WebSocket client's
#: bound): the status is already known, the body only explains it.
REFUSAL_BODY_TIMEOUT = 1.0

#: Stands in for a TLS context in :func:`upgrade_request`, whose caller opens
#: the connection: built once, bare (no CA store loaded), never connected with.
_placeholder_context: ssl.SSLContext | None = None


async def switch_protocols(prepared: _Prepared) -> tuple[ClientResponse, Socket | None, bytes]:
    """Send a request that asks to switch protocols; return the raw connection if it did.

    Returns ``(101 response, socket, bytes after the head)``, or on a refusal
    ``(response with its body read, None, b"")``, the connection closed.

    Raises:
      ConnectError, TLSError: the server could not be reached.
      ProtocolError: the response broke HTTP/1.1.
    """
    conn = await open_connection(prepared.origin)
    res, leftover = await request_switch(conn, prepared.event, prepared.method)
    if res.status != 101:
        return res, None, b""
    # The connection's own Socket goes on (one per connection, its counters
    # running from the request), now with Node's default for a raw socket.
    sock = conn.socket
    sock.allow_half_open = False
    return res, sock, leftover


async def request_switch(
    conn: HTTPConnection, request: h11.Request, method: str = "GET"
) -> tuple[ClientResponse, bytes]:
    """Send ``request`` on ``conn``, a fresh connection, and read the answer.

    Returns ``(101 response, bytes the server sent after its head)``; the
    stream under ``conn`` is the caller's from then on. Any other final
    status: ``(response, b"")``, its body read as far as :data:`MAX_REFUSAL_BODY`
    bytes and :data:`REFUSAL_BODY_TIMEOUT` seconds allow, the connection closed.

    Raises:
      ConnectionLost: the server closed or reset the connection without answering.
      ProtocolError: the response head broke HTTP/1.1 or is over the size limit.
    """
    try:
        h = conn.start_exchange()
        await conn.send(h.send(request) + h.send(END))
        event = await conn.next_event()
        while type(event) is h11.InformationalResponse and event.status_code != 101:
            event = await conn.next_event()
        if h.their_state is h11.SWITCHED_PROTOCOL:
            return ClientResponse(event, None, None, None, method), bytes(h.trailing_data[0])
        if type(event) is not h11.Response:
            raise ProtocolError(f"unexpected {event!r} from {conn.origin.name}")
        check_framing(event, conn.origin)
    except BaseException:
        conn.close()
        raise
    res = ClientResponse(event, conn, None, None, method)
    res._complete = False
    await _read_refusal(res)
    return res, b""


async def _read_refusal(res: ClientResponse) -> None:
    """Read a refusal's body into ``res.body``, bounded; the connection ends closed."""
    chunks: list[bytes] = []
    size = 0
    try:
        with trio.move_on_after(REFUSAL_BODY_TIMEOUT):
            while size <= MAX_REFUSAL_BODY and (chunk := await res._next_chunk()) is not None:
                chunks.append(chunk)
                size += len(chunk)
    except ProtocolError as exc:
        logger.debug("refusal body cut short: %s", exc)
    finally:
        res._abandon()  # closes the connection unless the body ended (closed then)
    res.body = b"".join(chunks)[:MAX_REFUSAL_BODY]


def upgrade_request(url: str, headers: HeadersArg, *, schemes: frozenset[str]) -> h11.Request:
    """The upgrade request for ``url`` (Host, authorization from the URL, ``headers``).

    For a caller that opens the connection itself and only needs the head:
    :func:`prepare_upgrade` without a TLS context to resolve.

    Raises:
      ValueError: the URL (a scheme not in ``schemes``) or a header cannot be sent.
    """
    global _placeholder_context
    if _placeholder_context is None:
        _placeholder_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return prepare_upgrade(url, "GET", headers, _placeholder_context, schemes=schemes).event


async def open_tunnel(origin: Origin, request: h11.Request) -> Socket:
    """Send ``CONNECT`` to the proxy at ``origin``; the tunnel once it answers 2xx.

    Raises:
      ConnectError: the proxy could not be reached or answered other than 2xx
        (the message gives its status line).
      TLSError, ProtocolError: as :func:`switch_protocols`.
    """
    conn = await open_connection(origin)
    try:
        h = conn.start_exchange()
        await conn.send(h.send(request) + h.send(END))
        response = await conn.next_event()
        while type(response) is h11.InformationalResponse:
            response = await conn.next_event()
    except BaseException:
        conn.close()
        raise
    if h.their_state is not h11.SWITCHED_PROTOCOL:
        conn.close()
        raise ConnectError(
            f"proxy {origin.name} refused CONNECT {request.target.decode('latin-1')}: "
            f"{response.status_code} {response.reason.decode('latin-1')}"
        )
    leftover = bytes(h.trailing_data[0])
    tunnel: trio.abc.Stream = conn.stream
    if leftover:
        tunnel = _Replay(tunnel, leftover)
    return Socket(tunnel, allow_half_open=False)


class _Replay(trio.abc.HalfCloseableStream):
    """A stream that first returns bytes already read from it, then reads on."""

    def __init__(self, transport_stream: trio.abc.Stream, buffered: bytes) -> None:
        #: Named as trio.SSLStream's, so ``raw_socket()`` finds the OS socket.
        self.transport_stream = transport_stream
        self._buffered = buffered

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._buffered:
            size = len(self._buffered) if max_bytes is None else max_bytes
            data, self._buffered = self._buffered[:size], self._buffered[size:]
            await trio.lowlevel.checkpoint()
            return bytes(data)
        return bytes(await self.transport_stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        if isinstance(self.transport_stream, trio.abc.HalfCloseableStream):
            await self.transport_stream.send_eof()

    async def aclose(self) -> None:
        await self.transport_stream.aclose()
