"""How a WebSocket's frames reach the socket in order: the send lock and the broadcast outbox.

Both are pure state with no I/O of their own; :class:`trionet.ws.WebSocket`
owns one of each and does the writing.

``send()`` awaits the socket, so a slow peer slows its sender: that is the
backpressure a single conversation wants. A broadcast to many peers must not
wait for the slowest, so :func:`trionet.ws.broadcast` puts the message in each
connection's :class:`Outbox` and a writer task per connection (started on the
first broadcast) writes it out. Alternatives rejected: awaiting each peer's
``send()`` in turn stalls everyone behind one slow peer; a task per message
per peer costs a spawn each and keeps no order; an unbounded buffer (ws's
``bufferedAmount``, the ``websockets`` package's ``broadcast``, whose docs say
"there's no backpressure") lets one stuck peer hold any amount of memory.

A peer whose outbox is full has the message *dropped*: counted, and logged
once per stretch of drops. Closing it with 1008 instead was rejected:
broadcast messages are mostly updates that a later one supersedes; a peer that
stopped reading is already ended by the heartbeat (``ping_interval``); and
a synchronous call that closes connections would hide network events inside
the caller's loop. The outbox holds at most ``limit`` bytes plus one message.
"""

from __future__ import annotations

import enum
from typing import Any

import trio
from wsproto.events import Message
from wsproto.frame_protocol import FrameProtocol

__all__ = ["MAX_BUFFERED_AMOUNT", "Outbox", "Queued", "SendLock", "Waiters", "plain_server_frame"]

#: Bytes of broadcast messages a connection may hold unsent before
#: ``broadcast`` drops messages for it: room for a burst of a thousand 1 KiB
#: messages, or one of ``DEFAULT_MAX_MESSAGE_SIZE`` (1 MiB), between two writes;
#: the kernel's socket buffer holds more before this starts filling. For
#: comparison: websockets' ``write_limit`` high-water mark is 32 KiB, but its
#: ``broadcast`` ignores it; ws's ``bufferedAmount`` has no bound.
MAX_BUFFERED_AMOUNT = 1 << 20


#: The shared stand-in for an empty list of parked tasks (never appended to).
_NO_TASKS: list[trio.lowlevel.Task] = []


class Waiters:
    """Tasks parked until another task wakes them: a small :class:`trio.lowlevel.ParkingLot`.

    A WebSocket waits in five places (a message, room in the inbox, the end
    of a fragmented message, the broadcast outbox, the send lock). Each
    ParkingLot is an attrs object with an OrderedDict that keeps its grown
    table after a first use, about 300 bytes per lot per connection, and its
    ``park`` goes through KeyboardInterrupt protection: per message, on the
    receive path. Waiting tasks are few (nearly always none or one), so a
    list is enough: same FIFO order, same cancellation (a cancelled task
    leaves the list). Rejected: one shared lot woken with ``unpark_all``
    (every wake-up would wake unrelated waiters to re-check).
    """

    __slots__ = ("tasks",)

    def __init__(self) -> None:
        # No list until a task parks: a WebSocket has five of these, and an
        # empty list is 56 bytes (ws_idle_memory.py counts every one).
        #: The parked tasks, oldest first. The per-message path tests this list
        #: (``if waiters.tasks``) rather than the object: no __bool__ call.
        self.tasks: list[trio.lowlevel.Task] = _NO_TASKS

    def __bool__(self) -> bool:
        """Whether a task is parked."""
        return bool(self.tasks)

    async def park(self) -> None:
        """Wait until :meth:`unpark` or :meth:`unpark_all` (a cancel point)."""
        task = trio.lowlevel.current_task()
        tasks = self.tasks
        if tasks is _NO_TASKS:
            tasks = self.tasks = []
        tasks.append(task)

        def abort(_: object) -> trio.lowlevel.Abort:
            tasks.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def unpark(self) -> None:
        """Wake the task parked first, if any."""
        tasks = self.tasks
        if tasks:
            trio.lowlevel.reschedule(tasks.pop(0))
            if not tasks:
                self.tasks = _NO_TASKS

    def unpark_all(self) -> None:
        """Wake every parked task."""
        tasks = self.tasks
        if tasks:
            self.tasks = _NO_TASKS
            for task in tasks:
                trio.lowlevel.reschedule(task)


