"""trionet.ws: WebSocket servers and clients (RFC 6455 on wsproto), as npm's ``ws``.

    async def echo(ws: trionet.ws.WebSocket) -> None:
        async for message in ws:              # ends when the peer closes normally
            await ws.send(message)

    server = await nursery.start(trionet.ws.serve, echo, 8080)

    async with trionet.ws.connect("ws://127.0.0.1:8080/chat") as ws:
        await ws.send("hello world!")
        print(await ws.receive())

One HTTP server can serve pages and WebSockets on one port:
``trionet.http.serve(app, port, on_upgrade=trionet.ws.handler(echo))``.

Each connection has one reader task in its own nursery. It answers pings and
completes close handshakes by itself, whatever the application is doing, and
hands data messages to :meth:`WebSocket.receive` through a bounded queue.

Where things are: this module does the opening handshakes (wsproto's, with
the checks wsproto skips) and starts connections; ``_ws_connection`` is the
connection itself (queue, pings, close handshake, heartbeat);
``_ws_protocol`` holds the sans-IO parts: size and fragment limits enforced
from frame headers, inflation bounded while it happens, handshake checks.
Every frame is parsed and built by wsproto.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import h11
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import AcceptConnection, RejectConnection, RejectData
from wsproto.events import Request as HandshakeRequest
from wsproto.extensions import Extension
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from . import net, tls
from ._errors import ConnectError, ProtocolError
from ._server import Server, TLSContext
from ._stream import Socket, handshake
from ._ws_connection import (
    CLOSE_TIMEOUT,
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_QUEUE_MESSAGES,
    CloseCode,
    ConnectionClosed,
    State,
    WebSocket,
    _running,
)
from ._ws_protocol import (
    BoundedPerMessageDeflate,
    FrameGuard,
    Rejection,
    check_handshake,
    format_response,
    pick_subprotocol,
)

__all__ = [
    "CLOSE_TIMEOUT",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MAX_QUEUE_MESSAGES",
    "CloseCode",
    "ConnectionClosed",
    "HandshakeError",
    "Server",
    "State",
    "WebSocket",
    "connect",
    "handler",
    "serve",
]

logger = logging.getLogger("trionet")

#: Bytes asked of the kernel per read of the handshake response.
RECEIVE_SIZE = 65536

#: How long the client waits for the server's handshake response
#: (trio-websocket's CONN_TIMEOUT is 60 s).
HANDSHAKE_TIMEOUT = 30.0

#: The largest handshake response head the client reads (Node's maxHeaderSize).
MAX_RESPONSE_HEAD = 16384

#: The largest refusal body the client keeps for :class:`HandshakeError`.
MAX_REJECT_BODY = 65536

#: The handler ``serve``/``handler`` runs, in its own task, per WebSocket.
Handler = Callable[[WebSocket], Awaitable[None]]

#: ``accept(req)`` may return True/None (go on), False (401) or (status, headers, body).
AcceptResult = bool | None | tuple[int, Any, Any]
AcceptHook = Callable[[Any], AcceptResult | Awaitable[AcceptResult]]

#: What a write to a dead socket raises.
_SOCKET_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


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


# -- server side -----------------------------------------------------------------


UpgradeHook = Callable[[Any, Socket, bytes], Awaitable[None]]


def handler(
    handler: Handler,
    *,
    subprotocols: Sequence[str] = (),
    accept: AcceptHook | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ping_interval: float | None = None,
    ping_timeout: float | None = None,
    compression: bool = False,
    close_timeout: float = CLOSE_TIMEOUT,
) -> UpgradeHook:
    """An ``on_upgrade`` hook for :func:`trionet.http.serve` that runs ``handler`` per WebSocket.

    The hook checks the handshake (malformed ones get 400, 405 or 426, never
    101), asks ``accept(req)`` (Node ws's ``verifyClient``: return False for
    401, or ``(status, headers, body)`` to refuse), agrees on a subprotocol
    (the first of ``subprotocols`` the client offers) and on permessage-deflate
    (only with ``compression=True``; as in ws, messages under 1 KiB are sent
    uncompressed), answers 101 and runs ``handler(ws)``.
    When the handler returns the connection is closed with 1000; when it
    raises, the error is logged and the connection closed with 1011.

    Args:
      max_message_size: larger messages (after inflation) close the connection with 1009.
      ping_interval: ping the client this often (seconds) and close the
        connection (1011) when a Pong takes longer than ``ping_timeout``
        (default: ``ping_interval``).
    """
    if max_message_size <= 0:
        raise ValueError("max_message_size must be positive")

    async def on_upgrade(req: Any, sock: Socket, head: bytes) -> None:
        ws = await _server_handshake(
            req,
            sock,
            head,
            subprotocols=subprotocols,
            accept=accept,
            max_message_size=max_message_size,
            compression=compression,
            close_timeout=close_timeout,
        )
        if ws is None:
            return

        async with _running(ws, ping_interval=ping_interval, ping_timeout=ping_timeout):
            try:
                await handler(ws)
            except ConnectionClosed:
                pass  # the peer went away while the handler used the connection
            except Exception:
                logger.exception("WebSocket handler for %r failed", ws.remote_address)
                await ws._fail(CloseCode.INTERNAL_ERROR, "handler failed")

    return on_upgrade


async def _server_handshake(
    req: Any,
    sock: Socket,
    head: bytes,
    *,
    subprotocols: Sequence[str],
    accept: AcceptHook | None,
    max_message_size: int,
    compression: bool,
    close_timeout: float,
) -> WebSocket | None:
    """Answer the opening handshake; the accepted WebSocket, or None after a refusal."""
    raw_headers = list(req.raw_headers)
    rejection = check_handshake(str(req.method).upper(), raw_headers)
    if rejection is None and accept is not None:
        try:
            rejection = await _ask_accept(accept, req)
        except Exception:
            logger.exception("accept() hook failed for %r", getattr(req, "url", None))
            rejection = Rejection(500, [], b"Internal Server Error\n")
    if rejection is not None:
        await _refuse(sock, rejection, req)
        return None
    wsconn = WSConnection(ConnectionType.SERVER)
    try:
        wsconn.initiate_upgrade_connection(raw_headers, req.url)
        offer = next(e for e in wsconn.events() if isinstance(e, HandshakeRequest))
    except (RemoteProtocolError, StopIteration, h11.ProtocolError) as exc:
        await _refuse(sock, Rejection(400, [], f"bad WebSocket handshake: {exc}\n".encode()), req)
        return None
    subprotocol = pick_subprotocol(offer.subprotocols, subprotocols)
    offered: list[Extension] = [BoundedPerMessageDeflate(max_message_size)] if compression else []
    try:
        response = wsconn.send(AcceptConnection(subprotocol=subprotocol, extensions=offered))
    except (ValueError, LocalProtocolError) as exc:
        await _refuse(sock, Rejection(400, [], f"bad extension offer: {exc}\n".encode()), req)
        return None
    agreed = [e for e in offered if e.enabled()]
    guard = FrameGuard(max_message_size)
    connection = Connection(ConnectionType.SERVER, [*agreed, guard])
    try:
        await sock.send(response)
    except _SOCKET_GONE:
        return None
    return WebSocket(
        sock,
        connection,
        guard=guard,
        client=False,
        path=str(getattr(req, "url", "/")),
        request=req,
        subprotocol=subprotocol,
        extensions=agreed,
        close_timeout=close_timeout,
        pending=head,
    )


async def _ask_accept(accept: AcceptHook, req: Any) -> Rejection | None:
    """Run the user's ``accept(req)``; a Rejection when it refuses."""
    result = accept(req)
    if inspect.isawaitable(result):
        result = await result
    if result is None or result is True:
        return None
    if result is False:
        return Rejection(401, [], b"Unauthorized\n")
    status, headers, body = result
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
    if isinstance(body, str):
        body = body.encode()
    return Rejection(int(status), [(str(k), str(v)) for k, v in pairs], bytes(body or b""))


