"""The HTTP/1.1 server: bytes -> h11 -> Request/Response -> the app -> bytes.

One :class:`_Connection` drives each accepted stream, in the connection's own
task (no task per request). It owns the receive buffer: the head of every
request, pipelined or not, is found and checked by trionet's own rules
(:mod:`._limits`) before h11 parses it, and h11 only ever sees one request at
a time, so h11's leniencies cannot leak into the next request.

This module keeps only the connection loop. Each request gets its rooms:
:mod:`._body` parses the head with h11 and reads, drains or refuses the body;
:mod:`._messages` is what the app sees (``Request``, ``Response``), and
:mod:`._framing` turns the response into head bytes (trionet's own, not
h11's: it says why). They reach the connection only through the protocols
``Exchange`` and ``BodySource``, which :class:`_Connection` implements; they
used to read and write the driver's private attributes (and it theirs)
across an import circle.

Timeouts work as Node's ``connectionsCheckingInterval``: each connection keeps
a plain ``deadline`` number that moves with its phase (``headers_timeout`` from
accept and from the first byte of each later request, ``keep_alive_timeout``
while idle between requests, none while the app runs), and one task per server
cancels the connections whose deadline has passed. Moving a Trio cancel-scope
deadline twice per request cost 6% of the request's CPU time; a float costs
nothing. Body reads by the app are bounded by ``request_timeout`` directly.

Each connection holds the one :class:`trionet.net.Socket` the accept loop
made for it (a ``TLSSocket`` over HTTPS, :func:`trionet.tls.socket_for`) and
does all its I/O through it: on plain TCP the Socket reads and writes the
descriptor directly (:mod:`trionet._fdio` says why and how), it counts the
bytes, and ``req.socket`` is that same object. Building it costs no system
call (its addresses are looked up only if asked for), which is why there is
no separate, cheaper path for the server any more.

A connection that ends while the request may still be arriving (a refused
request, or an app that answered without reading the whole body) closes in
stages, so that the close does not reset the answer away
(:mod:`trionet._linger`); server shutdown cuts that short.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import trio

from .._accepted import TLSContext
from .._fdio import DEFAULT_RECEIVE_SIZE
from .._forwarded import TrustedProxies
from .._linger import LingerEnd
from .._listen import open_listener
from .._server import Server, serve_listeners
from .._stream import Socket, raw_socket
from ..tls import socket_for
from ._body import RequestBody, parse_head
from ._framing import keep_alive_lines, service_unavailable
from ._headers import error_response
from ._limits import (
    DEFAULT_HEADERS_TIMEOUT,
    DEFAULT_KEEP_ALIVE_TIMEOUT,
    DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_REQUEST_TIMEOUT,
    ClientError,
    analyze_request,
    check_head,
    check_partial_head,
    request_timeout_error,
    skip_empty_lines,
)
from ._messages import Request, Response

__all__ = ["ClientError", "Request", "Response", "ServerConfig", "serve", "serve_http"]

# One logger per module, named after it (as Trio's ``trio.serve_listeners``
# logs to ``trio.serve_listeners``); records still reach handlers on "trionet".
logger = logging.getLogger("trionet.http.server")

App = Callable[["Request", "Response"], Awaitable[None]]
#: ``on_upgrade`` / ``on_connect``: the request, the raw socket, bytes read past the head.
SocketHook = Callable[["Request", Socket, bytes], Awaitable[None]]
ClientErrorHook = Callable[[ClientError, Socket], Awaitable[None]]

#: How much one read asks for (Node's socket highWaterMark).
RECEIVE_SIZE = DEFAULT_RECEIVE_SIZE
#: Bound on writing an error response to a client that may not be reading.
ERROR_RESPONSE_TIMEOUT = 5.0
#: Longest and shortest pause of the task that enforces timeouts (Node checks
#: every 30 s; we check ten times per shortest timeout, at most once a second).
MAX_CHECK_INTERVAL = 1.0
MIN_CHECK_INTERVAL = 0.01

#: At shutdown, a connection idle for less than this gets the rest of it for
#: its next request: it answered a request just now, so its client is likely
#: in a request loop (a proxy, a load generator) with the next request a round
#: trip away. Closed at once, that request would arrive on a closed socket:
#: measured with 30 closed-loop keep-alive clients, 16-30 requests were reset
#: per stop. Half a second covers a round trip across continents (~300 ms).
#: A connection idle for longer is truly idle and closes at once.
IDLE_CLOSE_GRACE = 0.5

# Connection phases; the shutdown watcher closes connections that are _IDLE
# or _LINGER (the last response is out; only the lingering close is left).
_IDLE, _HEAD, _BUSY, _LINGER = range(4)


class ServerConfig:
    """The options of one ``serve()`` call, shared by all its connections."""

    def __init__(
        self,
        app: App,
        *,
        on_upgrade: SocketHook | None = None,
        on_connect: SocketHook | None = None,
        on_check_continue: App | None = None,
        on_client_error: ClientErrorHook | None = None,
        headers_timeout: float = DEFAULT_HEADERS_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        max_body_size: int | None = None,
        max_requests_per_socket: int | None = None,
        trusted_proxies: TrustedProxies | None = None,
    ) -> None:
        for name, value in (
            ("headers_timeout", headers_timeout),
            ("request_timeout", request_timeout),
            ("keep_alive_timeout", keep_alive_timeout),
            ("max_body_size", max_body_size or 0),
            ("max_requests_per_socket", max_requests_per_socket or 0),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, not {value}")
        if max_header_size <= 0:
            raise ValueError(f"max_header_size must be positive, not {max_header_size}")
        self.app = app
        self.on_upgrade = on_upgrade
        self.on_connect = on_connect
        self.on_check_continue = on_check_continue
        self.on_client_error = on_client_error
        # As in Node, 0 turns a timeout off, and the head, being part of the
        # request, never gets longer than request_timeout.
        self.request_timeout = request_timeout or math.inf
        self.headers_timeout = min(headers_timeout or math.inf, self.request_timeout)
        self.keep_alive_timeout = keep_alive_timeout or math.inf
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self.max_requests_per_socket = max_requests_per_socket or 0
        #: With ``proxy_headers``: whose forwarding headers count (None: nobody's).
        self.trusted_proxies = trusted_proxies
        shortest = min(self.headers_timeout, self.request_timeout, self.keep_alive_timeout)
        self.check_interval = min(MAX_CHECK_INTERVAL, max(MIN_CHECK_INTERVAL, shortest / 10))
        self.keep_alive_lines = keep_alive_lines(keep_alive_timeout)
        #: Live connections, so shutdown can close the idle ones.
        self.connections: set[_Connection] = set()
        self.closing = False
        #: Set when the server is stopping (``Server.stopping``: ``aclose()``,
        #: trionet.run's graceful stop): what connections handed to ``on_upgrade``
        #: wait on (a WebSocket then closes with 1001, see trionet._ws_running).
        self.going_away = trio.Event()

    def handle(self, sock: Socket) -> Awaitable[None]:
        """Drive one accepted connection (the ``ConnectionHandler`` for ``serve_listeners``).

        A plain function returning the driver's coroutine: one frame less for
        every live connection to hold.
        """
        return _Connection(sock, self).run()

    async def supervise(self, server: Server) -> None:
        """Enforce timeouts while the server runs (:meth:`close_idle` runs at its
        close); pass its ``stopping`` on to :attr:`going_away`."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._expire_connections)
            nursery.start_soon(self._relay_stopping, server)
            await server.wait_closed()
            nursery.cancel_scope.cancel()

    async def _relay_stopping(self, server: Server) -> None:
        await server.stopping.wait()
        self.going_away.set()

    def close_idle(self) -> None:
        """``Server.on_close``: responses say ``Connection: close`` from now on; truly
        idle connections close at once unless a request waits on one (it is served);
        those idle for less than :data:`IDLE_CLOSE_GRACE` get the rest of it;
        lingering ones stop lingering; busy ones finish their request."""
        self.closing = True
        now = trio.current_time()
        for connection in list(self.connections):
            if connection.phase == _IDLE:
                closes_at = connection.idle_since + IDLE_CLOSE_GRACE
                if closes_at > now:
                    connection.deadline = min(connection.deadline, closes_at)
                else:
                    connection.close_unless_request_waiting()
            elif connection.phase == _LINGER:
                connection.scope.cancel()

    async def _expire_connections(self) -> None:
        """Cancel every connection whose deadline has passed, every ``check_interval``.

        An idle one is left if a request is waiting on it: a request racing the
        keep-alive timeout is served, not reset (nginx's 502, "recv() failed (104)").
        """
        while True:
            await trio.sleep(self.check_interval)
            now = trio.current_time()
            for connection in list(self.connections):
                if connection.deadline > now:
                    continue
                if connection.phase != _IDLE:
                    connection.scope.cancel()
                elif not connection.close_unless_request_waiting():
                    connection.deadline = now + self.headers_timeout


