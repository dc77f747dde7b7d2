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
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import logging
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.connection import ConnectionState as WireState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    TextMessage,
)
from wsproto.events import Request as HandshakeRequest
from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, Opcode
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from . import net
from ._errors import ConnectError, ProtocolError, TLSError, TrionetError
from ._server import Server
from ._stream import Address, Socket
from ._ws_protocol import (
    BoundedPerMessageDeflate,
    FrameGuard,
    Rejection,
    check_handshake,
    encode_message,
    format_response,
    pick_subprotocol,
)

__all__ = [
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

#: Close codes (RFC 6455 section 7.4.1), wsproto's enum under a shorter name.
CloseCode = CloseReason

#: Largest message accepted by default, as trio-websocket's MAX_MESSAGE_SIZE
#: (ws allows 100 MiB; 1 MiB bounds what one peer can make us hold).
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20

#: Undelivered messages at which the reader stops reading the socket. The
#: queue is also bounded in bytes, by ``max_message_size`` (see WebSocket).
#: For comparison: ``websockets`` holds up to ``max_queue=16`` messages of
#: ``max_size`` (16 MiB), trio-websocket 1, Node's ws has no bound at all.
MAX_QUEUE_MESSAGES = 1024

#: How long ``aclose()`` waits for the peer's Close. ws waits 30 s
#: (``closeTimeout``), trio-websocket 60 s; a silent peer holding a socket and
#: a task that long is a cheap attack, so we wait less.
CLOSE_TIMEOUT = 10.0

#: How long a failing connection tries to send its Close before dropping TCP.
FAIL_SEND_TIMEOUT = 1.0

#: How long the client waits for the server's handshake response
#: (trio-websocket's CONN_TIMEOUT is 60 s).
HANDSHAKE_TIMEOUT = 30.0

#: Bytes asked of the kernel per read: big reads mean fewer trips through wsproto.
RECEIVE_SIZE = 65536

#: The largest handshake response head the client reads (Node's maxHeaderSize).
MAX_RESPONSE_HEAD = 16384

#: The largest refusal body the client keeps for :class:`HandshakeError`.
MAX_REJECT_BODY = 65536

#: Close codes that end ``async for`` quietly: normal closure, going away, and
#: a Close without a code (the ``websockets`` package's OK_CLOSE_CODES).
OK_CLOSE_CODES = frozenset({1000, 1001, 1005})

#: What a write to a dead socket raises.
_SOCKET_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)

#: What ``send()`` accepts: text goes out as a text frame, bytes as binary.
Data = str | bytes | bytearray | memoryview

#: The handler ``serve``/``handler`` runs, in its own task, per WebSocket.
Handler = Callable[["WebSocket"], Awaitable[None]]

#: ``accept(req)`` may return True/None (go on), False (401) or (status, headers, body).
AcceptResult = bool | None | tuple[int, Any, Any]
AcceptHook = Callable[[Any], AcceptResult | Awaitable[AcceptResult]]


