"""A WebSocket's bookkeeping as pure state: no I/O, no Trio, one call per change.

:class:`trionet.ws.WebSocket` does the reading and writing; what it has to
remember between reads and writes lives here, each piece a small class whose
methods change it synchronously and return what the caller must do (wake a
waiter, stop parsing, send a Close), as :mod:`trionet._pool` does for the
agent. So the rules read in one place and are unit-tested without a socket
(tests/test_ws_state.py), and no await can come between a check and the
change it decides:

* :class:`Inbox`: received messages the application has not taken, and the
  room left, in messages and in bytes, before the reader stops reading;
* :class:`MessageAssembler`: the fragments of a message becoming one message;
* :class:`PingTracker`: our pings waiting for their Pong, matched by payload;
* :class:`SendOwnership`: which task owns a message sent in fragments;
* :class:`CloseState` and the close-code constants: where the connection is
  in its life and which code a closed connection reports.

Waiters are opaque here (``trio.Event`` objects or tasks, for the caller):
this module never wakes anyone itself, it says whom to wake.

Alternatives rejected: keeping the counters on the I/O class (the previous
layout: the rules were spread over its methods and could only be tested over
a socket); one state machine object for all of it (the pieces change on
different events and never consult each other; separate ones keep each
hot-path call to a few attribute operations).

Not here: the message size limit and the fragment count. They are checked
against each frame's *declared* length, before its payload is buffered, by
``FrameGuard`` and ``BoundedPerMessageDeflate`` in :mod:`trionet._ws_protocol`;
by the time the assembler sees a fragment it is already in memory, so a check
here would come too late to matter and be a second home for one rule.
"""

from __future__ import annotations

import enum
from typing import Any, Generic, TypeVar

from wsproto.connection import ConnectionState as WireState
from wsproto.frame_protocol import CloseReason

__all__ = [
    "COMPACT_AFTER",
    "MAX_QUEUE_MESSAGES",
    "OK_CLOSE_CODES",
    "REGISTERED_CLOSE_CODES",
    "CloseCode",
    "CloseState",
    "Inbox",
    "MessageAssembler",
    "PingTracker",
    "SendOwnership",
    "State",
    "is_violation",
]

Waiter = TypeVar("Waiter")

# -- close codes ---------------------------------------------------------------------

#: Close codes (RFC 6455 section 7.4.1), wsproto's enum under a shorter name.
CloseCode = CloseReason

#: Close codes registered with IANA after RFC 6455 that a peer may send: 1012
#: Service Restart, 1013 Try Again Later, 1014 Bad Gateway (IANA "WebSocket
#: Close Code Number Registry",
#: https://www.iana.org/assignments/websocket/websocket.xhtml). npm ws accepts
#: 1000-1014 except 1004-1006 (lib/validation.js ``isValidStatusCode``);
#: wsproto knows 1012 and 1013 but fails a Close with 1014 as "unknown reserved"
#: (:mod:`trionet._ws_protocol` teaches it the rest).
REGISTERED_CLOSE_CODES = frozenset({1012, 1013, 1014})

#: Close codes that end ``async for`` quietly: normal closure, going away, and
#: a Close without a code (the ``websockets`` package's OK_CLOSE_CODES).
OK_CLOSE_CODES = frozenset({1000, 1001, 1005})


def is_violation(wire_state: WireState) -> bool:
    """Whether a CloseConnection wsproto just reported is the peer's protocol violation.

    wsproto reports a violation as a CloseConnection (with the code to fail
    the connection with: 1002, 1007, 1009) without a state change; a real
    Close from the peer moves it to REMOTE_CLOSING (or CLOSED after ours).
    """
    return wire_state is WireState.OPEN or wire_state is WireState.LOCAL_CLOSING


class State(enum.Enum):
    """Where a :class:`WebSocket` is in its life."""

    #: Messages flow both ways.
    OPEN = 1
    #: A Close was sent or read; the close handshake is finishing.
    CLOSING = 2
    #: Both Closes were exchanged, or the connection failed or dropped.
    CLOSED = 3


#: What ``CloseState.sent`` says before we send a Close (one tuple for every connection).
_NOTHING_SENT: tuple[int, str] = (CloseCode.ABNORMAL_CLOSURE, "")


