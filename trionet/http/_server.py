"""The HTTP/1.1 server: bytes -> h11 -> Request/Response -> the app -> bytes.

One :class:`_Connection` drives each accepted stream, in the connection's own
task (no task per request). It owns the receive buffer: the head of every
request, pipelined or not, is found and checked by trionet's own rules
(:mod:`._limits`) before h11 parses it, and h11 only ever sees one request at
a time, so h11's leniencies cannot leak into the next request.

h11 parses each request head (and decodes chunked bodies); the response side
is trionet's own (:class:`~._messages.Response` builds the head), because
Node's framing differs from h11's (keep-alive for HTTP/1.0 clients who ask,
``Keep-Alive: timeout=N``, Date, reason phrases) and because h11's response
bookkeeping costs more than half of its per-request time (measured: 37 of
63 us). A fresh ``h11.Connection`` per request is cheaper than driving one
through ``start_next_cycle`` and holds no memory while the connection sits
idle.

Timeouts work as Node's ``connectionsCheckingInterval``: each connection keeps
a plain ``deadline`` number that moves with its phase (``headers_timeout`` from
accept and from the first byte of each later request, ``keep_alive_timeout``
while idle between requests, none while the app runs), and one task per server
cancels the connections whose deadline has passed. Moving a Trio cancel-scope
deadline twice per request cost 6% of the request's CPU time; a float costs
nothing. Body reads by the app are bounded by ``request_timeout`` directly.

On plain TCP the driver reads and writes the socket's descriptor directly
(:class:`trionet._fdio.DirectIO`, which says why and how).

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

import h11
import trio

from .._fdio import DirectIO
from .._linger import LingerEnd, linger
from .._server import Server, TLSContext, open_listener, serve_listeners
from .._stream import Socket
from ..tls import socket_for
from ._headers import CLOSE_LINE, date_line, error_response, status_line
from ._limits import (
    DEFAULT_HEADERS_TIMEOUT,
    DEFAULT_KEEP_ALIVE_TIMEOUT,
    DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_REQUEST_TIMEOUT,
    ChunkedScanner,
    ClientError,
    RequestInfo,
    analyze_request,
    check_head,
    check_partial_head,
    check_version,
    parse_error,
    skip_empty_lines,
)
from ._messages import Request, Response

__all__ = ["ClientError", "Request", "Response", "ServerConfig", "serve", "serve_http"]

logger = logging.getLogger("trionet")

App = Callable[["Request", "Response"], Awaitable[None]]
#: ``on_upgrade`` / ``on_connect``: the request, the raw socket, bytes read past the head.
SocketHook = Callable[["Request", Socket, bytes], Awaitable[None]]
ClientErrorHook = Callable[[ClientError, Socket], Awaitable[None]]

#: How much one read asks for (Node's socket highWaterMark).
RECEIVE_SIZE = 65536
#: Unread request body bytes the server reads and discards after the response
#: so the connection can be kept alive; a larger leftover closes it instead.
DRAIN_LIMIT = 256 * 1024
#: Bound on writing an error response to a client that may not be reading.
ERROR_RESPONSE_TIMEOUT = 5.0
#: Longest and shortest pause of the task that enforces timeouts (Node checks
#: every 30 s; we check ten times per shortest timeout, at most once a second).
MAX_CHECK_INTERVAL = 1.0
MIN_CHECK_INTERVAL = 0.01

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

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
        shortest = min(self.headers_timeout, self.request_timeout, self.keep_alive_timeout)
        self.check_interval = min(MAX_CHECK_INTERVAL, max(MIN_CHECK_INTERVAL, shortest / 10))
        self.keep_alive_lines = b"Connection: keep-alive\r\n"
        if keep_alive_timeout:
            hint = f"{keep_alive_timeout:g}".encode()
            self.keep_alive_lines += b"Keep-Alive: timeout=%s\r\n" % hint
        #: Live connections, so shutdown can close the idle ones.
        self.connections: set[_Connection] = set()
        self.closing = False

    def handle(self, stream: trio.abc.Stream) -> Awaitable[None]:
        """Drive one accepted stream (the ``ConnectionHandler`` for ``serve_listeners``).

        A plain function returning the driver's coroutine: one frame less for
        every live connection to hold.
        """
        return _Connection(stream, self).run()

    async def supervise(self, server: Server) -> None:
        """Enforce timeouts while the server runs; on close, end idle connections at once."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._expire_connections)
            await server.closing.wait()
            self.closing = True
            for connection in list(self.connections):
                if connection.phase in (_IDLE, _LINGER):
                    connection.scope.cancel()
            await server.wait_closed()
            nursery.cancel_scope.cancel()

    async def _expire_connections(self) -> None:
        """Cancel every connection whose deadline has passed, every ``check_interval``."""
        while True:
            await trio.sleep(self.check_interval)
            now = trio.current_time()
            for connection in list(self.connections):
                if connection.deadline <= now:
                    connection.scope.cancel()