class ConnectionClosed(TrionetError):
    """The WebSocket is closed; ``code`` and ``reason`` say how.

    ``code`` is the code of the peer's Close frame, the code we closed with
    when the peer broke the protocol (1002, 1007, 1009), or 1006 when the
    connection ended without a Close frame.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


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


class State(enum.Enum):
    """Where a :class:`WebSocket` is in its life."""

    #: Messages flow both ways.
    OPEN = 1
    #: We sent a Close and wait for the peer's.
    CLOSING = 2
    #: Both Closes were exchanged, or the connection failed or dropped.
    CLOSED = 3


class WebSocket:
    """One WebSocket connection, either end.

    Users get one from :func:`serve`/:func:`handler` (passed to the handler)
    or from :func:`connect`; they do not create it.

    Sending is safe from several tasks at once (frames never interleave) and
    awaits the socket, so a slow peer slows the sender.

    Receiving: the reader task keeps reading while the application lags, so
    pings are answered and a Close is completed whatever the application
    does, until the undelivered messages reach ``max_message_size`` bytes or
    :data:`MAX_QUEUE_MESSAGES` messages. Then it stops reading the socket, so
    TCP slows the peer down and memory stays bounded (about twice
    ``max_message_size`` per connection, against 16 x 1 MiB for websockets).
    That is the trade-off: past that point, frames behind the unread data
    wait for the application too. Nothing can hang on them: ``aclose()``
    drops the queue and lets the reader drain the socket, so our close
    handshake always completes, and the heartbeat does not count a ping as
    lost while the reader is held up by our own application.
    """

    def __init__(
        self,
        sock: Socket,
        connection: Connection,
        *,
        guard: FrameGuard,
        client: bool,
        path: str,
        request: Any = None,
        subprotocol: str | None = None,
        extensions: Sequence[Extension] = (),
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        self.socket = sock
        #: The handshake: the server's ``trionet.http.Request``, or on the client
        #: the server's 101 response as a :class:`wsproto.events.AcceptConnection`.
        self.request = request
        #: The path the client asked for (with its query string).
        self.path = path
        #: The subprotocol both sides agreed on, or None.
        self.subprotocol = subprotocol
        #: The negotiated extensions (``permessage-deflate`` or nothing).
        self.extensions = list(extensions)
        self.close_timeout = close_timeout
        self._client = client
        self._conn = connection
        self._guard = guard
        self._state = State.OPEN
        self._close_code: int | None = None
        self._close_reason = ""
        self._send_lock = trio.Lock()
        self._queue: deque[str | bytes] = deque()
        self._queued_bytes = 0
        self._queue_limit = guard.max_message_size
        self._parts: list[Any] = []
        self._message_arrived = trio.lowlevel.ParkingLot()
        self._room = trio.lowlevel.ParkingLot()
        self._reader_waiting_for_room = False
        self._pings: list[tuple[bytes, trio.Event]] = []
        self._closed = trio.Event()

    def __repr__(self) -> str:
        side = "client" if self._client else "server"
        return f"<trionet.ws.WebSocket {side} {self.path!r} {self._state.name}>"

    # -- properties -----------------------------------------------------------------
    @property
    def state(self) -> State:
        """:class:`State` of the connection."""
        return self._state

    @property
    def close_code(self) -> int | None:
        """How the connection closed (see :class:`ConnectionClosed`); None while open."""
        return self._close_code

    @property
    def close_reason(self) -> str:
        """The reason that came with :attr:`close_code` ("" while open)."""
        return self._close_reason

    @property
    def remote_address(self) -> Address | None:
        """The peer's address ``(host, port)``."""
        return self.socket.remote_address

    @property
    def closed(self) -> bool:
        """True once the connection is completely closed."""
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        """Wait until the connection is completely closed."""
        await self._closed.wait()

    # -- sending --------------------------------------------------------------------
    async def send(self, message: Data) -> None:
        """Send one message: ``str`` as a text frame, bytes as a binary frame.

        Returns once the socket took it (backpressure).

        Raises:
          ConnectionClosed: the connection is closing or closed.
        """
        if isinstance(message, str):
            opcode, payload = Opcode.TEXT, message.encode()
        elif isinstance(message, (bytes, bytearray, memoryview)):
            opcode, payload = Opcode.BINARY, bytes(message)
        else:
            raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")
        await self._acquire_send_lock()
        try:
            self._check_open()
            await self._write(self._encode(opcode, payload, message))
        finally:
            self._send_lock.release()

    def _encode(self, opcode: Opcode, payload: bytes, message: Data) -> bytes:
        """The frame(s) of one message; wsproto builds them when an extension is on."""
        if not self.extensions:
            return encode_message(opcode, payload, mask=self._client)
        event: Message[Any]
        if opcode is Opcode.TEXT:
            event = TextMessage(data=str(message))
        else:
            event = BytesMessage(data=payload)
        return self._conn.send(event)

    async def _acquire_send_lock(self) -> None:
        """Take the send lock; uncontended, without a trip through the scheduler.

        The write that follows is a checkpoint anyway, and skipping the lock's
        own one is a measurable share of a small message's cost.
        """
        try:
            self._send_lock.acquire_nowait()
        except trio.WouldBlock:
            await self._send_lock.acquire()

    async def ping(self, data: bytes = b"") -> None:
        """Send a Ping and return when its Pong arrives.

        A Pong answers the oldest pending ping with the same payload and every
        ping sent before it (RFC 6455 section 5.5.3 lets a peer skip some).

        Raises:
          ConnectionClosed: the connection closed before the Pong came.
        """
        if len(data) > 125:
            raise ValueError("a ping carries at most 125 bytes (RFC 6455 section 5.5)")
        arrived = trio.Event()
        async with self._send_lock:
            self._check_open()
            self._pings.append((bytes(data), arrived))
            await self._write(self._conn.send(Ping(payload=bytes(data))))
        await arrived.wait()
        if any(event is arrived for _, event in self._pings):
            # Woken by the end of the connection, not by a Pong.
            self._pings = [entry for entry in self._pings if entry[1] is not arrived]
            self._raise_closed()

    def _check_open(self) -> None:
        if self._state is not State.OPEN:
            self._raise_closed()

    def _raise_closed(self) -> None:
        raise ConnectionClosed(
            self._close_code if self._close_code is not None else CloseCode.ABNORMAL_CLOSURE,
            self._close_reason,
        )

    async def _write(self, data: bytes) -> None:
        """Write frames; a broken socket marks the connection closed (1006)."""
        try:
            await self.socket.send(data)
        except _SOCKET_GONE as exc:
            self._mark_closed(CloseCode.ABNORMAL_CLOSURE, "connection lost")
            raise ConnectionClosed(self._close_code or 1006, self._close_reason) from exc

    async def _write_control(self, data: bytes) -> bool:
        """Write control frames from the reader; False if the socket is gone."""
        if not data:
            return True
        async with self._send_lock:
            try:
                await self.socket.send(data)
            except _SOCKET_GONE:
                return False
        return True

    # -- receiving ------------------------------------------------------------------
    async def receive(self) -> str | bytes:
        """The next message: ``str`` for text, ``bytes`` for binary.

        After the peer closed, the messages it sent before its Close are still
        delivered; after our own ``aclose()`` they are dropped.

        Raises:
          ConnectionClosed: no more messages will come; ``code`` says why.
        """
        # Always a cancel point; a schedule point only when it has to wait. A
        # queued message is returned without a trip through the scheduler: the
        # queue is bounded, so a task that only receives yields within
        # MAX_QUEUE_MESSAGES messages, and an echo loop's send() yields anyway.
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._queue:
            if self._closed.is_set() or self._state is not State.OPEN:
                self._raise_closed()
            await self._message_arrived.park()
        message = self._queue.popleft()
        self._queued_bytes -= len(message)
        if self._reader_waiting_for_room and self._has_room():
            self._room.unpark_all()
        return message

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> str | bytes:
        """Messages until the connection closes; a normal close ends the loop."""
        try:
            return await self.receive()
        except ConnectionClosed as exc:
            if exc.code in OK_CLOSE_CODES:
                raise StopAsyncIteration from None
            raise

    # -- closing --------------------------------------------------------------------
    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close: send a Close frame, wait (bounded) for the peer's, close TCP.

        Queued messages are dropped. Waits at most ``close_timeout`` for the
        peer; calling it again, or on a closed connection, just waits for the end.
        """
        try:
            if self._state is State.OPEN:
                self._state = State.CLOSING
                self._drop_queue()
                async with self._send_lock:
                    if self._conn.state is WireState.OPEN:
                        with contextlib.suppress(*_SOCKET_GONE):
                            await self.socket.send(self._conn.send(CloseConnection(code, reason)))
            with trio.move_on_after(self.close_timeout):
                await self._closed.wait()
            if not self._closed.is_set():
                logger.info("%r: no Close from the peer within %ss", self, self.close_timeout)
                self._mark_closed(CloseCode.ABNORMAL_CLOSURE, "no close frame received")
        finally:
            await trio.aclose_forcefully(self.socket)

    def _drop_queue(self) -> None:
        self._queue.clear()
        self._queued_bytes = 0
        self._parts.clear()
        self._room.unpark_all()
        self._message_arrived.unpark_all()

    def _mark_closed(self, code: int, reason: str) -> None:
        """Record how the connection ended and wake everyone waiting on it."""
        if self._close_code is None:
            self._close_code = int(code)
            self._close_reason = reason
        self._state = State.CLOSED
        self._closed.set()
        self._message_arrived.unpark_all()
        self._room.unpark_all()
        self._wake_pings()

    async def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 section 7.1.7): send Close, drop TCP."""
        logger.log(
            logging.DEBUG if code == CloseCode.GOING_AWAY else logging.INFO,
            "%r failed: %d %s", self, code, reason,
        )
        with trio.move_on_after(FAIL_SEND_TIMEOUT):  # the peer may not read: don't wait
            async with self._send_lock:
                if self._conn.state is WireState.OPEN:
                    with contextlib.suppress(*_SOCKET_GONE):
                        await self.socket.send(self._conn.send(CloseConnection(code, reason)))
        self._mark_closed(code, reason)
        await trio.aclose_forcefully(self.socket)

    # -- the reader task ------------------------------------------------------------
    async def _run_reader(self) -> None:
        """Read frames until the connection ends; answer control frames at once."""
        try:
            await self._handle_events()  # frames that came with the handshake
            while not self._closed.is_set():
                await self._wait_for_room()
                try:
                    data = await self.socket.receive(RECEIVE_SIZE)
                except _SOCKET_GONE:
                    data = b""
                if not data:
                    self._mark_closed(CloseCode.ABNORMAL_CLOSURE, "connection lost")
                    break
                self._conn.receive_data(data)
                await self._handle_events()
        finally:
            if not self._closed.is_set():
                self._mark_closed(CloseCode.ABNORMAL_CLOSURE, "connection lost")

    def _has_room(self, factor: int = 1) -> bool:
        return (
            self._queued_bytes < factor * self._queue_limit
            and len(self._queue) < factor * MAX_QUEUE_MESSAGES
        )

    async def _wait_for_room(self) -> None:
        """Hold the reader while the application has too much unread."""
        while not self._has_room() and self._state is State.OPEN:
            self._reader_waiting_for_room = True
            try:
                await self._room.park()
            finally:
                self._reader_waiting_for_room = False

    async def _handle_events(self) -> None:
        """Handle everything one read delivered; control replies go out in one write."""
        replies = bytearray()
        for event in self._conn.events():
            if isinstance(event, Message):
                self._on_message(event)
                if not self._has_room(factor=2):
                    # One read can carry many messages (and with compression,
                    # inflate to many more bytes): stop parsing it half-way.
                    if not await self._write_control(bytes(replies)):
                        return
                    replies.clear()
                    await self._wait_for_room()
            elif isinstance(event, Ping):
                if self._conn.state is WireState.OPEN:
                    replies += self._conn.send(event.response())
            elif isinstance(event, Pong):
                self._on_pong(event.payload)
            elif isinstance(event, CloseConnection):
                if not await self._write_control(bytes(replies)):
                    return
                await self._on_close(event)
                return
        if not await self._write_control(bytes(replies)):
            self._mark_closed(CloseCode.ABNORMAL_CLOSURE, "connection lost")

    def _on_message(self, event: Message[Any]) -> None:
        if self._state is not State.OPEN:
            return  # after our aclose(): drain and drop
        if not event.message_finished:
            self._parts.append(event.data)
            return
        if self._parts:
            self._parts.append(event.data)
            joiner = "" if isinstance(event.data, str) else b""
            message = joiner.join(self._parts)
            self._parts.clear()
        else:
            message = event.data
        self._queue.append(message)
        self._queued_bytes += len(message)
        self._message_arrived.unpark()

    def _on_pong(self, payload: bytes) -> None:
        for index, (sent, _) in enumerate(self._pings):
            if sent == payload:
                for _, earlier in self._pings[: index + 1]:
                    earlier.set()
                del self._pings[: index + 1]
                return

    def _wake_pings(self) -> None:
        for _, event in self._pings:
            event.set()

    async def _on_close(self, event: CloseConnection) -> None:
        """A Close arrived from the peer, or wsproto found a protocol violation."""
        code, reason = int(event.code), event.reason or ""
        if self._conn.state in (WireState.OPEN, WireState.LOCAL_CLOSING):
            # wsproto reports a violation as a CloseConnection without a state change.
            if reason == "error in extension":
                reason = self._guard.problem or reason
            logger.info("%r: protocol violation: %d %s", self, code, reason)
            await self._fail(code, reason)
            return
        if self._conn.state is WireState.REMOTE_CLOSING:
            # Echo the peer's code (section 5.5.1); wsproto sends no code for 1005.
            await self._write_control(self._conn.send(event.response()))
        self._mark_closed(code, reason)
        if not self._client:
            # Section 7.1.1: the server closes the TCP connection first.
            await trio.aclose_forcefully(self.socket)

    # -- heartbeat ------------------------------------------------------------------
    async def _heartbeat(self, interval: float, timeout: float) -> None:
        """Ping every ``interval`` seconds; fail the connection if a Pong is late."""
        while self._state is State.OPEN:
            await trio.sleep(interval)
            try:
                with trio.move_on_after(timeout) as scope:
                    await self.ping()
            except ConnectionClosed:
                return
            if scope.cancelled_caught and not self._reader_waiting_for_room:
                logger.info("%r: no pong within %ss, closing", self, timeout)
                await self._fail(CloseCode.INTERNAL_ERROR, "ping timeout")
                return


