"""Reading a WebSocket: who reads the socket, frames, control replies, the close handshake.

The part of :class:`trionet._ws_connection.WebSocket` that reads and what
follows from reading (a base class of it, apart only to keep modules short).

Who reads the socket: the application's own task, while it waits in
``receive()`` (a message reaches it with no task switch, and an idle
connection, whose handler waits there, holds one task, not two); and a
reader task (:meth:`Reading._run_reader`) only while the application is
away from ``receive()`` and something must still be read. The reader is
started when the application stays away for a moment (by one watch per
Trio run, :class:`trionet._ws_tasks.AwayWatch`), or at once by whoever waits
for the peer outside ``receive()``: ``ping()`` for its Pong, ``aclose()``
and ``wait_closed()`` for the peer's Close. It hands data messages to
``receive()`` through a bounded queue and answers control frames itself, so
pings are answered and close handshakes complete whatever the application
is doing; it ends when the application is back in ``receive()``. One reader
at a time, always: either the reader task or a task in ``receive()``.

Rejected: a reader task for the connection's whole life (the former design:
a second task and its coroutine frames, about 3 KiB per idle connection
with the nursery it ran in, and a task switch per message); a reader
started each time the application leaves ``receive()`` (a task per message
on an echo).
"""

from __future__ import annotations

import contextlib
import logging
from typing import cast

import trio
from wsproto.connection import ConnectionState as WireState
from wsproto.extensions import Extension
from wsproto.frame_protocol import Frame, Opcode

from ._linger import linger as _linger
from ._stream import Socket
from ._ws_protocol import FrameGuard, Wire, violation_reason
from ._ws_send import Outbox, SendLock, Waiters
from ._ws_state import (
    CloseCode,
    CloseState,
    Inbox,
    MessageAssembler,
    PingTracker,
    State,
    is_violation,
)
from ._ws_tasks import AwayWatch, Helpers

__all__ = ["FAIL_SEND_TIMEOUT", "READER_TASK_NAME", "RECEIVE_SIZE", "SOCKET_GONE", "Reading"]

logger = logging.getLogger("trionet.ws.connection")

#: How long a failing connection tries to send its Close before dropping TCP.
FAIL_SEND_TIMEOUT = 1.0

#: Bytes asked of the kernel per read: big reads mean fewer trips through wsproto.
RECEIVE_SIZE = 65536

#: The name of the reader task (in Trio's task tree and tracebacks).
READER_TASK_NAME = "trionet.ws.WebSocket._run_reader"

#: What :meth:`Reading._queue_messages` returns to the reader task when the
#: queue is full (a frame no parser makes: compared by identity).
_FULL = Frame(Opcode.CONTINUATION, b"", False, False)

