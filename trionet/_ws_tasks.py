"""The helper tasks of WebSocket connections, and the watch that starts their readers.

An idle WebSocket holds one task, its handler's, waiting in ``receive()``,
which reads the socket itself (see :mod:`trionet._ws_connection`). Other
tasks run for a connection only while there is work for them: a reader
while the application is away from ``receive()``, the writer of what
``broadcast()`` queued, the heartbeat, the close handshake of a server's
stop. This module runs them:

* :class:`Helpers`, a connection's helper tasks. They run as Trio system
  tasks, each in a cancel scope of its connection, and the connection's
  ``async with`` block cancels them and waits for them on its way out, so
  none outlives its connection, as in a nursery. Rejected: a nursery per
  connection (the former way): its cancel scope, two cancel statuses and
  three sets cost about 1.6 KiB per idle connection for tasks that rarely
  run. The price: a helper's failure cannot reach the block as an
  exception; it is logged (ERROR: our bug) and fails the connection (1011).
* :class:`AwayWatch`, one per Trio run: the connections whose application
  has been away from ``receive()`` for :data:`AWAY_INTERVAL` get a reader.
  Rejected: a timer per connection (Trio's timers are cancel scopes of a
  task that would have to wait: the task this saves); a watch per server
  (client connections need it too).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio

from ._ws_send import Waiters

__all__ = ["AWAY_INTERVAL", "AwayWatch", "Helpers", "away_watch"]

logger = logging.getLogger("trionet.ws.tasks")

#: Seconds an application may stay away from ``receive()`` before a reader
#: task reads for it: the latency of a Pong or of the close handshake while
#: the application is busy elsewhere (well under any heartbeat's timeout).
AWAY_INTERVAL = 0.1


class Helpers:
    """The helper tasks of one connection: started while it runs, all ended with it."""

    __slots__ = ("_ended", "_on_error", "_scopes", "closed")

    def __init__(self, on_error: Callable[[str, BaseException], None]) -> None:
        #: The cancel scope of each running helper (no list until the first).
        self._scopes: list[trio.CancelScope] | None = None
        self._ended = Waiters()
        #: Told a helper's exception (and the helper's name): the connection fails.
        self._on_error = on_error
        #: True once :meth:`aclose` began: nothing starts any more.
        self.closed = False

    def start(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: str) -> bool:
        """Start ``fn(*args)`` as a helper; False once the connection's block ended."""
        if self.closed:
            return False
        scope = trio.CancelScope()
        if self._scopes is None:
            self._scopes = []
        self._scopes.append(scope)
        trio.lowlevel.spawn_system_task(self._run, scope, fn, args, name, name=name)
        return True

    async def _run(
        self, scope: trio.CancelScope, fn: Callable[..., Awaitable[Any]], args: Any, name: str
    ) -> None:
        try:
            with scope:
                await fn(*args)
        except Exception as exc:  # a system task's exception would end the whole run
            self._on_error(name, exc)
        finally:
            scopes = self._scopes
            assert scopes is not None
            scopes.remove(scope)
            if not scopes:
                self._scopes = None
                self._ended.unpark_all()

    async def aclose(self) -> None:
        """Cancel the helpers and wait until they ended (a shielded wait: they end at once)."""
        self.closed = True
        with trio.CancelScope(shield=True):
            while self._scopes:
                for scope in self._scopes:
                    scope.cancel()
                await self._ended.park()


class Watched(Protocol):
    """What :class:`AwayWatch` needs of a connection."""

    #: The watch's tick when the application last left ``receive()``; -1
    #: while the connection is not in the watch's set.
    _away_since: int
    #: Whether the application is in ``receive()``: reading, or waiting for a message.
    _app_reading: bool
    _app_waiting: int

    def _start_reader(self) -> None: ...


class AwayWatch:
    """The connections whose application is away from ``receive()``, in one Trio run.

    A connection joins when its application leaves ``receive()`` (and at
    its start), noting the tick it left on, and stays in the set until the
    watch's next ticks find it back in ``receive()`` (dropped) or away for
    a whole interval (dropped, and given a reader). The watch's system task
    wakes every :data:`AWAY_INTERVAL` while the set is not empty; with
    nobody in it, it sleeps until someone joins. Per message this costs
    one store of the tick: a connection busy echoing stays in the set
    between ticks. (Before, it left the set on entering ``receive()`` and
    joined again on leaving: a set discard and add per message.)
    """

    __slots__ = ("_wake", "away", "epoch")

    def __init__(self) -> None:
        self.away: set[Watched] = set()
        #: Ticks of the watch so far; a connection notes the tick it left on.
        self.epoch = 0
        self._wake: trio.Event | None = None

    def leave(self, ws: Watched) -> None:
        """``ws``'s application left ``receive()``: read for it if it stays away."""
        if ws._away_since < 0:
            self.away.add(ws)
            if self._wake is not None:
                self._wake.set()
        ws._away_since = self.epoch

    def forget(self, ws: Watched) -> None:
        """``ws`` is closed: never read for again."""
        self.away.discard(ws)
        ws._away_since = -1

    async def run(self) -> None:
        away = self.away
        while True:
            if not away:
                self._wake = trio.Event()
                await self._wake.wait()
                self._wake = None
            await trio.sleep(AWAY_INTERVAL)
            self.epoch += 1
            back: list[Watched] = []
            due: list[Watched] = []
            for ws in away:
                if ws._app_reading or ws._app_waiting:
                    back.append(ws)  # in receive(): it joins again when it leaves
                elif ws._away_since < self.epoch - 1:
                    due.append(ws)
            for ws in back:
                self.forget(ws)
            for ws in due:
                self.forget(ws)
                try:
                    ws._start_reader()
                except Exception:  # a system task's exception would end the whole run
                    logger.exception("could not start the reader of %r", ws)


_AWAY_WATCH: trio.lowlevel.RunVar[AwayWatch] = trio.lowlevel.RunVar("trionet.ws.away")


def away_watch() -> AwayWatch:
    """This Trio run's :class:`AwayWatch`, started on first use."""
    try:
        return _AWAY_WATCH.get()
    except LookupError:
        watch = AwayWatch()
        _AWAY_WATCH.set(watch)
        trio.lowlevel.spawn_system_task(watch.run, name="trionet.ws.AwayWatch")
        return watch