# -- running a connection -----------------------------------------------------------


@contextlib.asynccontextmanager
async def _running(
    ws: WebSocket, *, ping_interval: float | None = None, ping_timeout: float | None = None
) -> AsyncIterator[None]:
    """Run the connection's reader (and heartbeat) beside the block, then close.

    A block that ends normally or with an error closes with the handshake
    (``aclose()``); a cancelled one (a server shutting down) sends 1001 and
    drops TCP at once instead of waiting for the peer.
    """
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws._run_reader)
        if ping_interval is not None:
            timeout = ping_timeout if ping_timeout is not None else ping_interval
            nursery.start_soon(ws._heartbeat, ping_interval, timeout)
        cancelled = False
        try:
            yield
        except trio.Cancelled:
            cancelled = True
            raise
        finally:
            if cancelled:
                with trio.CancelScope(shield=True):
                    await ws._fail(CloseCode.GOING_AWAY, "going away")
            else:
                await ws.aclose()
            nursery.cancel_scope.cancel()


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
    (only with ``compression=True``), answers 101 and runs ``handler(ws)``.
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
        rejection = await _ask_accept(accept, req)
    if rejection is not None:
        await _refuse(sock, rejection, req)
        return None
    wsconn = WSConnection(ConnectionType.SERVER)
    try:
        wsconn.initiate_upgrade_connection(raw_headers, req.url)
        offer = next(e for e in wsconn.events() if isinstance(e, HandshakeRequest))
    except (RemoteProtocolError, StopIteration) as exc:
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
    connection = Connection(ConnectionType.SERVER, [*agreed, guard], head)
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


