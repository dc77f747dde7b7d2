"""PoolState without sockets: worked examples, then its promises under any sequence.

The hypothesis machine at the end plays the agent's part: requests arrive for
two keys (some of them ``fresh``, the retry after a stale kept-alive
connection), tasks finish connecting or fail to, take or hand back what they
were given, get cancelled while queued or just after assignment, and the clock
runs so idle connections expire. After every step it checks what a user of
``Agent`` relies on:

- connections open to one key (connecting + busy + idle) <= ``max_sockets``,
  as Node's ``addRequest`` counts ``freeSockets`` with ``sockets``;
- all of them together <= ``max_total_sockets``;
- no connection is both idle and handed out, or handed out twice, and only
  idle connections are ever handed back to be closed;
- each key's requests are served in arrival order;
- nobody waits while there is room: a queued request means its key is full
  (or the total is, with nothing idle anywhere to evict), so every waiter is
  served once capacity frees (the ``drain`` rule proves it).
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from trionet._pool import PoolState, Slot, SlotState, Ticket

KEY = ("127.0.0.1:80", 0)
OTHER = ("127.0.0.1:81", 0)
KEYS: tuple[Hashable, ...] = (KEY, OTHER)


# -- worked examples -------------------------------------------------------------------------
def busy(pool: PoolState, key: Hashable = KEY, now: float = 0.0, conn: object = None) -> Slot:
    """Request a slot that is granted at once, and 'open' its connection."""
    ticket, _ = pool.request(key, now)
    assert ticket.slot is not None and ticket.slot.state is SlotState.CONNECTING
    pool.connected(ticket.slot, conn if conn is not None else object())
    return ticket.slot


def test_pool_caps_connections_per_key_and_queues_the_rest() -> None:
    pool = PoolState(max_sockets=2, max_free_sockets=256)
    busy(pool)
    busy(pool)
    waiting, _ = pool.request(KEY, 0.0)
    assert waiting.slot is None
    assert (pool.active_count(KEY), pool.queued_count(KEY)) == (2, 1)
    # Another key has its own cap.
    busy(pool, OTHER)
    assert pool.active_count(OTHER) == 1


def test_released_connection_goes_to_the_oldest_waiter_directly() -> None:
    pool = PoolState(max_sockets=1, max_free_sockets=256)
    slot = busy(pool)
    woken: list[str] = []
    first, _ = pool.request(KEY, 0.0)
    second, _ = pool.request(KEY, 0.0)
    first.wake = lambda: woken.append("first")
    second.wake = lambda: woken.append("second")
    pool.release(slot, 1.0, expires_at=10.0)
    assert first.slot is slot and second.slot is None and woken == ["first"]
    assert pool.idle_count(KEY) == 0 and pool.active_count(KEY) == 1
    assert slot.reused


def test_free_list_is_lifo_or_fifo() -> None:
    for lifo, expected in ((True, "b"), (False, "a")):
        pool = PoolState(max_sockets=2, max_free_sockets=256, lifo=lifo)
        a, b = busy(pool, conn="a"), busy(pool, conn="b")
        pool.release(a, 0.0, 10.0)
        pool.release(b, 0.0, 10.0)
        ticket, _ = pool.request(KEY, 1.0)
        assert ticket.slot is not None and ticket.slot.conn == expected


def test_idle_connections_expire_and_overflow_max_free_sockets() -> None:
    pool = PoolState(max_sockets=3, max_free_sockets=1)
    a, b = busy(pool, conn="a"), busy(pool, conn="b")
    pool.release(a, 0.0, expires_at=5.0)
    closing = pool.release(b, 0.0, expires_at=5.0)
    assert [s.conn for s in closing] == ["a"]  # over max_free_sockets: oldest closed
    ticket, closing = pool.request(KEY, now=6.0)  # "b" expired meanwhile
    assert [s.conn for s in closing] == ["b"]
    assert ticket.slot is not None and ticket.slot.state is SlotState.CONNECTING
    assert pool.total == 1


def test_max_total_sockets_closes_an_idle_connection_of_another_key() -> None:
    pool = PoolState(max_sockets=5, max_free_sockets=256, max_total_sockets=2)
    a, b = busy(pool, conn="a"), busy(pool, conn="b")
    waiting, _ = pool.request(OTHER, 0.0)
    assert waiting.slot is None  # total cap reached, nothing idle to evict
    closing = pool.release(a, 0.0, 10.0)
    # The freed connection of KEY was evicted so OTHER's waiter may connect.
    assert [s.conn for s in closing] == ["a"]
    assert waiting.slot is not None and waiting.slot.state is SlotState.CONNECTING
    assert pool.total == 2 and b is not None


def test_withdrawn_queued_ticket_leaves_the_queue_at_once() -> None:
    pool = PoolState(max_sockets=1, max_free_sockets=256)
    busy(pool)
    ticket, _ = pool.request(KEY, 0.0)
    assert pool.queued_count(KEY) == 1
    assert pool.withdraw(ticket, 0.0) == []
    assert pool.queued_count(KEY) == 0


def test_withdrawn_after_assignment_hands_the_connection_on() -> None:
    """The httpcore#1110 race: a connection assigned to a waiter that is being
    cancelled goes to the next waiter instead of being lost or double-booked."""
    pool = PoolState(max_sockets=1, max_free_sockets=256)
    slot = busy(pool, conn="c")
    cancelled, _ = pool.request(KEY, 0.0)
    patient, _ = pool.request(KEY, 0.0)
    pool.release(slot, 0.0, 10.0)
    assert cancelled.slot is slot
    pool.withdraw(cancelled, 0.0)
    assert patient.slot is slot and slot.state is SlotState.BUSY
    assert pool.active_count(KEY) == 1 and pool.idle_count(KEY) == 0


def test_withdrawn_connect_permission_is_returned() -> None:
    pool = PoolState(max_sockets=1, max_free_sockets=256)
    ticket, _ = pool.request(KEY, 0.0)
    assert ticket.slot is not None and ticket.slot.state is SlotState.CONNECTING
    pool.withdraw(ticket, 0.0)
    assert pool.active_count(KEY) == 0 and pool.total == 0


def test_fresh_ticket_skips_idle_connections() -> None:
    pool = PoolState(max_sockets=1, max_free_sockets=256)
    slot = busy(pool, conn="stale?")
    pool.release(slot, 0.0, 10.0)
    ticket, closing = pool.request(KEY, 0.0, fresh=True)
    # At the cap with only an idle connection: it is closed to make room.
    assert ticket.slot is not None and ticket.slot.state is SlotState.CONNECTING
    assert [s.conn for s in closing] == ["stale?"]
    assert pool.active_count(KEY) == 1 and pool.idle_count(KEY) == 0


def test_discard_gives_the_room_to_a_waiter() -> None:
    pool = PoolState(max_sockets=1, max_free_sockets=256)
    slot = busy(pool)
    waiting, _ = pool.request(KEY, 0.0)
    pool.discard(slot, 0.0)
    assert waiting.slot is not None and waiting.slot.state is SlotState.CONNECTING


def test_keys_with_nothing_left_are_forgotten() -> None:
    pool = PoolState(max_sockets=1, max_free_sockets=256)
    for port in range(200):
        slot = busy(pool, (f"h:{port}", 0))
        pool.discard(slot, 0.0)
    assert len(pool.keys) <= 65


def test_fresh_retry_at_the_head_of_the_queue_does_not_overshoot() -> None:
    """The issue's sequence: with max_sockets=1, a freed connection parked as idle
    for a fresh retry, then taken by the next waiter, made two connections."""
    pool = PoolState(max_sockets=1, max_free_sockets=256)
    ticket, _ = pool.request(KEY, 0.0)
    assert ticket.slot is not None
    pool.connected(ticket.slot, "old")
    retry, _ = pool.request(KEY, 0.0, fresh=True)
    waiter, _ = pool.request(KEY, 0.0)
    closing = pool.release(ticket.slot, 0.0, 10.0)
    # The room is full of the idle "old": it is closed so the retry may connect.
    assert [s.conn for s in closing] == ["old"]
    assert retry.slot is not None and retry.slot.state is SlotState.CONNECTING
    assert waiter.slot is None
    assert pool.active_count(KEY) + pool.idle_count(KEY) == 1


# -- any sequence: the hypothesis machine -----------------------------------------------------
class PoolMachine(RuleBasedStateMachine):
    """The agent's side of the pool, as a state machine hypothesis drives at random."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = PoolState(max_sockets=1, max_free_sockets=0)
        self.now = 0.0
        self.serial = itertools.count()
        #: Waiting tickets and the order each arrived in.
        self.queued: dict[Ticket, int] = {}
        #: Tickets the pool assigned a slot, not yet taken up by their task.
        self.assigned: list[Ticket] = []
        #: BUSY slots a task holds for its exchange.
        self.held: list[Slot] = []
        self.closed: set[Slot] = set()  # every slot handed back to close
        self.served: dict[Hashable, list[int]] = {key: [] for key in KEYS}

    @initialize(
        max_sockets=st.integers(1, 3),
        max_free_sockets=st.integers(0, 3),
        max_total_sockets=st.none() | st.integers(1, 5),
        lifo=st.booleans(),
    )
    def configure(
        self, max_sockets: int, max_free_sockets: int, max_total_sockets: int | None, lifo: bool
    ) -> None:
        self.pool = PoolState(max_sockets, max_free_sockets, max_total_sockets, lifo)

    # -- bookkeeping ---------------------------------------------------------------------
    def _closing(self, slots: list[Slot]) -> None:
        """The pool handed these back to close: only idle ones, each once."""
        for slot in slots:
            assert slot.state is SlotState.CLOSED, slot
            assert slot.conn is not None, "a connection being opened was closed"
            assert slot not in self.held, "a busy connection was closed"
            assert all(t.slot is not slot for t in self.assigned), "an assigned one was closed"
            assert slot not in self.closed, "closed twice"
            self.closed.add(slot)

    def _note_served(self) -> None:
        """Move tickets the pool assigned since the last step out of the queue."""
        for ticket, order in list(self.queued.items()):
            if ticket.slot is not None:
                del self.queued[ticket]
                self.assigned.append(ticket)
                self.served[ticket.key].append(order)

    def _conn(self) -> object:
        return f"conn{next(self.serial)}"

    # -- what the tasks do ---------------------------------------------------------------
    @rule(key=st.sampled_from(KEYS), fresh=st.booleans())
    def request(self, key: Hashable, fresh: bool) -> None:
        order = next(self.serial)
        ticket, closing = self.pool.request(key, self.now, fresh=fresh)
        self._closing(closing)
        if ticket.slot is None:
            self.queued[ticket] = order
        else:
            self.assigned.append(ticket)
            self.served[key].append(order)
            if fresh:
                assert ticket.slot.state is SlotState.CONNECTING
        self._note_served()

    @precondition(lambda self: self.assigned)
    @rule(data=st.data(), succeeds=st.booleans())
    def take_up(self, data: st.DataObject, succeeds: bool) -> None:
        """The task wakes with its slot: connect (or fail to), or use the connection."""
        ticket = data.draw(st.sampled_from(self.assigned))
        self.assigned.remove(ticket)
        slot = ticket.slot
        assert slot is not None
        if slot.state is SlotState.CONNECTING:
            assert not succeeds or slot.conn is None
            if succeeds:
                self.pool.connected(slot, self._conn())
                self.held.append(slot)
            else:
                self._closing(self.pool.discard(slot, self.now))
        else:
            assert slot.state is SlotState.BUSY and slot.conn is not None
            assert not ticket.fresh, "a fresh ticket got a used connection"
            if succeeds:
                self.held.append(slot)
            else:  # found closed by the server while idle (looks_alive)
                self._closing(self.pool.discard(slot, self.now))
        self._note_served()

    @precondition(lambda self: self.assigned or self.queued)
    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        """Cancelled while queued, or just after being assigned."""
        ticket = data.draw(st.sampled_from([*self.assigned, *self.queued]))
        if ticket in self.queued:
            del self.queued[ticket]
        else:
            self.assigned.remove(ticket)
        self._closing(self.pool.withdraw(ticket, self.now))
        self._note_served()

    @precondition(lambda self: self.held)
    @rule(data=st.data(), keep_for=st.floats(0.0, 5.0))
    def release(self, data: st.DataObject, keep_for: float) -> None:
        slot = data.draw(st.sampled_from(self.held))
        self.held.remove(slot)
        self._closing(self.pool.release(slot, self.now, self.now + keep_for))
        self._note_served()

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def discard(self, data: st.DataObject) -> None:
        slot = data.draw(st.sampled_from(self.held))
        self.held.remove(slot)
        self._closing(self.pool.discard(slot, self.now))
        self._note_served()

    @rule(seconds=st.floats(0.0, 3.0), prune=st.booleans())
    def tick(self, seconds: float, prune: bool) -> None:
        self.now += seconds
        if prune:
            self._closing(self.pool.prune(self.now))

    @rule()
    def close_idle(self) -> None:
        self._closing(self.pool.close_idle())

    @rule()
    def drain(self) -> None:
        """Every task finishes its exchange: every waiter is served in the end."""
        for _ in range(1000):
            if not (self.assigned or self.held):
                break
            for ticket in list(self.assigned):
                self.assigned.remove(ticket)
                slot = ticket.slot
                assert slot is not None
                if slot.state is SlotState.CONNECTING:
                    self.pool.connected(slot, self._conn())
                self.held.append(slot)
            for slot in list(self.held):
                self.held.remove(slot)
                self._closing(self.pool.release(slot, self.now, self.now + 1.0))
                self._note_served()
        assert not self.queued, f"left waiting: {list(self.queued.values())}"

    # -- what must hold after every step ------------------------------------------------
    @invariant()
    def open_connections_stay_within_the_caps(self) -> None:
        pool = self.pool
        in_use = [t.slot for t in self.assigned] + self.held
        idle = list(pool.idle_slots())
        assert len({id(s) for s in in_use + idle}) == len(in_use) + len(idle), (
            "a slot is both idle and handed out, or handed out twice"
        )
        assert all(s is not None and s.state is not SlotState.CLOSED for s in in_use)
        assert all(s.state is SlotState.IDLE for s in idle)
        for key in KEYS:
            busy = sum(1 for s in in_use if s is not None and s.key == key)
            free = sum(1 for s in idle if s.key == key)
            assert (pool.active_count(key), pool.idle_count(key)) == (busy, free)
            assert busy + free <= pool.max_sockets, (key, busy, free)
            assert free <= pool.max_free_sockets
        assert pool.total == len(in_use) + len(idle)
        if pool.max_total_sockets is not None:
            assert pool.total <= pool.max_total_sockets

    @invariant()
    def each_key_is_served_in_arrival_order(self) -> None:
        for order in self.served.values():
            assert order == sorted(order)

    @invariant()
    def nobody_waits_while_there_is_room(self) -> None:
        pool = self.pool
        idle_anywhere = any(True for _ in pool.idle_slots())
        total_full = pool.max_total_sockets is not None and pool.total >= pool.max_total_sockets
        for key in {t.key for t in self.queued}:
            assert pool.idle_count(key) == 0, "a waiter could take or evict an idle one"
            key_full = pool.active_count(key) >= pool.max_sockets
            assert key_full or (total_full and not idle_anywhere), key


TestPoolState = PoolMachine.TestCase
TestPoolState.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
