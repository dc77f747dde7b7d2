"""Pool assignment as pure state changes: which request gets which connection.

Nothing here does I/O or knows about Trio. :class:`PoolState` is the whole
bookkeeping of an :class:`~trionet.agent.Agent`; every change is one
synchronous method call, so a connection is never "idle" and "assigned" at the
same time (the race behind encode/httpcore#1110), and a cancelled waiter can
always hand back whatever it was given (encode/httpcore#550). The methods that
drop connections return them, and the caller closes them; the I/O layer stays
outside, as in httpcore's ``_assign_requests_to_connections``.

Vocabulary (Node's): a *key* is one origin (``"host:port"`` plus the TLS
identity); a *slot* is one connection, counted against ``max_sockets`` from the
moment we decide to open it until it is closed; a *ticket* is one request
asking for a slot.

Rules, per key:

- at most ``max_sockets`` slots open at any instant: CONNECTING, BUSY and IDLE
  together. Node's ``Agent.addRequest`` counts ``freeSockets[name].length +
  sockets[name].length`` against ``maxSockets`` (lib/_http_agent.js,
  https://github.com/nodejs/node/blob/v20.x/lib/_http_agent.js). Counting only
  the busy ones (as before) let a key hold a free list on top of
  ``max_sockets`` busy connections: more than a server sized for the client's
  cap expects;
- tickets that cannot be served wait in FIFO order (Node's ``agent.requests``);
- a freed connection goes straight to the oldest waiter, else to the free list
  (Node's ``agent.freeSockets``), which hands out the newest (``lifo``) or the
  oldest (``fifo``) connection and holds at most ``max_free_sockets``;
- a *fresh* ticket (the retry after a stale kept-alive connection) never takes
  an idle connection; when the room is full and some of it is idle, the oldest
  idle connection is closed to make room, else the ticket waits its turn.
  Rejected: handing the freed connection past a fresh ticket at the head of the
  queue to the next waiter (breaks FIFO), and letting the fresh ticket connect
  beyond the cap (the overshoot this rule replaces);
- ``max_total_sockets`` caps all slots of all keys, idle ones included; an idle
  connection of another key is closed to make room for a waiter.

Closing never happens here: the transitions return the slots to close, and the
caller closes them before it opens the connection that takes their room, so a
server counting its connections never sees more than the cap either.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from typing import Any

__all__ = ["PoolState", "Slot", "SlotState", "Ticket"]

#: Past this many keys, keys left empty are forgotten when a new one arrives,
#: so a client talking to many hosts does not grow the pool without end.
SWEEP_HOSTS_ABOVE = 64


class SlotState(enum.Enum):
    """Where one connection is in its life."""

    #: The ticket holder may open the connection; it counts against the limits already.
    CONNECTING = "connecting"
    #: Carrying one request/response exchange.
    BUSY = "busy"
    #: In the free list, waiting to be reused.
    IDLE = "idle"
    #: Gone: failed to open, closed by either side, expired or evicted.
    CLOSED = "closed"


class Slot:
    """One connection's place in the pool; ``conn`` is whatever the I/O layer put there."""

    __slots__ = ("conn", "expires_at", "key", "reused", "state", "was_idle")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.state = SlotState.CONNECTING
        self.conn: Any = None
        #: When an idle connection must no longer be handed out (pool clock).
        self.expires_at = float("inf")
        #: True once the connection carried a request before (Node's ``reusedSocket``).
        self.reused = False
        #: True when the slot was last handed out from the free list (where the
        #: server may have closed it), False when passed straight from one
        #: request to the next.
        self.was_idle = False

    def __repr__(self) -> str:
        return f"<Slot {self.key!r} {self.state.value}>"


class Ticket:
    """One request's claim on a slot.

    ``slot`` is None while the ticket waits in the queue. Once assigned, the
    slot is BUSY (reuse ``slot.conn``) or CONNECTING (open a connection, then
    call :meth:`PoolState.connected`). ``wake`` is called on assignment of a
    queued ticket; the I/O layer uses it to wake the waiting task.
    """

    __slots__ = ("fresh", "key", "slot", "wake")

    def __init__(self, key: Hashable, fresh: bool) -> None:
        self.key = key
        #: Only a new connection will do (the retry after a stale reused one).
        self.fresh = fresh
        self.slot: Slot | None = None
        self.wake: Callable[[], None] | None = None


