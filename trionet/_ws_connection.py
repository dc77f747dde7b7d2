"""The WebSocket connection both sides share: messages, pings, the close handshake.

:class:`WebSocket` drives one wsproto ``FrameProtocol`` (through
:class:`trionet._ws_protocol.Wire`, which says why not wsproto's
``Connection``) over a trionet Socket.
Who reads the socket, and when, is :mod:`trionet._ws_reading`'s part. Sends go out under a
lock, one write per message. The handshakes that create a connection live
in :mod:`trionet.ws` and :mod:`trionet._ws_client`.

This class does the I/O and the waiting; what it remembers (the queue and its
room, fragments, pending pings, who owns a fragmented send, how it closed)
is pure state in :mod:`trionet._ws_state`, where the rules are tested alone.

:func:`trionet.ws.broadcast` queues instead of waiting: each connection's
outbox (see :mod:`trionet._ws_send`) is written by a writer task of its own.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Coroutine, Sequence
from typing import Any

import trio
from wsproto.connection import ConnectionState as WireState
from wsproto.events import Message
from wsproto.extensions import Extension

from ._errors import TrionetError
from ._stream import Address, Socket
from ._ws_protocol import FrameGuard, Wire
from ._ws_reading import RECEIVE_SIZE, SOCKET_GONE, Reading
from ._ws_send import MAX_BUFFERED_AMOUNT, Outbox, Queued, SendLock, Waiters
from ._ws_state import (
    MAX_QUEUE_MESSAGES,
    OK_CLOSE_CODES,
    CloseCode,
    CloseState,
    Inbox,
    MessageAssembler,
    PingTracker,
    SendOwnership,
    State,
)
from ._ws_tasks import AwayWatch, Helpers

__all__ = ["CLOSE_TIMEOUT", "DEFAULT_MAX_MESSAGE_SIZE", "ConnectionClosed", "Data", "WebSocket"]

logger = logging.getLogger("trionet.ws.connection")

#: Largest message accepted by default, as trio-websocket's MAX_MESSAGE_SIZE
#: (ws allows 100 MiB; 1 MiB bounds what one peer can make us hold).
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20

#: How long ``aclose()`` waits for the peer's Close. ws waits 30 s
#: (``closeTimeout``), trio-websocket 60 s; a silent peer holding a socket and
#: a task that long is a cheap attack, so we wait less.
CLOSE_TIMEOUT = 10.0

#: The name of the writer task (in Trio's task tree and tracebacks).
WRITER_TASK_NAME = "trionet.ws.WebSocket._write_outbox"

#: What a write to a dead socket raises (the name other modules import).
_SOCKET_GONE = SOCKET_GONE

#: What ``send()`` accepts: text goes out as a text frame, bytes as binary.
Data = str | bytes | bytearray | memoryview


class ConnectionClosed(TrionetError):
    """The WebSocket is closed; ``code`` and ``reason`` say how.

    ``code`` is the code of the peer's Close frame, the code we closed with
    when the peer broke the protocol (1002, 1007, 1009), or 1006 when the
    connection ended without a Close frame.
    """

    def __init__(self, code: int, reason: str = "", *, websocket: WebSocket | None = None) -> None:
        super().__init__(f"WebSocket closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason
        #: The connection that is closed (None when raised by other code). A
        #: server handler ends quietly only on its own connection's closure.
        self.websocket = websocket


class WebSocket(Reading):
    """One WebSocket connection, either end.

    Users get one from :func:`serve`/:func:`handler` (passed to the handler)
    or from :func:`connect`; they do not create it.

    Sending is safe from several tasks at once (frames never interleave) and
    awaits the socket, so a slow peer slows the sender; :func:`broadcast`
    queues instead, up to ``max_buffered_amount`` bytes.

    Receiving (see :mod:`trionet._ws_reading` for who reads when): the
    reader task keeps reading while the application is away, so
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

    Slots: an instance's dict of some 30 attributes was about 1.5 KiB per
    connection (benchmarks/ws_idle_memory.py). A ``__dict__`` slot is kept
    for the application's own attributes (ws's heartbeat example sets
    ``ws.isAlive``); it costs a pointer until the first one is set.
    """

    __slots__ = (
        "__dict__", "__weakref__", "_assembler", "_away_since", "_client", "_close", "_closed",
        "_guard", "_helpers", "_inbox", "_message_arrived", "_message_ended", "_outbox",
        "_outbox_filled", "_outbox_writer", "_pings", "_room", "_send_lock", "_sending", "_watch",
        "_wire", "close_timeout", "extensions", "path", "request", "socket", "subprotocol",
    )  # fmt: skip

    def __init__(
        self,
        sock: Socket,
        connection: Wire,
        *,
        guard: FrameGuard,
        client: bool,
        path: str,
        request: Any = None,
        subprotocol: str | None = None,
        extensions: Sequence[Extension] = (),
        close_timeout: float = CLOSE_TIMEOUT,
        pending: bytes = b"",
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
        #: The frames, parsed and built by wsproto, and the close handshake's wire state.
        self._wire = connection
        self._guard = guard
        #: Bytes received and not parsed yet: those that came with the handshake,
        #: or the rest of a read whose messages filled the queue.
        self._unparsed_ready = bool(pending)
        if pending:
            connection.receive_data(pending)
        #: Who reads (see trionet._ws_reading): a reader task runs; a task in
        #: receive() reads; tasks waiting in receive() meanwhile.
        self._reader_task = False
        self._reader_wait = None
        self._app_reading = False
        self._app_waiting = 0
        #: Where an application away from receive() is noted (set while running).
        self._watch: AwayWatch | None = None
        self._away_since = -1  # not in the watch's set (see AwayWatch)
        #: Where the connection is in its life, and how it closed.
        self._close = CloseState()
        self._send_lock = SendLock()
        #: Which task owns a message sent in fragments (send(fin=False)).
        self._sending = SendOwnership()
        self._message_ended = Waiters()
        #: Messages received and not taken yet, and the fragments of the next one.
        self._inbox = Inbox(guard.max_message_size, MAX_QUEUE_MESSAGES)
        self._assembler = MessageAssembler()
        self._message_arrived = Waiters()
        self._room = Waiters()
        self._reader_waiting_for_room = False
        #: Our pings waiting for their Pong.
        self._pings: PingTracker[trio.Event] = PingTracker()
        #: Tasks in wait_closed() (a trio.Event would be an attrs object and a set, 260 bytes).
        self._closed = Waiters()
        #: What broadcast() queued, and the writer task that writes it.
        self._outbox = Outbox(MAX_BUFFERED_AMOUNT)
        self._outbox_filled = Waiters()
        self._outbox_writer = False
        #: The connection's helper tasks (reader, writer...): set while it runs.
        self._helpers: Helpers | None = None

    def __repr__(self) -> str:
        side = "client" if self._client else "server"
        return f"<trionet.ws.WebSocket {side} {self.path!r} {self._close.state.name}>"

    # -- properties -----------------------------------------------------------------
    @property
    def state(self) -> State:
        """:class:`State` of the connection."""
        return self._close.state

    @property
    def close_code(self) -> int | None:
        """How the connection closed (see :class:`ConnectionClosed`); None while open."""
        return self._close.code

    @property
    def close_reason(self) -> str:
        """The reason that came with :attr:`close_code` ("" while open)."""
        return self._close.reason

    @property
    def remote_address(self) -> Address | None:
        """The peer's address ``(host, port)``; on a server, the upgrade request's
        (the client a trusted proxy forwarded for, with ``proxy_headers``)."""
        if self._client or self.request is None:
            return self.socket.remote_address
        return self.request.remote_address  # type: ignore[no-any-return]

    @property
    def buffered_amount(self) -> int:
        """Bytes ``broadcast()`` queued that are not written yet (ws's ``bufferedAmount``)."""
        return self._outbox.size

    @property
    def max_buffered_amount(self) -> int:
        """Past this many bytes queued, ``broadcast()`` drops messages to this peer."""
        return self._outbox.limit

    @max_buffered_amount.setter
    def max_buffered_amount(self, limit: int) -> None:
        self._outbox.limit = limit

    @property
    def broadcast_dropped(self) -> int:
        """Broadcast messages dropped because this peer did not take them fast enough."""
        return self._outbox.dropped

    @property
    def closed(self) -> bool:
        """True once the connection is completely closed."""
        return self._close.state is State.CLOSED

    async def wait_closed(self) -> None:
        """Wait until the connection is completely closed."""
        self._start_reader()  # the peer's Close must be read
        if self._close.state is State.CLOSED:
            await trio.lowlevel.checkpoint()
        while self._close.state is not State.CLOSED:
            await self._closed.park()

    # -- sending --------------------------------------------------------------------
    async def send(self, message: Data, *, fin: bool = True) -> None:
        """Send one message: ``str`` as a text frame, bytes as a binary frame.

        Returns once the socket took it (backpressure).

        ``fin=False`` sends a fragment and leaves the message open, as ws's
        ``send(data, {fin: false})``: the next sends of the same task continue
        it (same type: str or bytes) until one with ``fin=True`` ends it. The
        peer receives one message; nothing of it has to be in memory at once.
        Meanwhile, other tasks' sends wait for the message to end.

        Raises:
          ConnectionClosed: the connection is closing or closed.
          TypeError: a fragment of another type than the message it continues.
        """
        if isinstance(message, memoryview):
            message = bytes(message)
        elif not isinstance(message, (str, bytes, bytearray)):
            raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")
        sending = self._sending
        if sending.owner is not None:
            await self._wait_for_own_message(isinstance(message, str))
        # The send lock as `async with self._send_lock` does, without its two
        # awaits when it is free (the per-message path).
        await trio.lowlevel.checkpoint_if_cancelled()
        lock = self._send_lock
        if lock.held:  # not lock.try_acquire(), inline
            await lock.acquire_waiting()
        else:
            lock.held = True
        try:
            if self._close.state is not State.OPEN:
                self._raise_closed()
            data: bytes | bytearray
            if self._outbox.items and sending.owner is None:
                # Broadcast messages queued before this one go first.
                data = self._take_outbox() + self._wire.send_data(message, fin)
            else:
                data = self._wire.send_data(message, fin)
            # Written here when the kernel takes it all at once (nearly
            # always), else the rest goes through _write, which waits. The
            # cancel point above was this call's (Trio's rule: one per call);
            # the write that does not wait adds none, as Trio's own
            # SocketStream.send_all would not after its first checkpoint.
            try:
                sent = self.socket._send_now(data)
            except _SOCKET_GONE as exc:
                self._mark_closed(CloseCode.ABNORMAL_CLOSURE, "connection lost")
                raise ConnectionClosed(*self._close.reported(), websocket=self) from exc
            if sent < len(data):
                await self._write(memoryview(data)[sent:] if sent else data)
        finally:
            if lock.waiters.tasks:
                lock.release()  # to the oldest waiter
            else:
                lock.held = False
        if not fin:
            sending.begin(trio.lowlevel.current_task(), isinstance(message, str))
        elif sending.owner is not None and sending.end():
            self._message_ended.unpark_all()

    async def _wait_for_own_message(self, text: bool) -> None:
        """Before a send while a fragmented message is open: wait for it, unless it is ours."""
        task = trio.lowlevel.current_task()
        while self._sending.must_wait(task):
            self._check_open()
            await self._message_ended.park()
        self._sending.check_type(text)

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
            self._pings.add(bytes(data), arrived)
            await self._write(self._wire.ping(bytes(data)))
        self._start_reader()  # the Pong must be read
        try:
            await arrived.wait()
        finally:
            # Still pending: woken by the end of the connection (or cancelled), not by a Pong.
            unanswered = self._pings.forget(arrived)
        if unanswered:
            self._raise_closed()

    def _check_open(self) -> None:
        if self._close.state is not State.OPEN:
            self._raise_closed()

    def _raise_closed(self) -> None:
        raise ConnectionClosed(*self._close.reported(), websocket=self)

    async def _write(self, data: bytes | bytearray | memoryview) -> None:
        """Write frames; a broken socket marks the connection closed (1006).

        A send cancelled before it starts changes nothing. One cancelled while
        blocked on a full socket may have written part of a frame, after which
        no byte can be sent that the peer would parse right: the connection
        is dropped (1006), as a cancelled write to a Trio stream breaks it.
        The send lock, taken before, was the cancel point.

        Everything goes through the Socket (``socket.send`` and, in the reader,
        ``socket.receive``), which writes the descriptor directly on plain TCP
        (:mod:`trionet._fdio`), counts the bytes and applies its
        ``allow_half_open`` on ws:// as on wss://.
        """
        try:
            await self.socket.send(data)
        except _SOCKET_GONE as exc:
            self._mark_closed(CloseCode.ABNORMAL_CLOSURE, "connection lost")
            raise ConnectionClosed(*self._close.reported(), websocket=self) from exc
        except trio.Cancelled:
            self._mark_closed(CloseCode.ABNORMAL_CLOSURE, "send cancelled mid-frame")
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.socket)
            raise

    # -- broadcasting -------------------------------------------------------------
    def _broadcast(self, event: Message[Any], frame: bytes) -> None:
        """Queue a broadcast message (``frame`` if it fits us); see :mod:`trionet._ws_send`."""
        if self._close.state is not State.OPEN or self._wire.state is not WireState.OPEN:
            return
        # A client masks each frame and a deflater keeps state: they encode their own.
        item = event if self._client or self.extensions else frame
        queued = self._outbox.add(item, len(frame))
        if queued is Queued.ADDED:
            if self._outbox_writer:
                self._outbox_filled.unpark()
            elif self._helpers is not None:
                self._outbox_writer = self._helpers.start(
                    self._write_outbox, name=WRITER_TASK_NAME
                )
        elif queued is Queued.FIRST_DROP:
            logger.warning(
                "%r: dropping broadcast messages, %d bytes not taken by the peer",
                self, self._outbox.size,
            )

    def _take_outbox(self) -> bytes:
        """The queued messages as frames, in order (the caller holds the send lock)."""
        data = b""
        wire = self._wire
        if wire.state is WireState.OPEN:  # else the peer's Close came: no data after it
            data = b"".join(
                i if isinstance(i, bytes) else wire.send_data(i.data) for i in self._outbox.items
            )
        self._outbox.clear()
        return data

    async def _write_outbox(self) -> None:
        """The writer task: write what broadcast() queued, as fast as the peer reads."""
        with contextlib.suppress(ConnectionClosed):
            while self._close.state is not State.CLOSED:
                if self._sending.owner is not None:
                    await self._message_ended.park()  # frames can't go inside a message
                elif not self._outbox:
                    await self._outbox_filled.park()
                else:
                    async with self._send_lock:
                        if self._outbox and self._sending.owner is None:
                            data = self._take_outbox()
                            if data:
                                await self._write(data)

    # -- receiving ------------------------------------------------------------------
    def receive(self) -> Coroutine[Any, Any, str | bytes]:
        """The next message: ``str`` for text, ``bytes`` for binary (``await ws.receive()``).

        After the peer closed, the messages it sent before its Close are still
        delivered; after our own ``aclose()`` they are dropped.

        Raises:
          ConnectionClosed: no more messages will come; ``code`` says why.
        """
        return self._receive(False)

    def __aiter__(self) -> WebSocket:
        return self

    def __anext__(self) -> Coroutine[Any, Any, str | bytes]:
        """Messages until the connection closes; a normal close ends the loop."""
        # Plain functions returning _receive's coroutine: an idle connection
        # waits in one coroutine frame, not in __anext__'s above receive()'s.
        return self._receive(True)

    async def _receive(self, iterating: bool) -> str | bytes:
        """receive(); ``iterating``: a normal close raises StopAsyncIteration (async for)."""
        # Always a cancel point; a schedule point only when it has to wait. A
        # queued message is returned without a trip through the scheduler: the
        # queue is bounded, so a task that only receives yields within
        # MAX_QUEUE_MESSAGES messages (and send() every few writes, see trionet._fdio).
        # The cancel point is the wait for bytes when there is one (Trio's
        # wait_readable checks first), else checkpoint_if_cancelled: one per call.
        inbox = self._inbox
        if inbox.count:
            await trio.lowlevel.checkpoint_if_cancelled()
        else:
            # Back in receive(): the watch drops us at its next tick (see AwayWatch).
            watch = self._watch
            checked = False
            try:
                while not inbox.count:
                    if self._close.state is not State.OPEN:
                        if not checked:
                            await trio.lowlevel.checkpoint_if_cancelled()
                        if iterating and self._close.reported()[0] in OK_CLOSE_CODES:
                            raise StopAsyncIteration
                        self._raise_closed()
                    if self._reader_task or self._app_reading:
                        self._app_waiting += 1
                        self._take_over_reading()
                        try:
                            await self._message_arrived.park()
                        finally:
                            self._app_waiting -= 1
                        checked = True
                        continue
                    # self._read(app=True), inline: one coroutine frame
                    # fewer for an idle connection to hold while it waits,
                    # and the per-message path with no await but the wait.
                    sock = self.socket
                    io = sock._io
                    try:
                        # The descriptor to wait on first; -1: bytes are in already.
                        fd = -1 if self._unparsed_ready else io.idle_fd()
                    except _SOCKET_GONE:
                        fd = -1  # the read below fails the same way
                    if fd < 0 and not checked:
                        await trio.lowlevel.checkpoint_if_cancelled()
                    checked = True
                    self._app_reading = True
                    try:
                        if self._unparsed_ready:
                            self._unparsed_ready = False
                        else:
                            try:
                                if fd >= 0:
                                    # The wait for bytes in this frame, not two
                                    # layers down in Socket.receive and DirectIO's:
                                    # an idle connection waits here for hours, and
                                    # two frames fewer are 500 bytes fewer each.
                                    await trio.lowlevel.wait_readable(fd)
                                data = sock._receive_now(RECEIVE_SIZE, waited=fd >= 0)
                                if data is None:  # not plain TCP, the end, or a yield due
                                    data = await sock.receive(RECEIVE_SIZE)
                            except _SOCKET_GONE:
                                data = b""
                            if data:  # self._feed(data), inline
                                self._wire.receive_data(data)
                            else:
                                self._feed(data)  # the end: closed
                                continue
                        frame = self._queue_messages(True)
                        if frame is not None:  # a control frame: a reply or the close to write
                            await self._handle_control(frame, True)
                    finally:
                        self._app_reading = False
                        if self._message_arrived.tasks:
                            self._message_arrived.unpark()  # the next waiter reads on
            finally:
                if watch is not None and self._close.state is not State.CLOSED:
                    if self._away_since < 0:
                        watch.leave(self)
                    else:  # in the watch's set still: watch.leave(self), inline
                        self._away_since = watch.epoch
        message = inbox.take()
        if self._reader_waiting_for_room and inbox.has_room():
            self._room.unpark_all()
        return message

    # -- closing --------------------------------------------------------------------
    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close: send a Close frame, wait (bounded) for the peer's, close TCP.

        Messages not received yet are dropped; what ``broadcast()`` queued goes
        out before the Close. Waits at most ``close_timeout`` in all; calling it
        again, or on a closed connection, just waits for the end.
        """
        try:
            with trio.move_on_after(self.close_timeout):
                if self._close.start_closing(code, reason):
                    self._drop_queue()
                    # Waiting for the lock is bounded too: a write blocked on a
                    # peer that stopped reading may hold it.
                    async with self._send_lock:
                        if self._wire.state is WireState.OPEN:
                            # What broadcast() queued goes out before the Close.
                            queued = self._take_outbox() if self._sending.owner is None else b""
                            close = self._wire.close(code, reason)
                            with contextlib.suppress(*_SOCKET_GONE):
                                await self.socket.send(queued + close)
                await self._read_until_closed()
            if self._close.state is not State.CLOSED:
                logger.info("%r: no Close from the peer within %ss", self, self.close_timeout)
                self._mark_closed(CloseCode.ABNORMAL_CLOSURE, "no close frame received")
        finally:
            await trio.aclose_forcefully(self.socket)
