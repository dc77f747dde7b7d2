"""Leaving HTTP: the upgrade handshake (``101 Switching Protocols``) and CONNECT tunnels.

Both send one request on a connection of their own (never pooled: after a 101
or a 2xx to CONNECT the connection is no longer HTTP's, RFC 9110 §7.8 and
§9.3.6) and hand the raw stream to the caller with whatever the server sent
after its response head. h11 stops at that head and keeps the bytes past it
in ``trailing_data`` (h11's ``SWITCHED_PROTOCOL`` state): they are already
the new protocol, so the upgrade returns them as ``leftover`` for the caller
to feed first, and the tunnel puts them in front of the stream (:class:`_Replay`),
since a tunnel's user reads a plain socket and knows nothing of a head.

Rejected: pooling upgraded connections (nothing to give back), and sharing
:meth:`HTTPConnection.exchange`: it reads a final response and skips every
1xx, while here a ``101`` is the answer.
"""

from __future__ import annotations

import h11
import trio

from .._errors import ConnectError, ProtocolError
from .._stream import Socket
from ._client_conn import END, Origin, check_framing, open_connection
from ._client_request import _Prepared
from ._client_response import ClientResponse

__all__ = ["open_tunnel", "switch_protocols"]


async def switch_protocols(prepared: _Prepared) -> tuple[ClientResponse, Socket | None, bytes]:
    """Send a request that asks to switch protocols; return the raw connection if it did.

    Returns ``(101 response, socket, bytes after the head)``, or on a refusal
    ``(response with its body read, None, b"")``, the connection closed.

    Raises:
      ConnectError, TLSError: the server could not be reached.
      ProtocolError: the response broke HTTP/1.1.
    """
    conn = await open_connection(prepared.origin)
    try:
        h = conn.h11
        await conn.send(h.send(prepared.event) + h.send(END))
        event = await conn.next_event()
        while type(event) is h11.InformationalResponse and event.status_code != 101:
            event = await conn.next_event()
        if h.their_state is h11.SWITCHED_PROTOCOL:
            res = ClientResponse(event, None, None, None, prepared.method)
            leftover = bytes(h.trailing_data[0])
            # The connection's own Socket goes on (one per connection, its
            # counters running), now with Node's default for a raw socket.
            sock = conn.socket
            sock.allow_half_open = False
            return res, sock, leftover
        if type(event) is not h11.Response:
            raise ProtocolError(f"unexpected {event!r} from {conn.origin.name}")
        check_framing(event, conn.origin)
        res = ClientResponse(event, conn, None, None, prepared.method)
        res._complete = False
        await res._read_all()
        return res, None, b""
    except BaseException:
        conn.close()
        raise


async def open_tunnel(origin: Origin, request: h11.Request) -> Socket:
    """Send ``CONNECT`` to the proxy at ``origin``; the tunnel once it answers 2xx.

    Raises:
      ConnectError: the proxy could not be reached or answered other than 2xx
        (the message gives its status line).
      TLSError, ProtocolError: as :func:`switch_protocols`.
    """
    conn = await open_connection(origin)
    try:
        h = conn.h11
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
