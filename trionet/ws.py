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

``broadcast(server.clients, message)`` sends to every open connection of a
server without waiting for any (ws's ``wss.clients``, ``websockets.broadcast``).

An ``on_upgrade`` hook that decides per request answers the handshake itself:
``handshake = await server_handshake(req, sock, head)``, then
``async with handshake.accept(subprotocol=..., headers=...) as ws`` or
``await handshake.reject(status, headers=..., body=...)`` (what an ASGI
server needs for ``websocket.accept`` and ``websocket.http.response``).

An idle connection holds one task, its handler's: waiting in
:meth:`WebSocket.receive`, it reads the socket itself. While the handler is
away from ``receive()``, a reader task answers pings and completes close
handshakes, whatever the application is doing, and queues data messages
(bounded) for ``receive()``. A server's stop (``aclose()``, SIGTERM
through ``trionet.run``) closes every open WebSocket with 1001; ``close()``
alone stops accepting and lets them run on, as ws's ``wss.close()``.

Where things are: this module has the public functions and the servers;
``_ws_server`` is the server's opening handshake (wsproto's, with the checks
wsproto skips), ``_ws_client`` the client's; ``_ws_connection`` is the
connection's I/O (sends, close handshake; ``_ws_reading`` reads and decides
who reads, ``_ws_tasks`` runs the helper tasks); ``_ws_state`` is what
it remembers, as pure state (message queue and its room, fragment assembly,
pending pings, who owns a fragmented send, close codes); ``_ws_running`` runs
it (reader, heartbeat, a handler's failure) and broadcasts; ``_ws_send``
holds the send lock and the broadcast outbox; ``_ws_protocol`` holds the
sans-IO parts around wsproto: size and fragment limits enforced from frame
headers, inflation bounded while it happens, handshake checks. Every frame
is parsed and built by wsproto.

Compression (permessage-deflate) is off by default on both sides, server
and client. ws turns it on for its client and off for its server, whose
README says it "adds a significant overhead in terms of performance and
memory consumption"; each compressed connection holds zlib state of its own
(about 300 KiB with the default window). One default for both ends means a
trionet client and server behave the same whichever end a user configures;
``compression=True`` on both ends turns it on.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import trio

from . import _server, _stream, tls
from ._accepted import TLSContext
from ._stream import Address, Socket
from ._tls_context import CAInput, PemInput
from ._url import WS_SCHEMES, parse_url
from ._ws_client import HANDSHAKE_TIMEOUT, HandshakeError, client_handshake, open_socket
from ._ws_connection import CLOSE_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE, ConnectionClosed, WebSocket
from ._ws_protocol import Rejection, pick_subprotocol
from ._ws_running import broadcast, handler_failed, running
from ._ws_send import MAX_BUFFERED_AMOUNT
from ._ws_server import ServerHandshake, server_handshake
from ._ws_state import MAX_QUEUE_MESSAGES, REGISTERED_CLOSE_CODES, CloseCode, State

__all__ = [
    "CLOSE_TIMEOUT",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MAX_BUFFERED_AMOUNT",
    "MAX_QUEUE_MESSAGES",
    "REGISTERED_CLOSE_CODES",
    "CloseCode",
    "ConnectionClosed",
    "HandshakeError",
    "Server",
    "ServerHandshake",
    "State",
    "UpgradeHandler",
    "WebSocket",
    "broadcast",
    "connect",
    "handler",
    "serve",
    "server_handshake",
]

logger = logging.getLogger("trionet.ws")

#: The handler ``serve``/``handler`` runs, in its own task, per WebSocket.
Handler = Callable[[WebSocket], Awaitable[None]]

#: ``accept(req)`` may return True/None (go on), False (401) or (status, headers, body).
AcceptResult = bool | None | tuple[int, Any, Any]
AcceptHook = Callable[[Any], AcceptResult | Awaitable[AcceptResult]]


# -- server side -----------------------------------------------------------------


class UpgradeHandler:
    """The ``on_upgrade`` hook :func:`handler` returns; ``clients`` are its open connections.

    ``await hook(req, sock, head)`` answers one upgrade request and runs the
    handler on the WebSocket, as :func:`trionet.http.serve` does for each.
    """

    def __init__(self, handler: Handler, options: _Options) -> None:
        self.handler = handler
        self.options = options
        #: The connections past their handshake and not closed yet (ws's
        #: ``wss.clients``): a live set, for :func:`broadcast` or a count.
        self.clients: set[WebSocket] = set()

    async def __call__(self, req: Any, sock: Socket, head: bytes) -> None:
        """Check the handshake, ask ``accept``, answer, run the handler (see :func:`handler`)."""
        options = self.options
        handshake = await server_handshake(req, sock, head)
        if handshake is None:
            return  # not a valid WebSocket handshake: refused already
        if options.accept is not None and not await _verify(options.accept, handshake):
            return
        ws: WebSocket | None = None
        try:
            async with handshake.accept(
                subprotocol=pick_subprotocol(handshake.subprotocols, options.subprotocols),
                max_message_size=options.max_message_size,
                compression=options.compression,
                ping_interval=options.ping_interval,
                ping_timeout=options.ping_timeout,
                close_timeout=options.close_timeout,
            ) as ws:
                del handshake  # answered: nothing of it is needed while the handler runs
                if not ws.closed:  # the client may have left before the 101
                    self.clients.add(ws)
                    # run_handler(ws, self.handler), inline: one coroutine
                    # frame fewer per connection for its whole life.
                    try:
                        await self.handler(ws)
                    except Exception as exc:
                        await handler_failed(ws, exc)
        except HandshakeError:
            return  # the client's offer could not be answered: it got 400
        finally:
            if ws is not None:
                self.clients.discard(ws)


async def _verify(accept: AcceptHook, handshake: ServerHandshake) -> bool:
    """Ask the user's ``accept(req)``; False after refusing the handshake as it said."""
    try:
        rejection = await _ask_accept(accept, handshake.request)
    except Exception:
        logger.exception("accept() hook failed for %r", handshake.path)
        rejection = Rejection(500, [], b"Internal Server Error\n")
    if rejection is None:
        return True
    try:
        await handshake.reject(rejection.status, headers=rejection.headers, body=rejection.body)
    except ValueError:
        logger.exception("accept() hook refused %r with an invalid response", handshake.path)
        await handshake.reject(500, body=b"Internal Server Error\n")
    return False


class _Options:
    """The server-side options of :func:`handler`, checked once."""

    def __init__(
        self,
        *,
        subprotocols: Sequence[str],
        accept: AcceptHook | None,
        max_message_size: int,
        ping_interval: float | None,
        ping_timeout: float | None,
        compression: bool,
        close_timeout: float,
    ) -> None:
        if max_message_size <= 0:
            raise ValueError("max_message_size must be positive")
        self.subprotocols = subprotocols
        self.accept = accept
        self.max_message_size = max_message_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.compression = compression
        self.close_timeout = close_timeout


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
) -> UpgradeHandler:
    """An ``on_upgrade`` hook for :func:`trionet.http.serve` that runs ``handler`` per WebSocket.

    The hook checks the handshake (malformed ones get 400, 405 or 426, never
    101), asks ``accept(req)`` (Node ws's ``verifyClient``: return False for
    401, or ``(status, headers, body)`` to refuse), agrees on a subprotocol
    (the first of ``subprotocols`` the client offers) and on permessage-deflate
    (only with ``compression=True``; as in ws, messages under 1 KiB are sent
    uncompressed), answers 101 and runs ``handler(ws)``. Its ``clients`` is
    the live set of open connections. It takes the steps of
    :func:`server_handshake`, which a hook of your own can take too.

    When the handler returns, or ends because its own connection closed, the
    connection is closed with 1000. Any other exception, ``ConnectionClosed``
    from *another* connection included, is logged at ERROR with its
    traceback and closes the connection with 1011.

    Args:
      max_message_size: larger messages (after inflation) close the connection with 1009.
      ping_interval: ping the client this often (seconds) and close the
        connection (1011) when a Pong takes longer than ``ping_timeout``
        (default: ``ping_interval``).
      compression: negotiate permessage-deflate (off by default, see the module docs).
    """
    options = _Options(
        subprotocols=subprotocols,
        accept=accept,
        max_message_size=max_message_size,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        compression=compression,
        close_timeout=close_timeout,
    )
    return UpgradeHandler(handler, options)


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


