"""One HTTP/1.1 connection: bytes -> h11 -> Request/Response -> the app -> bytes.

One :class:`Connection` drives each accepted stream, in the connection's own
task (no task per request). It owns the receive buffer: the head of every
request, pipelined or not, is found and checked by trionet's own rules
(:mod:`._limits`) before h11 parses it, and h11 only ever sees one request at
a time, so h11's leniencies cannot leak into the next request.

This module keeps only the connection loop. Each request gets its rooms:
:mod:`._body` parses the head with h11 and reads, drains or refuses the body;
:mod:`._request` and :mod:`._messages` are what the app sees (``Request``, ``Response``), and
:mod:`._framing` turns the response into head bytes (trionet's own, not
h11's: it says why). They reach the connection only through the protocols
``Exchange`` and ``BodySource``, which :class:`Connection` implements; they
used to read and write the driver's private attributes (and it theirs)
across an import circle. The options and the timeouts' watch are
:mod:`._config`'s.

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

import trio

from .._fdio import DEFAULT_RECEIVE_SIZE
from .._forwarded import TrustedProxies
from .._linger import LingerEnd
from .._stream import Socket, raw_socket
from ._body import RequestBody, parse_head
from ._config import BUSY, HEAD, IDLE, IDLE_CLOSE_GRACE, LINGER, ServerConfig, SocketHook
from ._framing import service_unavailable
from ._headers import error_response
from ._limits import (
    ClientError,
    analyze_request,
    check_head,
    check_partial_head,
    request_timeout_error,
    skip_empty_lines,
)
from ._messages import Request, Response

__all__ = ["Connection"]

#: A request handed to ``on_upgrade`` / ``on_connect``: the hook, the request,
#: the bytes read past its head.
HandOff = tuple[SocketHook, Request, bytes]

# The server's logger (users configure "trionet.http.server"): the connection
# logs what happens to the server's requests.
logger = logging.getLogger("trionet.http.server")

#: How much one read asks for (Node's socket highWaterMark).
RECEIVE_SIZE = DEFAULT_RECEIVE_SIZE
#: Bound on writing an error response to a client that may not be reading.
ERROR_RESPONSE_TIMEOUT = 5.0


class Connection:
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
        self.phase = IDLE
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
        served: bool | HandOff = False
        try:
            with self.scope:
                try:
                    # One request per pass; the request's objects live in
                    # _serve_one's frame, so an idle connection holds none.
                    while (served := await self._serve_one()) is True:
                        pass
                except ClientError as exc:
                    error = exc
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
            if isinstance(served, tuple):
                # Handed off (CONNECT, an upgrade): the hook runs from this
                # frame, after the request loop's frames and the connection's
                # cancel scope were left. An idle WebSocket lives in the hook
                # for hours, and each frame or scope between it and the task
                # was memory held per connection (benchmarks/ws_idle_memory.py).
                # Nothing cancels that scope once a request is handed off (its
                # phase stays BUSY, its deadline infinite): no timeout changes.
                hook, request, head = served
                del served
                try:
                    await hook(request, self.socket, head)
                except Exception:
                    logger.exception("%s hook failed for %s", request.method, request.url)
                return
            if self.scope.cancelled_caught and self.phase == HEAD:
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

    async def _serve_one(self) -> bool | HandOff:
        """Read, run and answer one request; False when the connection is done.

        An upgrade or CONNECT request is not run here: its hook and request
        are returned, for :meth:`run` to await once this frame is gone.
        """
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
            return self._hand_off(request, method)
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
            self.phase = IDLE
            data = await self.socket.receive(RECEIVE_SIZE)
            if not data:
                return b""
            self._append(data)
        self.phase = HEAD
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
        self.phase = BUSY
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

    def _hand_off(self, request: Request, method: bytes) -> HandOff:
        """The hook that takes the raw socket (``on_connect`` / ``on_upgrade``), not started.

        Raises:
          ClientError: 405, a CONNECT request and no ``on_connect`` hook.
        """
        config = self.config
        head = self.buf[self.pos :]
        self.buf, self.pos = b"", 0
        hook = config.on_connect if method == b"CONNECT" else config.on_upgrade
        if hook is None:
            raise ClientError(405, "CONNECT is not served here", "ERR_METHOD_NOT_ALLOWED")
        self.body = None  # the socket is the hook's now: no lingering close after it
        return hook, request, head

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
        self.phase = LINGER
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