#: What a write to a dead socket raises.
SOCKET_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class Reading:
    """The reading half of a WebSocket; its state lives in the subclass's slots."""

    __slots__ = ("_app_reading", "_app_waiting", "_reader_task", "_reader_wait",
                 "_reader_waiting_for_room", "_unparsed_ready")  # fmt: skip

    socket: Socket
    extensions: list[Extension]
    _client: bool
    _wire: Wire
    _guard: FrameGuard
    _close: CloseState
    _closed: Waiters
    _send_lock: SendLock
    _inbox: Inbox
    _assembler: MessageAssembler
    _message_arrived: Waiters
    _message_ended: Waiters
    _room: Waiters
    _reader_waiting_for_room: bool
    _pings: PingTracker[trio.Event]
    _outbox: Outbox
    _outbox_filled: Waiters
    _helpers: Helpers | None
    _watch: AwayWatch | None
    _away_since: int
    _reader_task: bool
    _app_reading: bool
    _app_waiting: int
    _unparsed_ready: bool
    _reader_wait: trio.CancelScope | None
    close_timeout: float

    async def _write_control(self, data: bytes | bytearray, app: bool) -> bool:
        """Write control frames (Pongs, the Close's answer) for the reader; False if it failed.

        ``app``: the writer is a task in receive(), which its application may
        cancel at any time (``move_on_after`` around ``receive()``), and a
        frame cut in half would corrupt the stream for good. So the write is
        shielded, for at most ``close_timeout`` seconds: a peer that takes
        none of our bytes that long loses the connection (1006). The reader
        task is cancelled only once the connection is over.
        """
        if not data:
            return True
        if not app:
            async with self._send_lock:
                try:
                    await self.socket.send(data)
                except SOCKET_GONE:
                    return False
            return True
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self.close_timeout
            async with self._send_lock:
                try:
                    await self.socket.send(data)
                except SOCKET_GONE:
                    return False
        if scope.cancelled_caught:
            self._mark_closed(CloseCode.ABNORMAL_CLOSURE, "the peer took no control frame")
            await trio.aclose_forcefully(self.socket)
            return False
        return True

    async def _read_until_closed(self) -> None:
        """Wait for the end of the close handshake, reading if nobody else does."""
        while self._close.state is not State.CLOSED:
            if self._reader_task or self._app_reading:
                await self._message_arrived.park()  # woken when a read or the reader ends
            else:
                await self._read(app=True)  # closing: data frames are dropped unread

    def _drop_queue(self) -> None:
        self._inbox.clear()
        self._assembler.clear()
        self._room.unpark_all()
        self._message_arrived.unpark_all()

    def _mark_closed(self, code: int, reason: str) -> None:
        """Record how the connection ended and wake everyone waiting on it."""
        self._close.finish(code, reason)
        self._closed.unpark_all()
        if self._watch is not None:
            self._watch.forget(self)
        self._outbox.clear()
        self._message_arrived.unpark_all()
        self._message_ended.unpark_all()
        self._outbox_filled.unpark_all()
        self._room.unpark_all()
        for waiter in self._pings.drain():
            waiter.set()

    async def _fail(self, code: int, reason: str, *, linger: bool = False) -> None:
        """Fail the connection (RFC 6455 section 7.1.7): send Close, drop TCP.

        ``linger`` (only from the reader task, the one that may read) drains
        what the peer still sends before closing: closing a socket with unread
        data makes the kernel answer with a reset, and the peer's kernel may
        then drop our Close frame before the peer reads why it was cut off.
        The connection counts as closed (``wait_closed()``, ``aclose()``)
        only after that, so that nobody closes the socket under the drain.
        """
        logger.log(
            logging.DEBUG if code == CloseCode.GOING_AWAY else logging.INFO,
            "%r failed: %d %s", self, code, reason,
        )
        # Nothing more may be sent, broadcast or not; send()/receive() raise this code meanwhile.
        self._close.start_closing(code, reason)
        self._outbox.clear()
        with trio.move_on_after(FAIL_SEND_TIMEOUT):  # the peer may not read: don't wait
            async with self._send_lock:
                if self._wire.state is WireState.OPEN:
                    with contextlib.suppress(*SOCKET_GONE):
                        await self.socket.send(self._wire.close(code, reason))
        if linger:
            await _linger(self.socket)  # half-close, then read and drop what the peer sends
        self._mark_closed(code, reason)
        await trio.aclose_forcefully(self.socket)

    def _helper_failed(self, name: str, exc: BaseException) -> None:
        """A helper task failed (our bug): log it, fail the connection (1011)."""
        logger.error("%r: %s failed", self, name, exc_info=exc)
        self._mark_closed(CloseCode.INTERNAL_ERROR, "internal error")

    def _start_reader(self) -> None:
        """Start the reader task unless someone reads already (or nobody may)."""
        if self._reader_task or self._app_reading or self._close.state is State.CLOSED:
            return
        if self._helpers is not None:
            self._reader_task = self._helpers.start(self._run_reader, name=READER_TASK_NAME)

    async def _run_reader(self) -> None:
        """Read frames until the application is back in receive(), or the end."""
        inbox = self._inbox
        try:
            while self._close.state is not State.CLOSED:
                if self._app_waiting:
                    return  # the application reads from here on
                if not inbox.has_room():
                    await self._wait_for_room()
                await self._read(app=False)
        except BaseException:
            if self._close.state is not State.CLOSED:
                self._mark_closed(CloseCode.ABNORMAL_CLOSURE, "connection lost")
            raise
        finally:
            self._reader_task = False
            self._message_arrived.unpark_all()  # a task waiting in receive() reads now

    async def _read(self, *, app: bool) -> None:
        """Read once (unless a read's rest is waiting) and handle the frames it completes.

        ``app``: the caller is a task in receive(), which must not wait for
        room in the queue it empties itself.
        """
        if app:
            self._app_reading = True
        try:
            if self._unparsed_ready:
                self._unparsed_ready = False
            elif app:
                try:
                    data = await self.socket.receive(RECEIVE_SIZE)
                except SOCKET_GONE:
                    data = b""
                if not self._feed(data):
                    return
            else:
                # The reader's wait can be called off (take_over_reading()):
                # cancelled while it waits, a read consumes nothing.
                with trio.CancelScope() as wait:
                    self._reader_wait = wait
                    try:
                        data = await self.socket.receive(RECEIVE_SIZE)
                    except SOCKET_GONE:
                        data = b""
                    finally:
                        self._reader_wait = None
                if wait.cancelled_caught or not self._feed(data):
                    return
            await self._handle_frames(app)
        finally:
            if app:
                self._app_reading = False
                if self._message_arrived:
                    self._message_arrived.unpark()  # the next waiting task reads on

    def _take_over_reading(self) -> None:
        """A task is back in receive(): a reader waiting for data ends, the task reads.

        Without this, a connection whose handler was away once would keep
        its reader task, and two tasks, until the next frame came in.
        """
        if self._reader_wait is not None:
            self._reader_wait.cancel()

    async def _wait_for_room(self) -> None:
        """Hold the reader while the application has too much unread."""
        while not self._inbox.has_room() and self._close.state is State.OPEN:
            self._reader_waiting_for_room = True
            try:
                await self._room.park()
            finally:
                self._reader_waiting_for_room = False

    def _feed(self, data: bytes) -> bool:
        """Give a read's bytes to the parser; False at the end of the stream (then closed)."""
        if not data:
            self._mark_closed(CloseCode.ABNORMAL_CLOSURE, "connection lost")
            return False
        self._wire.receive_data(data)
        return True

    def _queue_messages(self, app: bool) -> Frame | None:
        """Queue the messages of the frames parsed so far, with no await: the per-message path.

        Returns None when wsproto needs more bytes (or, for a task in
        receive(), the queue is full: the rest waits for its next call,
        ``_unparsed_ready``); the first control frame, which needs a write
        (:meth:`_handle_control`); or :data:`_FULL` for the reader task,
        which must wait for room before parsing on.
        """
        wire = self._wire
        while True:
            frame = wire.next_frame()
            if frame is None:
                return None
            opcode = frame.opcode
            if opcode is not Opcode.TEXT and opcode is not Opcode.BINARY:
                return frame
            if self._close.state is not State.OPEN:
                continue  # after our aclose(): drain and drop
            message: str | bytes = frame.payload  # type: ignore[assignment]  # (not cast(): a call)
            if not frame.message_finished or self._assembler.parts:  # else whole: as it is
                joined = self._assembler.add(message, frame.message_finished)
                if joined is None:
                    continue
                message = joined
            full = self._inbox.put(message)
            if self._message_arrived.tasks:
                self._message_arrived.unpark()
            if full:
                # One read can carry many messages (and with compression,
                # inflate to many more bytes): stop parsing it half-way.
                if app:  # the rest waits for the next receive()
                    self._unparsed_ready = True
                    return None
                return _FULL

    async def _handle_frames(self, app: bool) -> None:
        """Handle every frame one read completed; control replies go out in one write."""
        while True:
            frame = self._queue_messages(app)
            if frame is None:
                return
            if frame is not _FULL:
                await self._handle_control(frame, app)
                return
            await self._wait_for_room()  # the reader task only

    async def _handle_control(self, frame: Frame | None, app: bool) -> None:
        """Handle a control frame and the frames after it in the read; replies in one write."""
        replies = bytearray()
        wire = self._wire
        while frame is not None:
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if self._close.state is not State.OPEN:
                    frame = wire.next_frame()
                    continue  # after our aclose(): drain and drop
                message = self._assembler.add(frame.payload, frame.message_finished)  # type: ignore[arg-type]
                if message is not None:
                    full = self._inbox.put(message)
                    self._message_arrived.unpark()
                    if full:
                        if not await self._write_control(bytes(replies), app):
                            return
                        replies.clear()
                        if app:  # the rest waits for the next receive()
                            self._unparsed_ready = True
                            return
                        await self._wait_for_room()
            elif opcode is Opcode.PING:
                if wire.state is WireState.OPEN:
                    replies += wire.pong(frame.payload)  # type: ignore[arg-type]
            elif opcode is Opcode.PONG:
                for waiter in self._pings.pong(frame.payload):  # type: ignore[arg-type]
                    waiter.set()
            elif opcode is Opcode.CLOSE:
                wire_code, wire_reason = cast("tuple[int, str]", frame.payload)
                code, reason = self._note_close(wire_code, wire_reason)
                if not await self._write_control(replies, app):
                    return
                await self._on_close(wire_code, code, reason, app)
                return
            frame = wire.next_frame()
        if replies and not await self._write_control(replies, app):
            self._mark_closed(CloseCode.ABNORMAL_CLOSURE, "connection lost")

    def _note_close(self, wire_code: int, wire_reason: str | None) -> tuple[int, str]:
        """Record a Close (or a violation) the moment it is read, before any await.

        The wire state has already moved on, so from here on send() must
        raise ConnectionClosed with this code rather than reach wsproto;
        receive() still delivers what came before the Close. Returns the
        code and reason, the guard's words for a refused frame.
        """
        code, reason = int(wire_code), wire_reason or ""
        if is_violation(self._wire.state) and reason == "error in extension":
            reason = violation_reason([self._guard, *self.extensions], reason)
        self._close.peer_closed(code, reason)
        return code, reason

    async def _on_close(self, wire_code: int, code: int, reason: str, app: bool) -> None:
        """Complete the close the peer started, or fail the connection it broke."""
        if is_violation(self._wire.state):
            logger.info("%r: protocol violation: %d %s", self, code, reason)
            await self._fail(code, reason, linger=True)
            return
        if self._wire.state is WireState.REMOTE_CLOSING:
            # Echo the peer's code (section 5.5.1); wsproto sends no code for 1005.
            await self._write_control(self._wire.close(wire_code, reason), app)
        self._mark_closed(code, reason)
        if not self._client:
            # Section 7.1.1: the server closes the TCP connection first.
            await trio.aclose_forcefully(self.socket)