#: :func:`handler` under another name, for :func:`serve` whose argument is called handler.
_upgrade_hook = handler


async def _upgrade_required(req: Any, res: Any) -> None:
    """The HTTP app of a WebSocket-only server: everything else gets 426."""
    res.write_head(426, {"Upgrade": "websocket", "Sec-WebSocket-Version": "13"})
    await res.end(b"Upgrade Required: this server speaks WebSocket only\n")


class Server:
    """What :func:`serve` starts: the HTTP server underneath, and its open WebSockets.

    ``clients`` is ws's ``wss.clients``: the live set of connections past
    their handshake and not closed yet, e.g. for ``broadcast(server.clients, m)``.
    Everything else a trionet server has (``address``, ``port``,
    ``connections``, ``close()``, ``aclose()``, ``wait_closed()``) is the
    HTTP server's, read through; :attr:`http_server` is that server itself.

    Why a wrapper: :func:`trionet.http.serve` builds the server, so a
    WebSocket server can only add ``clients`` from outside. Rejected: turning
    the built server into a subclass by assigning its ``__class__`` (the
    former way: an object whose class changes after it was made surprises
    whoever reads or debugs it, and ties this class to the other's layout);
    setting a ``clients`` attribute on the plain server (invisible to type
    checkers and to its class's docs); a ``clients`` on every trionet Server
    (only WebSocket servers have a meaning for it). The wrapper holds no
    state of the server's: each property reads the server underneath, so the
    two can never disagree. The price: it is no ``trionet.net.Server``
    instance (``isinstance`` answers no; :attr:`http_server` is one).
    """

    def __init__(self, http_server: _server.Server, clients: set[WebSocket]) -> None:
        #: The HTTP server that answers the upgrade requests.
        self.http_server = http_server
        #: The open connections (ws's ``wss.clients``): a live set.
        self.clients = clients

    def __repr__(self) -> str:
        return f"<trionet.ws.Server {self.http_server!r}, {len(self.clients)} clients>"

    @property
    def address(self) -> Address:
        """The address listened on: ``(host, port)``."""
        return self.http_server.address

    @property
    def port(self) -> int | None:
        """The port listened on."""
        return self.http_server.port

    @property
    def connections(self) -> int:
        """How many connections are live now, WebSocket or still HTTP."""
        return self.http_server.connections

    @property
    def dropped(self) -> int:
        """Connections refused at ``max_connections`` (Node's 'drop')."""
        return self.http_server.dropped

    @property
    def closing(self) -> trio.Event:
        """Set when :meth:`close` is called."""
        return self.http_server.closing

    def close(self) -> None:
        """Stop accepting now; live connections go on until they finish."""
        self.http_server.close()

    async def aclose(self, timeout: float | None = None) -> None:
        """Stop accepting, close open WebSockets with 1001 (going away) and wait
        for their close handshakes; cancel what is left after ``timeout``."""
        await self.http_server.aclose(timeout)

    async def wait_closed(self) -> None:
        """Wait until the server is closed and its last connection has ended."""
        await self.http_server.wait_closed()