class CloseState:
    """Where the connection is in its life, and how it closed.

    ``code`` and ``reason`` are the first close recorded: the peer's Close,
    the code we failed the connection with, or 1006 for a connection that
    ended without a Close. Until one is recorded, a connection closing at our
    request reports the code it sent (``sent``): ``send()`` after our own
    ``aclose(4000)`` raises ConnectionClosed(4000), not 1006.
    """

    __slots__ = ("code", "reason", "sent", "state")

    def __init__(self) -> None:
        self.state = State.OPEN
        self.code: int | None = None
        self.reason = ""
        self.sent: tuple[int, str] = _NOTHING_SENT

    def start_closing(self, code: int, reason: str) -> bool:
        """Our side closes (or fails) with ``code``: True if it was open (send the Close)."""
        if self.state is not State.OPEN:
            return False
        self.state = State.CLOSING
        self.sent = (code, reason)
        return True

    def peer_closed(self, code: int, reason: str) -> None:
        """The peer's Close (or its protocol violation) was read."""
        if self.code is None:
            self.code, self.reason = code, reason
        if self.state is State.OPEN:
            self.state = State.CLOSING

    def finish(self, code: int, reason: str) -> bool:
        """The connection is over; ``code`` counts unless one was recorded. True the first time."""
        if self.code is None:
            self.code, self.reason = int(code), reason
        first = self.state is not State.CLOSED
        self.state = State.CLOSED
        return first

    def reported(self) -> tuple[int, str]:
        """The code and reason a ConnectionClosed says now."""
        if self.code is not None:
            return self.code, self.reason
        return self.sent  # closing but not closed: our own aclose() waits for the peer


# -- receiving -----------------------------------------------------------------------

#: Undelivered messages at which the reader stops reading the socket. The
#: queue is also bounded in bytes, by ``max_message_size`` (see :class:`Inbox`).
#: For comparison: ``websockets`` holds up to ``max_queue=16`` messages of
#: ``max_size`` (16 MiB), trio-websocket 1, Node's ws has no bound at all.
MAX_QUEUE_MESSAGES = 1024


class Inbox:
    """Received messages not yet taken by the application, bounded in count and bytes.

    The reader reads the socket while :meth:`has_room`; past that it waits,
    so TCP slows the peer down. One read can carry many messages (and with
    compression inflate to many more bytes), so the reader parses on until
    :meth:`put` says it is at twice the room, then stops half-way through
    the read: at most about twice ``limit`` bytes are held.

    A list and the index of the oldest message, not a deque: an empty deque
    holds a 64-slot block (760 bytes with its header) and every idle
    connection has an inbox; a list that emptied holds no slots. Taken slots
    are cleared at once (the message is the application's now) and the list
    is compacted once at least half of it is taken, so it stays within twice
    the messages queued.
    """

    __slots__ = ("_high_bytes", "_high_count", "_next", "count", "limit", "max_messages",
                 "messages", "size")  # fmt: skip

    def __init__(self, limit: int, max_messages: int = MAX_QUEUE_MESSAGES) -> None:
        #: Queued messages from index ``_next`` on (taken slots before it are None).
        self.messages: list[str | bytes | None] = []
        self._next = 0
        #: Messages queued.
        self.count = 0
        #: Bytes (or characters, for text) queued.
        self.size = 0
        self.limit = limit
        self.max_messages = max_messages
        self._high_bytes = 2 * limit
        self._high_count = 2 * max_messages

    def __len__(self) -> int:
        return self.count

    def put(self, message: str | bytes) -> bool:
        """Queue a message; True when the reader must stop parsing (twice the room is used)."""
        self.messages.append(message)
        self.count += 1
        self.size += len(message)
        return self.size >= self._high_bytes or self.count >= self._high_count

    def take(self) -> str | bytes:
        """The oldest message (the caller checked that there is one)."""
        messages, index = self.messages, self._next
        message = messages[index]
        assert message is not None
        self.count -= 1
        self.size -= len(message)
        if not self.count:
            messages.clear()
            self._next = 0
        else:
            messages[index] = None
            self._next = index = index + 1
            if index >= COMPACT_AFTER and 2 * index >= len(messages):
                del messages[:index]
                self._next = 0
        return message

    def has_room(self) -> bool:
        """Whether the reader may read more from the socket."""
        return self.size < self.limit and self.count < self.max_messages

    def clear(self) -> None:
        """Drop everything (our own close: unread messages are discarded)."""
        self.messages.clear()
        self._next = self.count = self.size = 0