async def _refuse(sock: Socket, rejection: Rejection, req: Any) -> None:
    logger.info(
        "refused WebSocket handshake from %r: %d %s",
        getattr(req, "remote_address", None),
        rejection.status,
        rejection.body.decode(errors="replace").strip(),
    )
    with contextlib.suppress(*_SOCKET_GONE):
        await sock.send(format_response(rejection.status, rejection.headers, rejection.body))


#: :func:`handler` under another name, for :func:`serve` whose argument is called handler.
_upgrade_hook = handler


async def _upgrade_required(req: Any, res: Any) -> None:
    """The HTTP app of a WebSocket-only server: everything else gets 426."""
    res.write_head(426, {"Upgrade": "websocket", "Sec-WebSocket-Version": "13"})
    await res.end(b"Upgrade Required: this server speaks WebSocket only\n")


async def serve(
    handler: Handler,
    port: int | None = None,
    *,
    host: str | None = None,
    subprotocols: Sequence[str] = (),
    accept: AcceptHook | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ping_interval: float | None = None,
    ping_timeout: float | None = None,
    compression: bool = False,
    close_timeout: float = CLOSE_TIMEOUT,
    ssl_context: TLSContext | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve WebSockets on ``port`` (Node ws's ``new WebSocketServer({port})``).

    Start it with ``server = await nursery.start(trionet.ws.serve, handler, port)``.
    Plain HTTP requests get 426 Upgrade Required. The options are those of
    :func:`handler`; ``ssl_context`` serves wss://.
    """
    from . import http  # the HTTP server imports nothing of ours; import late anyway

    hook = _upgrade_hook(
        handler,
        subprotocols=subprotocols,
        accept=accept,
        max_message_size=max_message_size,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        compression=compression,
        close_timeout=close_timeout,
    )
    await http.serve(
        _upgrade_required,
        port,
        host=host,
        on_upgrade=hook,
        ssl_context=ssl_context,
        task_status=task_status,
    )


# -- client side -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def connect(
    url: str,
    *,
    subprotocols: Sequence[str] = (),
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ssl_context: tls.TLSConfig | ssl.SSLContext | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    compression: bool = True,
    close_timeout: float = CLOSE_TIMEOUT,
    timeout: float = HANDSHAKE_TIMEOUT,
) -> AsyncIterator[WebSocket]:
    """Open a WebSocket to ``url`` (``ws://`` or ``wss://``) for the ``async with`` block.

    The client offers ``subprotocols`` and permessage-deflate (as ws does),
    sends the extra ``headers`` and checks the server's Sec-WebSocket-Accept.
    Leaving the block closes the connection with 1000.

    Raises:
      ConnectError: the server could not be reached.
      TLSError: the TLS handshake failed (wss://).
      HandshakeError: the server refused (``status``) or broke the handshake.
      TimeoutError: no handshake response within ``timeout`` seconds.
    """
    target = _parse_url(url)
    sock = await _open(target, ssl_context, timeout)
    async with handshake(sock, timeout, f"WebSocket handshake with {url}"):
        ws = await _client_handshake(
            sock,
            target,
            subprotocols=subprotocols,
            headers=headers,
            max_message_size=max_message_size,
            compression=compression,
            close_timeout=close_timeout,
        )

    async with _running(ws):
        yield ws


class _Target:
    """A parsed ws:// or wss:// URL."""

    def __init__(self, secure: bool, host: str, port: int, resource: str, host_header: str) -> None:
        self.secure = secure
        self.host = host
        self.port = port
        self.resource = resource
        self.host_header = host_header


def _parse_url(url: str) -> _Target:
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
    return _Target(secure, host, port, resource, host_header)


async def _open(
    target: _Target, ssl_context: tls.TLSConfig | ssl.SSLContext | None, timeout: float
) -> Socket:
    """Connect TCP, and TLS for wss:// (through :func:`trionet.tls.connect`)."""
    if target.secure:
        return await tls.connect(
            target.port, target.host, ssl_context=ssl_context, timeout=timeout
        )
    return await net.connect(target.port, target.host, timeout=timeout)


async def _client_handshake(
    sock: Socket,
    target: _Target,
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
    except RemoteProtocolError as exc:
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
    connection = Connection(ConnectionType.CLIENT, [*event.extensions, guard])
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


# Show the public classes as trionet.ws.X in reprs, tracebacks and docs.
for _public in (ConnectionClosed, State, WebSocket):
    _public.__module__ = __name__