class _StartedWithClients:
    """The task status :func:`serve` hands the HTTP server: reports a :class:`Server`."""

    def __init__(self, task_status: trio.TaskStatus[Server], clients: set[WebSocket]) -> None:
        self._task_status = task_status
        self._clients = clients

    def started(self, value: _server.Server | None = None) -> None:
        assert value is not None
        self._task_status.started(Server(value, self._clients))


async def serve(
    handler: Handler,
    port: int | None = None,
    *,
    host: str | None = None,
    path: str | os.PathLike[str] | None = None,
    mode: int | None = None,
    subprotocols: Sequence[str] = (),
    accept: AcceptHook | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ping_interval: float | None = None,
    ping_timeout: float | None = None,
    compression: bool = False,
    close_timeout: float = CLOSE_TIMEOUT,
    ssl_context: TLSContext | None = None,
    proxy_protocol: bool = False,
    proxy_headers: bool = False,
    forwarded_allow_ips: str | Sequence[str] | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve WebSockets on ``port`` (Node ws's ``new WebSocketServer({port})``).

    Start it with ``server = await nursery.start(trionet.ws.serve, handler, port)``;
    ``server.clients`` is the live set of its open connections. Plain HTTP
    requests get 426 Upgrade Required. The options are those of
    :func:`handler`; ``ssl_context`` serves wss://; ``path`` listens on a Unix
    socket instead, with the permission bits ``mode`` (e.g. ``0o660``).
    ``proxy_protocol``, ``proxy_headers`` and ``forwarded_allow_ips`` are
    :func:`trionet.http.serve`'s: ``ws.remote_address`` and ``ws.request.scheme``
    then name the client.
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
        path=path,
        mode=mode,
        on_upgrade=hook,
        ssl_context=ssl_context,
        proxy_protocol=proxy_protocol,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
        task_status=_StartedWithClients(task_status, hook.clients),
    )


# -- client side -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def connect(
    url: str,
    *,
    subprotocols: Sequence[str] = (),
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ssl_context: tls.TLSConfig | ssl.SSLContext | None = None,
    ca: CAInput | None = None,
    cert: PemInput | None = None,
    key: PemInput | None = None,
    reject_unauthorized: bool = True,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    compression: bool = False,
    close_timeout: float = CLOSE_TIMEOUT,
    timeout: float = HANDSHAKE_TIMEOUT,
) -> AsyncIterator[WebSocket]:
    """Open a WebSocket to ``url`` (``ws://`` or ``wss://``) for the ``async with`` block.

    The client offers ``subprotocols`` (and permessage-deflate with
    ``compression=True``; off by default, as on the server), sends the extra
    ``headers`` and checks the server's Sec-WebSocket-Accept. Leaving the
    block closes the connection with 1000. An exception that leaves it is
    the block's failure, by the rule of server handlers: the connection
    closes with 1011 ("client failed") and the exception comes out as itself
    (not in an ExceptionGroup). The connection's own ``ConnectionClosed`` is
    no failure: it just ended.

    For wss://, ``ca``, ``cert``, ``key`` and ``reject_unauthorized`` are
    those of :func:`trionet.tls.connect` and ``trionet.https.request``: PEM
    bytes or file paths (``ca`` also a list), ``cert`` and ``key`` a client
    certificate; an ``ssl_context`` given instead is used as it is.

    The URL is read as Node's ws reads it (the same parser as
    :func:`trionet.http.request`'s): a non-ASCII host in its IDNA form,
    ``[::1]`` for IPv6, ports 80 and 443 by default, ``user:pass@`` sent as
    ``Authorization: Basic``, and no fragment (RFC 6455 §3).

    Raises:
      ValueError: ``url`` is not a ws:// or wss:// URL, or has a fragment.
      ConnectError: the server could not be reached; :class:`trionet.ConnectionLost`
        when it closed or reset the connection without answering.
      TLSError: the TLS handshake failed (wss://).
      HandshakeError: the server refused (``status``, ``headers``, ``body``: its
        first 64 KiB) or broke the handshake.
      TimeoutError: no handshake response within ``timeout`` seconds.
    """
    target = parse_url(url, WS_SCHEMES)
    secure = functools.partial(
        tls.connect,
        ca=ca,
        cert=cert,
        key=key,
        reject_unauthorized=reject_unauthorized,
        ssl_context=ssl_context,
    )
    sock = await open_socket(target, secure, timeout)
    async with _stream.handshake(sock, timeout, f"WebSocket handshake with {url}"):
        ws = await client_handshake(
            sock,
            target,
            url,
            subprotocols=subprotocols,
            headers=headers,
            max_message_size=max_message_size,
            compression=compression,
            close_timeout=close_timeout,
        )

    async with running(ws):
        yield ws


# Show the public names as trionet.ws.X in reprs, tracebacks and docs.
for _public in (
    ConnectionClosed, HandshakeError, Server, ServerHandshake, State, WebSocket, broadcast,
    server_handshake,
):  # fmt: skip
    _public.__module__ = __name__