class _Connection:
    """Drives one HTTP connection: reads heads, runs the app, writes responses.

    It is the ``Exchange`` of its requests and responses and the
    ``BodySource`` of their bodies (structural protocols: nothing here is
    imported by them).
    """

    __slots__ = (
        "body",
        "buf",
        "config",
        "deadline",
        "http11",
        "idle_since",
        "keep_alive_lines",
        "phase",
        "pos",
        "requests",
        "response",
        "scope",
        "socket",
    )

    def __init__(self, sock: Socket, config: ServerConfig) -> None:
        #: The connection's Socket: all its I/O, its byte counts, ``req.socket``.
        self.socket = sock
        self.config = config
        self.scope = trio.CancelScope()
        #: When the expiry task cancels this connection (trio.current_time() clock).
        #: When it last became idle: accepted, or its last response sent.
        self.idle_since = trio.current_time()
        self.deadline = self.idle_since + config.headers_timeout
        self.phase = _IDLE
        # Received bytes not yet consumed: ``buf[pos:]``.
        self.buf = b""
        self.pos = 0
        self.requests = 0
        self.keep_alive_lines = config.keep_alive_lines
        # The request being served (None between requests).
        self.body: RequestBody | None = None
        self.response: Response | None = None
        self.http11 = True

    @property
    def trusted_proxies(self) -> TrustedProxies | None:
        """Whose forwarding headers the requests believe (read only when asked)."""
        return self.config.trusted_proxies

    # -- I/O ---------------------------------------------------------------------
    async def send(self, data: bytes, more: bytes = b"") -> None:
        """Write ``data`` then ``more`` (uncopied when large); returns once the kernel took both."""
        await self.socket.send(data, more=more)

    async def send_informational(self, head: bytes) -> None:
        """Send a 1xx response head before the response, unless the client speaks HTTP/1.0.

        RFC 9110 section 15.2: a server must not send a 1xx response to an
        HTTP/1.0 client.
        """
        if self.http11:
            await self.send(head)

    async def receive_more(self) -> None:
        """Append the client's next bytes to the buffer (for a request body).

        Raises:
          ClientError: 400, the client closed the connection mid-body.
        """
        data = await self.socket.receive(RECEIVE_SIZE)
        if not data:
            raise ClientError(400, "connection closed in the request body", "HPE_INVALID_EOF_STATE")
        self._append(data)

    def request_waiting(self) -> bool:
        """Whether a request has begun to arrive: bytes buffered, or readable now
        (``poll`` without waiting; under TLS, the socket's bytes)."""
        if self.pos < len(self.buf):
            return True
        raw = raw_socket(self.socket.stream)
        return raw is not None and raw.is_readable()

    def close_unless_request_waiting(self) -> bool:
        """Close an idle connection now, unless a request is waiting on it; True if closed.

        No checkpoint between the check and the close: a request is either
        served or arrives on a closed socket, never read-and-dropped by a close.
        The task blocked reading gets ``ClosedResourceError`` and ends.
        """
        if self.request_waiting():
            return False
        raw = raw_socket(self.socket.stream)
        if raw is not None:
            raw.close()
        self.scope.cancel()
        return True

    def _append(self, data: bytes) -> None:
        if self.pos >= len(self.buf):
            self.buf = data
        else:
            self.buf = self.buf[self.pos :] + data
        self.pos = 0

    def may_keep_alive(self) -> bool:
        """Whether the response now being started may leave the connection open.

        The client's wish (``RequestInfo.keep_alive``), the server's
        (``max_requests_per_socket``, shutdown) and the request body's
        (:meth:`RequestBody.may_keep_alive`).
        """
        body = self.body
        assert body is not None
        if not body.info.keep_alive or self.config.closing:
            return False
        limit = self.config.max_requests_per_socket
        if limit and self.requests >= limit:
            return False
        return body.done or body.may_keep_alive()

    # -- the request loop --------------------------------------------------------
    async def run(self) -> None:
        """Serve requests until the client or a limit ends the connection."""
        connections = self.config.connections
        connections.add(self)
        error: ClientError | None = None
        try:
            with self.scope:
                try:
                    # One request per pass; the request's objects live in
                    # _serve_one's frame, so an idle connection holds none.
                    while await self._serve_one():
                        pass
                except ClientError as exc:
                    error = exc
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
            if self.scope.cancelled_caught and self.phase == _HEAD:
                error = request_timeout_error("request head not received in time")
            if error is not None and (self.response is None or not self.response.headers_sent):
                await self._refuse(error)
                await self._linger()
            elif self.body is not None and not self.body.done:
                # We answered before the request body was all read (and
                # decided to close): the rest may still be on its way.
                await self._linger()
        finally:
            connections.discard(self)

    async def _serve_one(self) -> bool:
        """Read, run and answer one request; False when the connection is done."""
        config = self.config
        head = await self._next_head()
        if not head:
            return False
        event, parser = parse_head(head, config.max_header_size)
        self.requests += 1
        info = analyze_request(event, head)
        method = event.method
        self.http11 = event.http_version == b"1.1"
        body = self.body = RequestBody(
            self,
            parser,
            info,
            config.max_body_size,
            config.max_header_size,  # a chunked body's trailers get the head's budget
            trio.current_time() + config.request_timeout,
        )
        request = Request(event, self, body)
        if method == b"CONNECT" or (info.upgrade and config.on_upgrade is not None):
            await self._hand_off(request, method)
            return False
        response = self.response = Response(self, body, method)
        handler = config.app
        if info.expect_continue and config.on_check_continue is not None:
            handler = config.on_check_continue
        try:
            await handler(request, response)
        except Exception as exc:
            await self._app_failed(request, response, exc)
        else:
            if not response.finished:
                await response.end()  # the app forgot; Node would hang, we finish
        if not response.should_keep_alive:
            limit = config.max_requests_per_socket
            if limit and self.requests >= limit and await body.drain():
                await self._refuse_pipelined()
            return False
        if not (body.done or await body.drain()):
            return False
        self.body = None
        return True

    async def _next_head(self) -> bytes:
        """Wait for the next complete head and check it; ``b""`` if the client left."""
        config = self.config
        self.response = None
        idle_from_now = True
        while True:
            buf, pos = self.buf, self.pos
            if pos < len(buf) and buf[pos] == 0x0D:  # b"\r": empty lines first?
                pos = self.pos = skip_empty_lines(buf, pos)
            if pos < len(buf):
                break
            self.buf, self.pos = b"", 0  # an idle connection keeps no buffer
            if self.requests and idle_from_now:
                # Empty lines do not extend the keep-alive time.
                self.idle_since = trio.current_time()
                self.deadline = self.idle_since + config.keep_alive_timeout
                idle_from_now = False
            if config.closing:
                # The server closes: wait IDLE_CLOSE_GRACE for a next request on
                # its way (then the expiry task closes us, checking first).
                self.deadline = min(self.deadline, self.idle_since + IDLE_CLOSE_GRACE)
            self.phase = _IDLE
            data = await self.socket.receive(RECEIVE_SIZE)
            if not data:
                return b""
            self._append(data)
        self.phase = _HEAD
        end = self.buf.find(b"\r\n\r\n", self.pos)
        if end < 0:
            if self.requests:  # the first request's clock started at accept
                self.deadline = trio.current_time() + config.headers_timeout
            end = await self._read_rest_of_head()
            if end < 0:
                return b""
        end += 4
        head = self.buf[self.pos : end]
        self.pos = end
        self.phase = _BUSY
        self.deadline = math.inf
        check_head(head, config.max_header_size)
        return head

    async def _read_rest_of_head(self) -> int:
        """Read until the blank line ending the head; -1 if the client went away.

        The partial head grows in a bytearray, so a head sent byte by byte
        costs linear time.
        """
        max_size = self.config.max_header_size
        head = bytearray(self.buf[self.pos :])
        self.buf, self.pos = b"", 0
        checked = 0
        while True:
            check_partial_head(head, max_size, checked)
            data = await self.socket.receive(RECEIVE_SIZE)
            if not data:
                return -1
            checked = len(head)
            head += data
            if head[0] == 0x0D and (skipped := skip_empty_lines(head, 0)):
                # Empty lines before the request, a CRLF split across reads
                # (RFC 9112 §2.2); all that is left is new.
                del head[:skipped]
                checked = 0
            # The blank line may straddle the reads: search from 3 bytes back.
            end = head.find(b"\r\n\r\n", max(0, checked - 3))
            if end >= 0:
                self.buf = bytes(head)
                return end

    async def _app_failed(self, request: Request, response: Response, exc: Exception) -> None:
        response.should_keep_alive = False
        if self.body is not None and exc is self.body.error:
            # The body broke a limit while the app read it: answer as Node would.
            if not response.headers_sent:
                await self._refuse(self.body.error)
            return
        if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
            # The client went away mid-response: ordinary, not the app's bug.
            logger.debug("client left during %s %s: %s", request.method, request.url, exc)
            return
        logger.error("app failed handling %s %s", request.method, request.url, exc_info=exc)
        if not response.headers_sent:
            # What the app set was for the answer it did not give.
            for name in response.get_headers():
                response.remove_header(name)
            response.status_code = 500
            response.status_message = None
            await response.end()

    async def _hand_off(self, request: Request, method: bytes) -> None:
        """Give the raw socket to ``on_connect`` / ``on_upgrade`` (or refuse CONNECT)."""
        config = self.config
        head = self.buf[self.pos :]
        self.buf, self.pos = b"", 0
        hook = config.on_connect if method == b"CONNECT" else config.on_upgrade
        if hook is None:
            raise ClientError(405, "CONNECT is not served here", "ERR_METHOD_NOT_ALLOWED")
        self.body = None  # the socket is the hook's now: no lingering close after it
        try:
            await hook(request, self.socket, head)
        except Exception:
            logger.exception("%s hook failed for %s", request.method, request.url)

    async def _refuse(self, error: ClientError) -> None:
        """Answer a client error (or let ``on_client_error`` do it); the connection then closes."""
        logger.info("refused a request: %d %s (%s)", error.status, error, error.code)
        hook = self.config.on_client_error
        with trio.move_on_after(ERROR_RESPONSE_TIMEOUT):
            try:
                if hook is not None:
                    await hook(error, self.socket)
                else:
                    await self.send(error_response(error.status))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def _linger(self) -> None:
        """Close in stages (:mod:`trionet._linger`) so the last response is not reset away.

        Server shutdown ends a lingering connection at once, as an idle one.
        """
        if self.config.closing:
            return
        self.phase = _LINGER
        self.deadline = math.inf  # the helper bounds itself
        self.scope = trio.CancelScope()
        with self.scope:
            lingered = await self.socket.linger()
            if lingered.end is not LingerEnd.EOF:
                logger.debug(
                    "lingering close ended: %s after %d bytes", lingered.end.value, lingered.dropped
                )

    async def _refuse_pipelined(self) -> None:
        """After ``max_requests_per_socket``, answer buffered requests with 503 (as Node)."""
        count = self.buf.count(b"\r\n\r\n", self.pos)  # the complete heads buffered
        if count:
            await self.send(service_unavailable(count))