class SendLock:
    """The FIFO lock that keeps frames from interleaving on the socket.

    Cheaper than :class:`trio.Lock` when uncontended, which is nearly always:
    taking it free costs a cancel point but no trip through the scheduler and
    no parking-lot breaker (trio.Lock registers one per acquire; at one
    acquire per message it showed in profiles). A release
    hands the lock straight to the oldest waiter, as trio.StrictFIFOLock does.
    """

    __slots__ = ("held", "waiters")

    def __init__(self) -> None:
        #: Whether a task holds the lock; the tasks waiting for it. Public for
        #: ``WebSocket.send``, which takes and releases a free lock inline.
        self.held = False
        self.waiters = Waiters()

    async def __aenter__(self) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.held:
            await self.waiters.park()  # woken as the new owner
        else:
            self.held = True

    def try_acquire(self) -> bool:
        """Take the lock if it is free (no cancel point): ``send()``'s path, without two awaits."""
        if self.held:
            return False
        self.held = True
        return True

    async def acquire_waiting(self) -> None:
        """Wait for the lock ``try_acquire`` found held; a cancel point."""
        await self.waiters.park()  # woken as the new owner

    def release(self) -> None:
        """Hand the lock to the oldest waiter, or free it."""
        if self.waiters:
            self.waiters.unpark()
        else:
            self.held = False

    async def __aexit__(self, *exc_info: object) -> None:
        if self.waiters:
            self.waiters.unpark()
        else:
            self.held = False


class Queued(enum.Enum):
    """What :meth:`Outbox.add` did with a message."""

    #: Queued: the writer must write it.
    ADDED = 1
    #: Dropped, the outbox being full; the first drop since it last emptied (log it).
    FIRST_DROP = 2
    #: Dropped, as the ones before it.
    DROPPED = 3


#: The shared stand-in for an empty outbox (never appended to).
_NOTHING_QUEUED: list[bytes | Message[Any]] = []


class Outbox:
    """The broadcast messages one connection has not written yet, bounded in bytes.

    Items are finished frames (shared by every connection that encodes
    alike, see :func:`plain_server_frame`) or messages that the connection
    encodes when it writes them, so that its compressor sees them in wire order.
    """

    __slots__ = ("_dropping", "dropped", "items", "limit", "size")

    def __init__(self, limit: int = MAX_BUFFERED_AMOUNT) -> None:
        # A list, not a deque: it is only ever emptied whole, and an empty
        # list holds no slots (an empty deque holds a 64-slot block). None
        # of its own until something is queued: most connections never are.
        self.items: list[bytes | Message[Any]] = _NOTHING_QUEUED
        #: Bytes queued (ws's ``bufferedAmount``).
        self.size = 0
        #: At or past this many bytes queued, messages are dropped.
        self.limit = limit
        #: Messages dropped so far.
        self.dropped = 0
        self._dropping = False

    def __bool__(self) -> bool:
        return bool(self.items)

    def add(self, item: bytes | Message[Any], size: int) -> Queued:
        """Queue ``item`` (``size`` bytes), or drop it when ``limit`` bytes are waiting."""
        if self.size >= self.limit:
            self.dropped += 1
            if self._dropping:
                return Queued.DROPPED
            self._dropping = True
            return Queued.FIRST_DROP
        if self.items is _NOTHING_QUEUED:
            self.items = []
        self.items.append(item)
        self.size += size
        return Queued.ADDED

    def clear(self) -> None:
        """Forget what is queued (taken for writing, or the connection is closing)."""
        self.items = _NOTHING_QUEUED
        self.size = 0
        self._dropping = False


#: Encodes frames as every server-side connection without extensions would
#: (unmasked, uncompressed). It only ever encodes whole messages, which leave
#: no state behind in wsproto, so one instance serves every broadcast.
_PLAIN_SERVER = FrameProtocol(client=False, extensions=[])


def plain_server_frame(message: str | bytes) -> bytes:
    """The frame of ``message`` from a server connection with no extension: one per broadcast."""
    return bytes(_PLAIN_SERVER.send_data(message))
