"""The client side of trionet.ws: the opening handshake of :func:`trionet.ws.connect`.

It connects (TCP, or TLS through :func:`trionet.tls.connect` for wss://),
sends wsproto's handshake request, reads the response head (bounded) and
checks it with wsproto, which verifies Sec-WebSocket-Accept and the agreed
extensions; a refusal's status, headers and body (bounded) become a
:class:`HandshakeError`. ``connect`` itself lives in :mod:`trionet.ws`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData
from wsproto.events import Request as HandshakeRequest
from wsproto.utilities import RemoteProtocolError

from . import net, tls
from ._errors import ConnectError, ProtocolError
from ._stream import Socket
from ._ws_connection import _SOCKET_GONE, WebSocket
from ._ws_protocol import BoundedPerMessageDeflate, FrameGuard, new_connection

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "HandshakeError",
    "Target",
    "client_handshake",
    "open_socket",
    "parse_url",
]

#: Bytes asked of the kernel per read of the handshake response.
RECEIVE_SIZE = 65536

#: How long the client waits for the server's handshake response
#: (trio-websocket's CONN_TIMEOUT is 60 s).
HANDSHAKE_TIMEOUT = 30.0

#: The largest handshake response head the client reads (Node's maxHeaderSize).
MAX_RESPONSE_HEAD = 16384

#: The largest refusal body the client keeps for :class:`HandshakeError`.
MAX_REJECT_BODY = 65536


class HandshakeError(ProtocolError):
    """The server refused the opening handshake or answered it wrongly.

    ``status`` is the HTTP status of a refusal (None when the server answered
    101 but broke the handshake, e.g. a wrong Sec-WebSocket-Accept), with its
    ``headers`` and ``body``.
    """

    def __init__(
        self,
        message: str,
        status: int | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = list(headers)
        self.body = body


class Target:
    """A parsed ws:// or wss:// URL."""

    def __init__(self, secure: bool, host: str, port: int, resource: str, host_header: str) -> None:
        self.secure = secure
        self.host = host
        self.port = port
        self.resource = resource
        self.host_header = host_header


def parse_url(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"a WebSocket URL starts with ws:// or wss://, not {url!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    default_port = 443 if secure else 80
    host_header = shown if port == default_port else f"{shown}:{port}"
    return Target(secure, host, port, resource, host_header)


async def open_socket(
    target: Target, secure: Callable[..., Awaitable[tls.TLSSocket]], timeout: float
) -> Socket:
    """Connect TCP, and TLS for wss:// (``secure``: :func:`trionet.tls.connect` with options)."""
    if target.secure:
        return await secure(target.port, target.host, timeout=timeout)
    return await net.connect(target.port, target.host, timeout=timeout)


async def client_handshake(
    sock: Socket,
    target: Target,
    *,
    subprotocols: Sequence[str],
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
    max_message_size: int,
    compression: bool,
    close_timeout: float,
) -> WebSocket:
    wsconn = WSConnection(ConnectionType.CLIENT)
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers or [])
    offered = [BoundedPerMessageDeflate(max_message_size)] if compression else []
    request = HandshakeRequest(
        host=target.host_header,
        target=target.resource,
        subprotocols=list(subprotocols),
        extensions=offered,
        extra_headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs],
    )
    try:
        await sock.send(wsconn.send(request))
        head, rest = await _read_head(sock)
    except _SOCKET_GONE as exc:
        raise ConnectError(f"connection lost during the WebSocket handshake: {exc}") from exc
    try:
        wsconn.receive_data(head)
        event = next(iter(wsconn.events()), None)
    except (RemoteProtocolError, ValueError) as exc:  # ValueError: bad deflate parameters
        raise HandshakeError(f"bad handshake response: {exc}") from None
    if isinstance(event, RejectConnection):
        body = await _read_reject_body(sock, wsconn, rest) if event.has_body else b""
        raise HandshakeError(
            f"the server refused the WebSocket handshake: {event.status_code}",
            event.status_code,
            event.headers,
            body,
        )
    if not isinstance(event, AcceptConnection):
        raise HandshakeError(f"no handshake response, got {event!r}")
    guard = FrameGuard(max_message_size)
    connection = new_connection(True, [*event.extensions, guard])
    return WebSocket(
        sock,
        connection,
        guard=guard,
        client=True,
        path=target.resource,
        request=event,
        subprotocol=event.subprotocol,
        extensions=event.extensions,
        close_timeout=close_timeout,
        pending=rest,
    )


async def _read_head(sock: Socket) -> tuple[bytes, bytes]:
    """Read the response head; returns (head, the bytes after it)."""
    buffer = b""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > MAX_RESPONSE_HEAD:
            raise HandshakeError(f"handshake response head over {MAX_RESPONSE_HEAD} bytes")
        chunk = await sock.receive(RECEIVE_SIZE)
        if not chunk:
            raise HandshakeError("the server closed the connection during the handshake")
        buffer += chunk
    return buffer[: end + 4], buffer[end + 4 :]


async def _read_reject_body(sock: Socket, wsconn: WSConnection, rest: bytes) -> bytes:
    """Read the body of a refusal (bounded), for HandshakeError.body."""
    body = b""
    data: bytes | None = rest
    with trio.move_on_after(1):
        while len(body) <= MAX_REJECT_BODY:
            try:
                wsconn.receive_data(data)
            except RemoteProtocolError:
                break
            for event in wsconn.events():
                if isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        return body
            if data is None:
                break
            try:
                data = await sock.receive(RECEIVE_SIZE) or None
            except _SOCKET_GONE:
                break
    return body[:MAX_REJECT_BODY]