async def _upgrade_required(req: Any, res: Any) -> None:
    """The HTTP app of a WebSocket-only server: everything else gets 426."""
    res.write_head(426, {"Upgrade": "websocket", "Sec-WebSocket-Version": "13"})
    await res.end(b"Upgrade Required: this server speaks WebSocket only\n")


async def serve(
    handler_: Handler,
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
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve WebSockets on ``port`` (Node ws's ``new WebSocketServer({port})``).

    Start it with ``server = await nursery.start(trionet.ws.serve, handler, port)``.
    Plain HTTP requests get 426 Upgrade Required. The options are those of
    :func:`handler`; ``ssl_context`` serves wss://.
    """
    from . import http  # the HTTP server imports nothing of ours; import late anyway

    hook = handler(
        handler_,
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
    ssl_context: ssl.SSLContext | None = None,
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
    try:
        with trio.fail_after(timeout):
            ws = await _client_handshake(
                sock,
                target,
                subprotocols=subprotocols,
                headers=headers,
                max_message_size=max_message_size,
                compression=compression,
                close_timeout=close_timeout,
            )
    except trio.TooSlowError:
        await trio.aclose_forcefully(sock)
        from ._errors import TimeoutError as TrionetTimeout

        raise TrionetTimeout(f"no WebSocket handshake from {url} within {timeout}s") from None
    except BaseException:
        await trio.aclose_forcefully(sock)
        raise

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


async def _open(target: _Target, ssl_context: ssl.SSLContext | None, timeout: float) -> Socket:
    """Connect TCP, and TLS for wss://."""
    sock = await net.connect(target.port, target.host, timeout=timeout)
    if not target.secure:
        return sock
    context = ssl_context or ssl.create_default_context()
    tls = trio.SSLStream(sock.stream, context, server_hostname=target.host, https_compatible=True)
    try:
        with trio.fail_after(timeout):
            await tls.do_handshake()
    except trio.TooSlowError:
        await trio.aclose_forcefully(tls)
        raise TLSError(f"TLS handshake with {target.host}:{target.port} timed out") from None
    except (trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
        await trio.aclose_forcefully(tls)
        cause = exc.__cause__ or exc
        raise TLSError(f"TLS handshake with {target.host}:{target.port} failed: {cause}") from exc
    return Socket(tls)


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
    connection = Connection(ConnectionType.CLIENT, [*event.extensions, guard], rest)
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