class _Connection:
    """Drives one HTTP connection: reads heads, runs the app, writes responses."""

    __slots__ = (
        "_sock",
        "body_error",
        "body_left",
        "buf",
        "bytes_read",
        "bytes_written",
        "config",
        "continue_sent",
        "deadline",
        "h11",
        "http11",
        "info",
        "io",
        "phase",
        "pos",
        "request_deadline",
        "requests",
        "response",
        "scanner",
        "scope",
        "stream",
    )

    def __init__(self, stream: trio.abc.Stream, config: ServerConfig) -> None:
        self.stream = stream
        self.config = config
        self._sock: Socket | None = None
        self.bytes_read = 0
        self.bytes_written = 0
        self.scope = trio.CancelScope()
        #: When the expiry task cancels this connection (trio.current_time() clock).
        self.deadline = trio.current_time() + config.headers_timeout
        self.phase = _IDLE
        self.io = DirectIO(stream)
        # Received bytes not yet consumed: ``buf[pos:]``.
        self.buf = b""
        self.pos = 0
        self.requests = 0
        # Per-request state, reset by _start_request.
        self.h11: h11.Connection | None = None
        self.info: RequestInfo | None = None
        self.response: Response | None = None
        self.http11 = True
        self.body_left = 0
        self.scanner: ChunkedScanner | None = None
        self.continue_sent = False
        self.body_error: ClientError | None = None
        self.request_deadline = math.inf

    @property
    def socket(self) -> Socket:
        """The connection as a :class:`trionet.net.Socket`, made on first use.

        Most requests never ask for it; an idle connection then holds no
        Socket (nor pays the two system calls that name its addresses).
        """
        sock = self._sock
        if sock is None:
            sock = self._sock = socket_for(self.stream)
            sock.bytes_read = self.bytes_read
            sock.bytes_written = self.bytes_written
        return sock

    # -- I/O ---------------------------------------------------------------------
    async def _receive(self) -> bytes:
        data = await self.io.receive(RECEIVE_SIZE)
        self.bytes_read += len(data)
        if self._sock is not None:
            self._sock.bytes_read += len(data)
        return data

    async def send(self, data: bytes, more: bytes = b"") -> None:
        """Write ``data`` then ``more`` (uncopied when large); returns once the kernel took both."""
        await self.io.send(data, more)
        total = len(data) + len(more)
        self.bytes_written += total
        if self._sock is not None:
            self._sock.bytes_written += total

    def _append(self, data: bytes) -> None:
        if self.pos >= len(self.buf):
            self.buf = data
        else:
            self.buf = self.buf[self.pos :] + data
        self.pos = 0

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
                error = _timeout_error("request head not received in time")
            if error is not None and (self.response is None or not self.response.headers_sent):
                await self._refuse(error)
                await self._linger()
            elif self.info is not None and not self.body_complete():
                # We answered before the request body was all read (and
                # decided to close): the rest may still be on its way.
                await self._linger()
        finally:
            connections.discard(self)

    async def _serve_one(self) -> bool:
        """Read, run and answer one request; False when the connection is done."""
        config = self.config
        event, head = await self._next_head()
        if event is None:
            return False
        self.requests += 1
        info = analyze_request(event, head)
        request = self._start_request(event, info)
        if event.method == b"CONNECT" or (info.upgrade and config.on_upgrade is not None):
            await self._hand_off(request)
            return False
        response = self.response
        assert response is not None
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
        if not response._keep_alive:
            limit = config.max_requests_per_socket
            if limit and self.requests >= limit and await self._finish_body():
                await self._refuse_pipelined()
            return False
        if not (self.body_complete() or await self._finish_body()):
            return False
        self.h11 = self.info = self.scanner = None
        return True

    async def _next_head(self) -> tuple[h11.Request | None, bytes]:
        """Wait for the next complete head, check it, and parse it with h11."""
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
            if self.requests:
                if config.closing:
                    return None, b""
                if idle_from_now:  # empty lines do not extend the keep-alive time
                    self.deadline = trio.current_time() + config.keep_alive_timeout
                    idle_from_now = False
            self.phase = _IDLE
            data = await self._receive()
            if not data:
                return None, b""
            self._append(data)
        self.phase = _HEAD
        end = self.buf.find(b"\r\n\r\n", self.pos)
        if end < 0:
            if self.requests:  # the first request's clock started at accept
                self.deadline = trio.current_time() + config.headers_timeout
            end = await self._read_rest_of_head()
            if end < 0:
                return None, b""
        end += 4
        head = self.buf[self.pos : end]
        self.pos = end
        self.phase = _BUSY
        self.deadline = math.inf
        check_head(head, config.max_header_size)
        # h11 gets the head whole, then chunked bodies a line at a time: the
        # only event it may hold incomplete is a trailer section, which the
        # ChunkedScanner keeps within max_header_size.
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=config.max_header_size)
        parser.receive_data(head)
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError as exc:
            raise parse_error(exc, "request head") from None
        assert isinstance(event, h11.Request)
        version = event.http_version
        if version != b"1.1" and version != b"1.0":
            event = check_version(event)
        self.h11 = parser
        return event, head

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
            data = await self._receive()
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

    def _start_request(self, event: h11.Request, info: RequestInfo) -> Request:
        config = self.config
        self.info = info
        self.http11 = event.http_version == b"1.1"
        self.continue_sent = False
        self.body_error = None
        self.request_deadline = trio.current_time() + config.request_timeout
        if info.content_length is None:
            self.scanner = ChunkedScanner(config.max_header_size)
            self.body_left = 0
        else:
            self.scanner = None
            self.body_left = info.content_length
            if config.max_body_size is not None and info.content_length > config.max_body_size:
                raise ClientError(413, "request body over max_body_size", "ERR_BODY_TOO_LARGE")
        self.response = Response(self, event.method)
        return Request(event, self, info)

    def may_keep_alive(self) -> bool:
        """Whether the response now being started may leave the connection open."""
        info = self.info
        assert info is not None
        if not info.keep_alive or self.config.closing:
            return False
        limit = self.config.max_requests_per_socket
        if limit and self.requests >= limit:
            return False
        if self.body_complete():
            return True
        if info.expect_continue and not self.continue_sent:
            return False  # the client holds its body back; don't read it after
        return info.content_length is None or self.body_left <= DRAIN_LIMIT

    async def _app_failed(self, request: Request, response: Response, exc: Exception) -> None:
        error = self.body_error
        if error is not None and exc is error:
            # The body broke a limit while the app read it: answer as Node would.
            response._keep_alive = False
            if not response.headers_sent:
                await self._refuse(error)
            return
        if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
            # The client went away mid-response: ordinary, not the app's bug.
            logger.debug("client left during %s %s: %s", request.method, request.url, exc)
            response._keep_alive = False
            return
        logger.error(
            "app failed handling %s %s", request.method, request.url, exc_info=exc
        )
        response._keep_alive = False
        if not response.headers_sent:
            response._headers.clear()
            response.status_code = 500
            response.status_message = None
            await response.end()

    async def _hand_off(self, request: Request) -> None:
        """Give the raw socket to ``on_connect`` / ``on_upgrade`` (or refuse CONNECT)."""
        config = self.config
        head = self.buf[self.pos :]
        self.buf, self.pos = b"", 0
        hook = config.on_connect if request._event.method == b"CONNECT" else config.on_upgrade
        if hook is None:
            raise ClientError(405, "CONNECT is not served here", "ERR_METHOD_NOT_ALLOWED")
        self.info = None  # the socket is the hook's now: no lingering close after it
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
            lingered = await linger(self.socket)
            if lingered.end is not LingerEnd.EOF:
                logger.debug(
                    "lingering close ended: %s after %d bytes", lingered.end.value, lingered.dropped
                )

    async def _refuse_pipelined(self) -> None:
        """After ``max_requests_per_socket``, answer buffered requests with 503 (as Node)."""
        buf = self.buf
        lines = b"%s%sContent-Length: 0\r\n\r\n" % (date_line(), CLOSE_LINE)
        refusal = status_line(503) + lines
        count = 0
        start = self.pos
        while (end := buf.find(b"\r\n\r\n", start)) >= 0:
            count += 1
            start = end + 4
        if count:
            await self.send(refusal * count)

    # -- request bodies ----------------------------------------------------------
    def body_complete(self) -> bool:
        scanner = self.scanner
        if scanner is None:
            return self.body_left == 0
        return scanner.done and self.h11 is None

    async def send_informational(self, head: bytes) -> None:
        """Send a 1xx response head before the response, unless the client speaks HTTP/1.0."""
        if self.http11:
            await self.send(head)

    async def send_continue(self) -> None:
        """Send ``100 Continue`` once, if the client asked and no response began."""
        response = self.response
        if self.continue_sent or (response is not None and response.headers_sent):
            return
        self.continue_sent = True
        await self.send_informational(_CONTINUE)

    async def read_body(self) -> bytes:
        """The next piece of the request body, ``b""`` at its end."""
        if self.body_complete():
            return b""
        info = self.info
        assert info is not None
        if info.expect_continue and not self.continue_sent:
            await self.send_continue()
        try:
            with trio.fail_after(max(0.0, self.request_deadline - trio.current_time())):
                if self.scanner is None:
                    return await self._read_sized()
                return await self._read_chunked()
        except trio.TooSlowError:
            self.body_error = _timeout_error("request body not received in time")
        except ClientError as exc:
            self.body_error = exc
        raise self.body_error

    async def _more(self) -> None:
        data = await self._receive()
        if not data:
            raise ClientError(400, "connection closed in the request body", "HPE_INVALID_EOF_STATE")
        self._append(data)

    async def _read_sized(self) -> bytes:
        if self.pos >= len(self.buf):
            await self._more()
        buf, pos = self.buf, self.pos
        take = min(self.body_left, len(buf) - pos)
        self.body_left -= take
        self.pos = pos + take
        if pos == 0 and take == len(buf):
            return buf
        return buf[pos : pos + take]

    async def _read_chunked(self) -> bytes:
        parser, scanner = self.h11, self.scanner
        assert parser is not None and scanner is not None
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as exc:  # e.g. a trailer line without a colon
                raise parse_error(exc, "chunked body") from None
            if type(event) is h11.Data:
                self._count_body(len(event.data))
                return bytes(event.data)
            if type(event) is h11.EndOfMessage:
                self.h11 = None
                return b""
            if self.pos >= len(self.buf):
                await self._more()
            end = scanner.scan(self.buf, self.pos)
            if end == self.pos:
                await self._more()
                continue
            parser.receive_data(self.buf[self.pos : end])  # parses nothing: cannot fail
            self.pos = end

    def _count_body(self, size: int) -> None:
        limit = self.config.max_body_size
        if limit is None:
            return
        self.body_left -= size  # counts down from 0 for chunked bodies
        if -self.body_left > limit:
            raise ClientError(413, "request body over max_body_size", "ERR_BODY_TOO_LARGE")

    async def _finish_body(self) -> bool:
        """Read and drop what the app left of the body; False if the connection must close."""
        if self.body_complete():
            return True
        dropped = 0
        with trio.move_on_at(self.request_deadline):
            while dropped <= DRAIN_LIMIT:
                try:
                    chunk = await self.read_body()
                except ClientError:
                    return False
                if not chunk:
                    return True
                dropped += len(chunk)
        return False


def _timeout_error(message: str) -> ClientError:
    return ClientError(408, message, "ERR_HTTP_REQUEST_TIMEOUT")


async def serve_http(
    config: ServerConfig,
    listeners: Sequence[trio.SocketListener],
    *,
    max_connections: int | None = None,
    unix_path: str | None = None,
    ssl_context: TLSContext | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve HTTP with ``config`` on ready listeners (``https.serve`` builds on this)."""
    async with trio.open_nursery() as nursery:
        start = partial(
            serve_listeners,
            config.handle,
            listeners,
            max_connections=max_connections,
            unix_path=unix_path,
            ssl_context=ssl_context,
        )
        server: Server = await nursery.start(start)
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
      ssl_context: serve HTTPS over this context.
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
    )
    unix_path = os.fspath(path) if path is not None else None
    listener = await open_listener(port, host, unix_path, backlog, reuse_port)
    await serve_http(
        config,
        [listener],
        max_connections=max_connections,
        unix_path=unix_path,
        ssl_context=ssl_context,
        task_status=task_status,
    )