async def serve_http(
    config: ServerConfig,
    listeners: Sequence[trio.SocketListener],
    *,
    max_connections: int | None = None,
    unix_path: str | None = None,
    ssl_context: TLSContext | None = None,
    proxy_protocol: TrustedProxies | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve HTTP with ``config`` on ready listeners (``https.serve`` builds on this)."""
    async with trio.open_nursery() as nursery:
        start = partial(
            serve_listeners,
            config.handle,
            listeners,
            make_socket=socket_for,
            max_connections=max_connections,
            unix_path=unix_path,
            ssl_context=ssl_context,
            proxy_protocol=proxy_protocol,
        )
        server: Server = await nursery.start(start)
        server.on_close(config.close_idle)
        nursery.start_soon(config.supervise, server)
        task_status.started(server)


async def serve(
    app: App,
    port: int | None = None,
    *,
    host: str | None = None,
    path: str | os.PathLike[str] | None = None,
    backlog: int | None = None,
    reuse_port: bool = False,
    mode: int | None = None,
    on_upgrade: SocketHook | None = None,
    on_connect: SocketHook | None = None,
    on_check_continue: App | None = None,
    on_client_error: ClientErrorHook | None = None,
    headers_timeout: float = DEFAULT_HEADERS_TIMEOUT,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT,
    max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
    max_body_size: int | None = None,
    max_requests_per_socket: int | None = None,
    max_connections: int | None = None,
    ssl_context: TLSContext | None = None,
    proxy_protocol: bool = False,
    proxy_headers: bool = False,
    forwarded_allow_ips: str | Sequence[str] | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` over HTTP/1.1 (Node's ``http.createServer(app).listen(port)``).

    Start it with ``server = await nursery.start(trionet.http.serve, app, port)``.
    ``app(req, res)`` runs in the connection's task for each request; it
    reads the body from ``req`` and answers through ``res``.

    Args:
      on_upgrade: ``(req, sock, head)`` for requests asking for a protocol
        switch; gets the raw socket and the bytes read past the head, and
        the connection closes when it returns. Without it the app answers.
      on_connect: ``(req, sock, head)`` for CONNECT; without it: 405 and close.
      on_check_continue: runs instead of ``app`` for ``Expect: 100-continue``
        requests; it calls ``res.write_continue()`` to let the body come.
        Without it, 100 Continue is sent when the app first reads the body.
      on_client_error: ``(exc, sock)`` for malformed or over-limit requests
        (``exc.status`` is the suggested status); default: answer it and close.
      headers_timeout: seconds for a complete head, from accept (408).
      request_timeout: seconds for the whole request to arrive (408).
      keep_alive_timeout: seconds an idle connection is kept between requests.
      max_header_size: bytes of request line plus headers (431 above); a
        chunked body's trailer section gets the same budget.
      max_body_size: bytes of request body (413 above); None: no limit.
      max_requests_per_socket: then ``Connection: close``; pipelined extras get 503.
      max_connections: connections over this many are closed at once.
      mode: a Unix socket's (``path``) permission bits, e.g. ``0o660``.
      ssl_context: serve HTTPS over this context.
      proxy_protocol: each connection starts with a PROXY protocol header
        (v1 or v2) naming the client (as :func:`trionet.net.serve`).
      proxy_headers: believe ``X-Forwarded-For``/``-Proto``/``-Host`` and
        ``Forwarded`` from trusted peers: ``req.remote_address``,
        ``req.scheme`` and ``req.host`` then say what the proxy saw
        (uvicorn's ``--proxy-headers``; off by default, as in Node).
      forwarded_allow_ips: the trusted proxies, for both: IP addresses and
        networks, ``"unix"`` for Unix-socket peers, ``"*"`` for all. None:
        ``$FORWARDED_ALLOW_IPS``, else ``"127.0.0.1,::1,unix"``.
    """
    config = ServerConfig(
        app,
        on_upgrade=on_upgrade,
        on_connect=on_connect,
        on_check_continue=on_check_continue,
        on_client_error=on_client_error,
        headers_timeout=headers_timeout,
        request_timeout=request_timeout,
        keep_alive_timeout=keep_alive_timeout,
        max_header_size=max_header_size,
        max_body_size=max_body_size,
        max_requests_per_socket=max_requests_per_socket,
        trusted_proxies=TrustedProxies(forwarded_allow_ips) if proxy_headers else None,
    )
    trusted = TrustedProxies(forwarded_allow_ips) if proxy_protocol else None
    unix_path = os.fspath(path) if path is not None else None
    listener = await open_listener(port, host, unix_path, backlog, reuse_port, mode)
    await serve_http(
        config,
        [listener],
        max_connections=max_connections,
        unix_path=unix_path,
        ssl_context=ssl_context,
        proxy_protocol=trusted,
        task_status=task_status,
    )