class _Host:
    """The per-key part of the state."""

    __slots__ = ("active", "idle", "queue")

    def __init__(self) -> None:
        self.active = 0  # CONNECTING + BUSY slots
        self.idle: deque[Slot] = deque()  # oldest first
        self.queue: deque[Ticket] = deque()  # oldest first


class PoolState:
    """The agent's bookkeeping: slots per key, free lists and wait queues.

    Args:
      max_sockets: open slots allowed per key (CONNECTING, BUSY and IDLE).
      max_free_sockets: idle connections kept per key.
      max_total_sockets: all slots of all keys together (None: no cap).
      lifo: reuse the most recently freed connection (True) or the oldest.
    """

    def __init__(
        self,
        max_sockets: int,
        max_free_sockets: int,
        max_total_sockets: int | None = None,
        lifo: bool = True,
    ) -> None:
        if max_sockets < 1:
            raise ValueError(f"max_sockets must be at least 1, not {max_sockets}")
        if max_total_sockets is not None and max_total_sockets < 1:
            raise ValueError(f"max_total_sockets must be at least 1, not {max_total_sockets}")
        self.max_sockets = max_sockets
        self.max_free_sockets = max_free_sockets
        self.max_total_sockets = max_total_sockets
        self.lifo = lifo
        self.total = 0  # slots of every key and state but CLOSED
        self._hosts: dict[Hashable, _Host] = {}

    # -- queries -------------------------------------------------------------
    def active_count(self, key: Hashable) -> int:
        host = self._hosts.get(key)
        return host.active if host else 0

    def idle_count(self, key: Hashable) -> int:
        host = self._hosts.get(key)
        return len(host.idle) if host else 0

    def queued_count(self, key: Hashable) -> int:
        host = self._hosts.get(key)
        return len(host.queue) if host else 0

    @property
    def keys(self) -> list[Hashable]:
        """Every key the pool has seen."""
        return list(self._hosts)

    def idle_slots(self) -> Iterator[Slot]:
        for host in self._hosts.values():
            yield from host.idle

    # -- transitions -----------------------------------------------------------
    def request(
        self, key: Hashable, now: float, *, fresh: bool = False
    ) -> tuple[Ticket, list[Slot]]:
        """A request for ``key`` arrives: assign it at once, or queue it.

        Returns the ticket and the slots to close (expired or evicted).
        """
        host = self._hosts.get(key)
        if host is None:
            if len(self._hosts) >= SWEEP_HOSTS_ABOVE:
                self._sweep()
            host = self._hosts[key] = _Host()
        ticket = Ticket(key, fresh)
        closing = self._expire(host, now)
        # Waiters that came first are served first.
        if host.queue or not self._try_assign(ticket, host, now, closing):
            host.queue.append(ticket)
        return ticket, closing

    def connected(self, slot: Slot, conn: Any) -> None:
        """The connection for a CONNECTING slot is open: the slot is BUSY with it."""
        assert slot.state is SlotState.CONNECTING, slot
        slot.state = SlotState.BUSY
        slot.conn = conn

    def release(self, slot: Slot, now: float, expires_at: float) -> list[Slot]:
        """A BUSY connection finished its exchange and may be reused until ``expires_at``.

        It goes to the oldest waiter of its key, else to the free list; a fresh
        ticket at the head of the queue cannot take a used connection, so then
        it goes to the free list too, and the oldest idle one of the full room
        is closed for that ticket to connect. Returns the slots to close.
        """
        assert slot.state is SlotState.BUSY, slot
        host = self._hosts[slot.key]
        slot.reused = True
        slot.expires_at = expires_at
        queue = host.queue
        if queue and not queue[0].fresh:
            ticket = queue.popleft()
            slot.was_idle = False
            ticket.slot = slot
            if ticket.wake is not None:
                ticket.wake()
            return []
        closing: list[Slot] = []
        host.active -= 1
        slot.state = SlotState.IDLE
        slot.was_idle = True
        host.idle.append(slot)
        if len(host.idle) > self.max_free_sockets:
            closing.append(self._drop_idle(host, host.idle.popleft()))
        self._assign_waiters(now, closing)
        return closing

    def discard(self, slot: Slot, now: float) -> list[Slot]:
        """A CONNECTING or BUSY slot is gone (failed, closed, not reusable).

        Its room goes to waiters. Returns the slots to close (not ``slot``:
        the caller closes its own connection).
        """
        if slot.state is SlotState.CLOSED:
            return []
        assert slot.state in (SlotState.CONNECTING, SlotState.BUSY), slot
        host = self._hosts[slot.key]
        host.active -= 1
        self.total -= 1
        slot.state = SlotState.CLOSED
        closing: list[Slot] = []
        self._assign_waiters(now, closing)
        return closing

    def withdraw(self, ticket: Ticket, now: float) -> list[Slot]:
        """The ticket's request is cancelled or timed out, queued or just assigned.

        A queued ticket leaves the queue; a ticket that was assigned while its
        task was being cancelled gives its slot back (a reused connection goes
        on to the next waiter or the free list, a connect permission is
        returned). Returns the slots to close.
        """
        slot = ticket.slot
        if slot is None:
            host = self._hosts.get(ticket.key)
            if host is not None and ticket in host.queue:
                host.queue.remove(ticket)
            return []
        ticket.slot = None
        if slot.state is SlotState.BUSY and slot.conn is not None:
            return self.release(slot, now, slot.expires_at)
        return self.discard(slot, now)

    def close_idle(self) -> list[Slot]:
        """Take every idle connection out of the pool (``agent.aclose``)."""
        closing: list[Slot] = []
        for host in self._hosts.values():
            while host.idle:
                closing.append(self._drop_idle(host, host.idle.popleft()))
        return closing

    def prune(self, now: float) -> list[Slot]:
        """Drop expired idle connections of every key; returns them to close."""
        closing: list[Slot] = []
        for host in self._hosts.values():
            closing.extend(self._expire(host, now))
        self._sweep()
        return closing

    def _sweep(self) -> None:
        """Forget keys with nothing open, idle or queued (many hosts, or many TLS contexts)."""
        for key in [k for k, h in self._hosts.items() if not (h.active or h.idle or h.queue)]:
            del self._hosts[key]

    # -- internals ---------------------------------------------------------------
    def _try_assign(self, ticket: Ticket, host: _Host, now: float, closing: list[Slot]) -> bool:
        """Give ``ticket`` an idle connection or room to connect, if the limits allow."""
        if not ticket.fresh:
            slot = self._take_idle(host, now, closing)
            if slot is not None:
                slot.state = SlotState.BUSY
                host.active += 1
                ticket.slot = slot
                return True
        # Room for a new connection: idle ones count (Node's addRequest). Here
        # any idle one left means a fresh ticket; the oldest makes room for it.
        if host.active >= self.max_sockets:
            return False
        if host.active + len(host.idle) >= self.max_sockets:
            closing.append(self._drop_idle(host, host.idle.popleft()))
        if not self._total_has_room(host, closing):
            return False
        host.active += 1
        self.total += 1
        ticket.slot = Slot(ticket.key)
        return True

    def _take_idle(self, host: _Host, now: float, closing: list[Slot]) -> Slot | None:
        idle = host.idle
        while idle:
            slot = idle.pop() if self.lifo else idle.popleft()
            if slot.expires_at > now:
                return slot
            closing.append(self._drop_idle(host, slot))
        return None

    def _total_has_room(self, host: _Host, closing: list[Slot]) -> bool:
        """Below ``max_total_sockets``, closing an idle connection if that makes room."""
        if self.max_total_sockets is None or self.total < self.max_total_sockets:
            return True
        # Evict the oldest idle connection, this key's own first (a fresh
        # ticket may be blocked only by its own stale-looking free list).
        victim_host = host if host.idle else next((h for h in self._hosts.values() if h.idle), None)
        if victim_host is None:
            return False
        closing.append(self._drop_idle(victim_host, victim_host.idle.popleft()))
        return True

    def _drop_idle(self, host: _Host, slot: Slot) -> Slot:
        slot.state = SlotState.CLOSED
        self.total -= 1
        return slot

    def _expire(self, host: _Host, now: float) -> list[Slot]:
        closing: list[Slot] = []
        idle = host.idle
        while idle and idle[0].expires_at <= now:
            closing.append(self._drop_idle(host, idle.popleft()))
        return closing

    def _assign_waiters(self, now: float, closing: list[Slot]) -> None:
        """Serve queued tickets, oldest first within each key, while the limits allow."""
        for host in self._hosts.values():
            queue = host.queue
            while queue and self._try_assign(queue[0], host, now, closing):
                ticket = queue.popleft()
                if ticket.wake is not None:
                    ticket.wake()
