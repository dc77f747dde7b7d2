"""trionet.agent: the connection pool behind every client request, as Node's ``http.Agent``.

    agent = trionet.agent.Agent(max_sockets=5)
    res = await trionet.http.request("http://127.0.0.1:8000/", agent=agent)
    agent.sockets        # {"127.0.0.1:8000": 1}  busy connections (and connecting)
    agent.free_sockets   # {"127.0.0.1:8000": 1}  idle ones, kept for reuse
    agent.requests       # {"127.0.0.1:8000": 3}  requests waiting for a connection
    await agent.aclose()

Never more than ``max_sockets`` connections are open to one ``host:port`` (plus
TLS identity) at any instant: connecting, busy and idle together, as Node's
``Agent.addRequest`` counts ``freeSockets`` with ``sockets``
(https://github.com/nodejs/node/blob/v20.x/lib/_http_agent.js). Further
requests wait in FIFO order; a retry that needs a fresh connection while the
room is full of idle ones closes the oldest idle one, and the evicted
connection is closed before the new one is opened, so the server never sees
more than the cap either. Which request gets which
connection is decided by :class:`trionet._pool.PoolState`, pure state changes
without I/O; this module is the thin Trio layer around it: it opens and closes
connections and wakes waiting tasks.

Compared with Node: ``agent.sockets`` etc. hold counts, not socket lists; the
pool key adds the TLS identity (the ``ssl.SSLContext``) to ``host:port``, and
two pools of one name are summed in the dicts. A free connection that the
server closed is dropped before reuse (Node drops it on its 'end' event); one
that the server closes while our request is on the way is retried once on a new
connection for idempotent methods (Node leaves that to ``reusedSocket``).

What the agent knows of connections is :class:`PooledConnection` (alive?
close, which run and which opening it belongs to, the server's keep-alive
hint) and of their destination :class:`PoolOrigin` (a pool key and a name);
the caller brings the function that opens one (``acquire(origin,
opener=...)``). So this module imports nothing of :mod:`trionet.http`, which
builds on it: the pool sits below the protocols that use it. Rejected: an
agent constructed with its opener (``Agent(max_sockets=5)`` is what users
write, and one agent serves ``http`` and ``https`` alike), and a registry the
HTTP package fills in at import time (a hidden dependency, in reverse).

Lifetime: an agent may outlive a ``trio.run`` (``trionet.http.global_agent``
does); connections left from an earlier run are closed when the next run first
uses the agent.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Hashable
from typing import Literal, Protocol, TypeVar

import trio

from ._errors import PoolTimeout
from ._pool import PoolState, Slot, SlotState, Ticket

__all__ = [
    "DEFAULT_KEEP_ALIVE_TIMEOUT",
    "KEEP_ALIVE_MARGIN",
    "Agent",
    "PoolOrigin",
    "PooledConnection",
]

#: How long an idle connection is kept without a server hint: Node's
#: ``globalAgent`` ``timeout`` (5 s), and httpx's ``keepalive_expiry``.
DEFAULT_KEEP_ALIVE_TIMEOUT = 5.0

#: Stop reusing a connection this long before the server's ``Keep-Alive:
#: timeout=N`` runs out (Node's ``agentKeepAliveTimeoutBuffer``, 1 s), so our
#: request and the server's close do not cross on the wire.
KEEP_ALIVE_MARGIN = 1.0


class PoolOrigin(Protocol):
    """Where a pooled connection goes, as the agent sees it."""

    @property
    def key(self) -> tuple[str, Hashable]:
        """The pool key: ``(name, TLS identity)``; connections are shared within one key."""
        ...

    @property
    def name(self) -> str:
        """``"host:port"`` (or ``"unix:PATH"``), for messages."""
        ...


class PooledConnection(Protocol):
    """What the agent needs of a connection: no more, so it never reaches into one."""

    #: The agent's run generation the connection was opened in (set by the
    #: agent; Trio sockets cannot cross ``trio.run`` calls).
    generation: int
    #: The agent's count of connections opened when this one was (set by the
    #: agent; ``aclose()`` retires those up to it).
    serial: int

    @property
    def keep_alive_hint(self) -> float | None:
        """Seconds from the server's ``Keep-Alive: timeout=N``, if it sent one."""
        ...

    def looks_alive(self) -> bool:
        """False when an idle connection was closed by the server (no waiting)."""
        ...

    def close(self) -> None:
        """Close at once, without waiting; safe to repeat."""
        ...

    def close_foreign(self) -> None:
        """Close a connection left from another ``trio.run`` (no Trio calls)."""
        ...