#: Taken slots at the head of :class:`Inbox`'s list before it is compacted
#: (and only once they are half of it): a memmove of a few hundred bytes.
COMPACT_AFTER = 32


class MessageAssembler:
    """Joins a message's fragments; wsproto hands them over as they arrive.

    A message that came whole (nearly all of them) goes straight through
    without a copy; a fragmented one is joined once, at its last fragment.
    """

    __slots__ = ("parts",)

    def __init__(self) -> None:
        #: The fragments so far (all str or all bytes: wsproto checks the
        #: opcodes); empty between messages, which the per-message path tests.
        self.parts: list[Any] = []

    def __bool__(self) -> bool:
        """Whether a message is half-received."""
        return bool(self.parts)

    def add(self, data: str | bytes, finished: bool) -> str | bytes | None:
        """A fragment: the whole message when ``finished``, else None (more to come)."""
        parts = self.parts
        if not finished:
            parts.append(data)
            return None
        if not parts:
            return data
        parts.append(data)
        joined = "".join(parts) if isinstance(data, str) else b"".join(parts)
        parts.clear()
        return joined

    def clear(self) -> None:
        """Drop a half-received message (our own close)."""
        self.parts.clear()


#: The shared stand-in for no pending ping (never appended to).
_NO_PINGS: list[Any] = []


class PingTracker(Generic[Waiter]):
    """Our pings waiting for their Pong, oldest first.

    A Pong answers the oldest pending ping with the same payload and every
    ping sent before it: RFC 6455 section 5.5.3 lets a peer answer only the
    most recent of several pings. A Pong that matches nothing is unsolicited
    (section 5.5.3 allows those as a heartbeat) and answers nothing.
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        # No list of its own until a ping is sent: most connections never do.
        self._pending: list[tuple[bytes, Waiter]] = _NO_PINGS

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, payload: bytes, waiter: Waiter) -> None:
        """A ping with ``payload`` went out; ``waiter`` waits for its Pong."""
        if self._pending is _NO_PINGS:
            self._pending = []
        self._pending.append((payload, waiter))

    def pong(self, payload: bytes) -> list[Waiter]:
        """A Pong with ``payload`` came: the waiters it answers (wake them)."""
        for index, (sent, _) in enumerate(self._pending):
            if sent == payload:
                answered = [waiter for _, waiter in self._pending[: index + 1]]
                del self._pending[: index + 1]
                return answered
        return []

    def forget(self, waiter: Waiter) -> bool:
        """Stop waiting for ``waiter``'s Pong; True if it was still unanswered."""
        for index, (_, pending) in enumerate(self._pending):
            if pending is waiter:
                del self._pending[index]
                return True
        return False

    def drain(self) -> list[Waiter]:
        """The connection ended: every waiter, none answered (wake them all)."""
        waiters = [waiter for _, waiter in self._pending]
        self._pending = _NO_PINGS
        return waiters


class SendOwnership:
    """Which task owns the message being sent in fragments (``send(fin=False)``).

    Frames of two messages must not interleave (RFC 6455 section 5.4: a
    message's fragments are not interleaved with another message's data
    frames), so while one task's fragmented message is open, other tasks'
    sends and broadcast frames wait for its end; the owner's next sends
    continue it and must be of the same type.
    """

    __slots__ = ("owner", "text")

    def __init__(self) -> None:
        #: The task whose message is open, or None.
        self.owner: object | None = None
        #: Whether the open message is text (else binary).
        self.text = False

    def must_wait(self, task: object) -> bool:
        """Whether ``task`` has to wait before sending: another task's message is open."""
        return self.owner is not None and self.owner is not task

    def check_type(self, text: bool) -> None:
        """Before the owner continues its message: a fragment of the other type is a mistake.

        Raises:
          TypeError: ``text`` is not the type of the open message.
        """
        if self.owner is not None and self.text is not text:
            kind = "text" if self.text else "binary"
            raise TypeError(f"this fragment continues a {kind} message: send the same type")

    def begin(self, task: object, text: bool) -> None:
        """``task`` sent a fragment with ``fin=False``: the message is open, and its."""
        self.owner, self.text = task, text

    def end(self) -> bool:
        """A frame with ``fin=True`` went out: True if it ended an open message (wake waiters)."""
        if self.owner is None:
            return False
        self.owner = None
        return True