_Origin = TypeVar("_Origin", bound=PoolOrigin)


class Agent:
    """A pool of keep-alive connections, capped per ``host:port``.

    Args:
      max_sockets: connections open per host:port at any instant: connecting,
        busy and idle together (Node's ``maxSockets``).
      keep_alive: keep finished connections for reuse; False closes each after
        its response and sends ``Connection: close``.
      max_free_sockets: idle connections kept per host:port (they count
        against ``max_sockets`` too, so more than that has no effect).
      keep_alive_timeout: seconds an idle connection is kept; a shorter
        ``Keep-Alive: timeout=N`` from the server, minus one second, wins.
      max_total_sockets: cap over all hosts (idle connections included); an
        idle connection of another host is closed to make room.
      scheduling: ``"lifo"`` reuses the most recently used connection (fewer
        connections stay warm), ``"fifo"`` the oldest (spreads the load).
      pool_timeout: seconds a request may wait for a connection before
        :class:`trionet.PoolTimeout`; None waits as long as it takes (Node).
      ssl_context: the context for ``https`` requests that bring none; default
        ``ssl.create_default_context()``.
    """

    def __init__(
        self,
        max_sockets: int = 5,
        *,
        keep_alive: bool = True,
        max_free_sockets: int = 256,
        keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT,
        max_total_sockets: int | None = None,
        scheduling: Literal["lifo", "fifo"] = "lifo",
        pool_timeout: float | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if scheduling not in ("lifo", "fifo"):
            raise ValueError(f"scheduling must be 'lifo' or 'fifo', not {scheduling!r}")
        self.max_sockets = max_sockets
        self.keep_alive = keep_alive
        self.max_free_sockets = max_free_sockets
        self.keep_alive_timeout = keep_alive_timeout
        self.max_total_sockets = max_total_sockets
        self.scheduling = scheduling
        self.pool_timeout = pool_timeout
        self.ssl_context = ssl_context
        self._state = self._new_state()
        self._token: trio.lowlevel.TrioToken | None = None
        self._generation = 0
        self._opened = 0  # connections opened so far
        self._retired = 0  # those opened before the last aclose() are not reused

    # -- introspection (Node's names) ---------------------------------------------
    @property
    def sockets(self) -> dict[str, int]:
        """``"host:port"`` -> connections in use or being opened."""
        return self._counts(self._state.active_count)

    @property
    def free_sockets(self) -> dict[str, int]:
        """``"host:port"`` -> idle connections kept for reuse (expired ones dropped first)."""
        if self._token is not None and self._in_own_run():
            _close_slots(self._state.prune(trio.current_time()))
        return self._counts(self._state.idle_count)

    @property
    def requests(self) -> dict[str, int]:
        """``"host:port"`` -> requests waiting for a connection."""
        return self._counts(self._state.queued_count)

    def __repr__(self) -> str:
        hosts = [
            f"{name}: {busy} busy, {self.free_sockets.get(name, 0)} free, "
            f"{self.requests.get(name, 0)} queued"
            for name, busy in self._all_counts().items()
        ]
        return (
            f"<trionet.agent.Agent max_sockets={self.max_sockets} "
            f"keep_alive={self.keep_alive} [{'; '.join(hosts)}]>"
        )

    def _counts(self, count: Callable[[Hashable], int]) -> dict[str, int]:
        result: dict[str, int] = {}
        for key in self._state.keys:
            n = count(key)
            if n:
                name = _name_of(key)
                result[name] = result.get(name, 0) + n
        return result

    def _all_counts(self) -> dict[str, int]:
        result: dict[str, int] = {}
        for key in self._state.keys:
            name = _name_of(key)
            result[name] = result.get(name, 0) + self._state.active_count(key)
        return result

    # -- the Trio layer ------------------------------------------------------------
    async def acquire(
        self,
        origin: _Origin,
        *,
        opener: Callable[[_Origin], Awaitable[PooledConnection]],
        fresh: bool = False,
    ) -> Slot:
        """A BUSY slot with an open connection to ``origin``, waiting for room if needed.

        The slot's ``conn`` is an idle connection of ``origin``'s key, or a
        new one from ``await opener(origin)`` when there is room and none is
        idle (the HTTP client passes its ``open_connection``). ``fresh=True``
        insists on a new connection (the retry after a stale one). Give the
        slot back with :meth:`release` or :meth:`discard`.

        Raises:
          PoolTimeout: no connection within ``pool_timeout``.
          ConnectError, TLSError: whatever ``opener`` raises (the HTTP
            client's: the server could not be reached, the handshake failed).
        """
        self._check_run()
        key = origin.key
        state = self._state
        while True:
            ticket, closing = state.request(key, trio.current_time(), fresh=fresh)
            if closing:
                _close_slots(closing)
            if ticket.slot is None:
                await self._wait(ticket, origin)
            slot = ticket.slot
            assert slot is not None
            if slot.state is SlotState.CONNECTING:
                await self._connect(slot, origin, opener)
                return slot
            conn: PooledConnection = slot.conn
            if not slot.was_idle or conn.looks_alive():
                return slot
            # The server closed it while it sat idle: drop it and ask again.
            conn.close()
            _close_slots(state.discard(slot, trio.current_time()))

    async def _wait(self, ticket: Ticket, origin: PoolOrigin) -> None:
        """Wait in the queue until the pool assigns ``ticket`` a slot."""
        assigned = trio.Event()
        ticket.wake = assigned.set
        try:
            if self.pool_timeout is None:
                await assigned.wait()
                return
            with trio.move_on_after(self.pool_timeout):
                await assigned.wait()
            if ticket.slot is None:
                queued = self._state.queued_count(ticket.key)
                raise PoolTimeout(
                    f"no connection to {origin.name} within {self.pool_timeout}s "
                    f"(max_sockets={self.max_sockets}, {queued} requests queued)"
                )
        except BaseException:
            # Cancelled, timed out, or assigned a slot at the very moment we
            # were cancelled: either way, hand everything back now.
            _close_slots(self._state.withdraw(ticket, trio.current_time()))
            raise

    async def _connect(
        self,
        slot: Slot,
        origin: _Origin,
        opener: Callable[[_Origin], Awaitable[PooledConnection]],
    ) -> None:
        generation = self._generation
        try:
            conn = await opener(origin)
        except BaseException:
            _close_slots(self._state.discard(slot, trio.current_time()))
            raise
        self._opened += 1
        conn.generation = generation
        conn.serial = self._opened
        self._state.connected(slot, conn)

    def release(self, slot: Slot) -> None:
        """Return a connection whose response was read to the end, for reuse."""
        conn: PooledConnection = slot.conn
        if conn.generation != self._generation or slot.state is not SlotState.BUSY:
            conn.close()
            return
        now = trio.current_time()
        expires_at = now + self.keep_alive_timeout
        hint = conn.keep_alive_hint
        if hint is not None:
            expires_at = min(expires_at, now + hint - KEEP_ALIVE_MARGIN)
        if not self.keep_alive or expires_at <= now or conn.serial <= self._retired:
            self.discard(slot)
            return
        closing = self._state.release(slot, now, expires_at)
        if closing:
            _close_slots(closing)

    def discard(self, slot: Slot) -> None:
        """Close a connection that must not be reused and free its room."""
        conn: PooledConnection | None = slot.conn
        if conn is not None:
            conn.close()
        if conn is not None and conn.generation != self._generation:
            return
        _close_slots(self._state.discard(slot, trio.current_time()))

    async def aclose(self) -> None:
        """Close the idle connections now; busy ones close when their response ends.

        The agent stays usable, as Node's after ``destroy()``: a later request
        opens new connections.
        """
        self._retired = self._opened
        if self._token is not None and self._in_own_run():
            _close_slots(self._state.close_idle())
        await trio.lowlevel.checkpoint()

    # -- runs ------------------------------------------------------------------------
    def _in_own_run(self) -> bool:
        try:
            return trio.lowlevel.current_trio_token() is self._token
        except RuntimeError:
            return False

    def _check_run(self) -> None:
        """Start afresh when used from a new ``trio.run``: old sockets are unusable."""
        token = trio.lowlevel.current_trio_token()
        if token is self._token:
            return
        for slot in self._state.close_idle():
            slot.conn.close_foreign()
        self._token = token
        self._generation += 1
        self._state = self._new_state()

    def _new_state(self) -> PoolState:
        lifo = self.scheduling == "lifo"
        return PoolState(self.max_sockets, self.max_free_sockets, self.max_total_sockets, lifo)


def _name_of(key: object) -> str:
    """The ``"host:port"`` of a pool key (:attr:`PoolOrigin.key` is ``(name, TLS identity)``)."""
    assert isinstance(key, tuple)
    return str(key[0])


def _close_slots(slots: list[Slot]) -> None:
    for slot in slots:
        if slot.conn is not None:
            slot.conn.close()
