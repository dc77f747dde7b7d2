"""The cluster supervisor as pure state changes: events in, actions out.

Nothing here does I/O, reads a clock or knows about Trio (the house style of
``trionet._pool``): the primary feeds each event (a worker spawned, ready or
exited; a signal; a timer) with the time, and performs the actions returned
(spawn a worker, signal one, log, exit). So every rule below has a unit test
without processes (tests/test_cluster_state.py).

Rules:

- ``target`` workers are kept running. One that *dies* (a non-zero status
  or a signal) is replaced, the first time at once, then after a delay that
  doubles from :data:`BACKOFF_FIRST` to :data:`BACKOFF_MAX` while workers keep
  dying young (younger than :data:`STABLE_AFTER`), so a worker that cannot
  start is not re-spawned in a tight loop; each death is logged with its
  status or signal name. A worker that *exits 0* on its own ended its work
  (its ``main`` returned, or someone stopped it): it is not replaced, and the
  primary ends with status 0 once no worker is left. Node's cluster replaces
  nothing (the program listens for 'exit'); gunicorn and systemd's
  ``Restart=on-failure`` replace the failures, as here.
- SIGHUP: a rolling restart. Every worker there is is marked *old*; one at a
  time, a new worker is spawned beside them (``target + 1``), and once it is
  ready (it holds its listeners) the oldest old worker gets SIGTERM; the next
  new one is spawned only after that one has exited. The listening sockets
  are the primary's, so connections that arrive meanwhile wait in the shared
  queue for whichever worker accepts first: none is lost.
- SIGTTIN / SIGTTOU: one worker more / fewer (gunicorn's signals), never
  below one; the oldest worker goes (gunicorn's choice).
- SIGTERM / SIGINT: the primary closes its copies of the listening sockets
  (:class:`StopListening`) and every worker gets SIGTERM (each then stops gracefully
  within its own shutdown timeout); the primary exits 0 when all exited 0
  (or were killed by that SIGTERM while starting, before their handler was
  there), else 1. A second signal is passed on (each worker then cuts short).
- A worker told to stop that is still there :data:`KILL_GRACE` seconds after
  its shutdown timeout gets SIGKILL.
"""

from __future__ import annotations

import enum
import logging
import math
import signal
from dataclasses import dataclass

__all__ = [
    "BACKOFF_FIRST",
    "BACKOFF_MAX",
    "KILL_GRACE",
    "STABLE_AFTER",
    "Action",
    "Exit",
    "Log",
    "Phase",
    "Signal",
    "Spawn",
    "StopListening",
    "Supervisor",
    "describe_exit",
    "restart_delay",
]

#: The second restart in a row waits this long (systemd's ``RestartSec=`` default, 100 ms).
BACKOFF_FIRST = 0.1
#: ... doubling each time up to this (systemd's ``RestartMaxDelaySec=`` has no
#: default; 10 s keeps a broken deploy from hammering while noticing a fix soon).
BACKOFF_MAX = 10.0
#: A worker that lived this long before dying resets the backoff (systemd's
#: ``StartLimitIntervalSec=`` default, 10 s: a window of "dying young").
STABLE_AFTER = 10.0
#: Seconds past its shutdown timeout a stopping worker gets before SIGKILL (it
#: cancels what is left at the timeout; this is for one that hangs anyway).
KILL_GRACE = 5.0
#: The shutdown timeout each worker gets (trionet.run's default, and gunicorn's
#: ``graceful_timeout``: 30 s).
SHUTDOWN_TIMEOUT = 30.0


class Phase(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    #: Sent SIGTERM; waiting for it to exit.
    RETIRING = "retiring"


@dataclass
class _Worker:
    id: int
    phase: Phase
    started_at: float
    #: To be replaced by the rolling restart under way.
    old: bool = False
    #: RETIRING: when it gets SIGKILL.
    deadline: float = math.inf
    killed: bool = False


@dataclass(frozen=True)
class Spawn:
    """Start worker ``worker_id`` (ids are never reused, as Node's ``worker.id``)."""

    worker_id: int


@dataclass(frozen=True)
class Signal:
    worker_id: int
    signum: int


@dataclass(frozen=True)
class Log:
    level: int
    message: str


@dataclass(frozen=True)
class Exit:
    """Every worker is gone: close the listeners and exit with ``code``."""

    code: int


@dataclass(frozen=True)
class StopListening:
    """The cluster stops: close the primary's listening sockets (and Unix socket files).

    The workers close their copies as they stop, so the last one out closes
    the socket itself: connections that arrive after that are refused at once
    (or find no socket file), instead of waiting in a queue nobody accepts
    from until the primary exits and resets them.
    """


Action = Spawn | Signal | Log | StopListening | Exit


def describe_exit(returncode: int) -> str:
    """``exited with status 1`` or ``killed by SIGKILL`` (a Popen-style return code)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with status {returncode}"


def restart_delay(streak: int, first: float = BACKOFF_FIRST, cap: float = BACKOFF_MAX) -> float:
    """Seconds before the ``streak``-th restart in a row: 0, then ``first`` doubling to ``cap``."""
    if streak <= 1:
        return 0.0
    return float(min(cap, first * 2.0 ** (streak - 2)))


class Supervisor:
    """The primary's bookkeeping; every method takes the time and returns actions."""

    def __init__(
        self,
        workers: int,
        *,
        shutdown_timeout: float | None = SHUTDOWN_TIMEOUT,
        kill_grace: float = KILL_GRACE,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
        stable_after: float = STABLE_AFTER,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.target = workers
        self.shutdown_timeout = shutdown_timeout
        self.kill_grace = kill_grace
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self._workers: dict[int, _Worker] = {}
        #: When each spawn that is owed (a restart after a backoff) is due.
        self._pending: list[float] = []
        self._streak = 0
        self._next_id = 1
        self.stopping = False
        self._unclean = False
        self.done = False

    # -- reading ------------------------------------------------------------------
    def phase(self, worker_id: int) -> Phase | None:
        worker = self._workers.get(worker_id)
        return None if worker is None else worker.phase

    @property
    def worker_ids(self) -> list[int]:
        """Every worker still there, oldest first, stopping ones included."""
        return sorted(self._workers)

    def next_deadline(self) -> float | None:
        """When :meth:`tick` has something to do (None: only on the next event)."""
        times = list(self._pending)
        times += [w.deadline for w in self._workers.values() if not w.killed]
        finite = [t for t in times if t != math.inf]
        return min(finite) if finite else None

    # -- events -------------------------------------------------------------------
    def start(self, now: float) -> list[Action]:
        return self._reconcile(now)

    def ready(self, worker_id: int, now: float) -> list[Action]:
        """The worker holds its listeners (or said ``cluster.ready()``)."""
        worker = self._workers.get(worker_id)
        if worker is None or worker.phase is not Phase.STARTING:
            return []
        worker.phase = Phase.READY
        return self._reconcile(now)

    def exited(self, worker_id: int, returncode: int, now: float) -> list[Action]:
        worker = self._workers.pop(worker_id, None)
        if worker is None:
            return []
        actions: list[Action] = []
        how = describe_exit(returncode)
        if worker.phase is Phase.RETIRING:
            if returncode == 0:
                actions.append(Log(logging.INFO, f"worker {worker_id} stopped"))
            elif returncode == -signal.SIGTERM and not worker.killed:
                # Our SIGTERM reached it before its handler was installed (it was
                # starting): it stopped as asked, with nothing in flight.
                actions.append(Log(logging.INFO, f"worker {worker_id} stopped while starting"))
            else:
                if self.stopping:
                    self._unclean = True
                actions.append(Log(logging.WARNING, f"worker {worker_id} {how} while stopping"))
        elif returncode == 0:
            # Its main returned (or it was stopped by someone else): done, not dead.
            self.target = max(0, self.target - 1)
            actions.append(Log(logging.INFO, f"worker {worker_id} {how}; not replaced"))
        else:
            lived = now - worker.started_at
            if lived >= self.stable_after:
                self._streak = 0
            self._streak += 1
            delay = restart_delay(self._streak, self.backoff_first, self.backoff_max)
            self._pending.append(now + delay)
            when = "now" if delay == 0 else f"in {delay:g}s"
            message = f"worker {worker_id} {how} after {lived:.1f}s; restarting {when}"
            actions.append(Log(logging.WARNING, message))
        return actions + self._reconcile(now)

    def signal(self, signum: int, now: float) -> list[Action]:
        """SIGHUP, SIGTTIN, SIGTTOU, SIGTERM or SIGINT reached the primary."""
        name = signal.Signals(signum).name
        actions: list[Action] = []
        if signum in (signal.SIGTERM, signal.SIGINT):
            if self.stopping:
                actions.append(Log(logging.INFO, f"{name} again: workers stop at once"))
                actions += [Signal(w, signal.SIGTERM) for w in sorted(self._workers)]
                return actions
            self.stopping = True
            self._pending.clear()
            actions.append(Log(logging.INFO, f"{name}: stopping {len(self._workers)} workers"))
            actions.append(StopListening())
        elif self.stopping:
            return []
        elif signum == signal.SIGHUP:
            active = self._active()
            for worker in active:
                worker.old = True
            message = f"SIGHUP: replacing {len(active)} workers one at a time"
            actions.append(Log(logging.INFO, message))
        elif signum == signal.SIGTTIN:
            self.target += 1
            actions.append(Log(logging.INFO, f"SIGTTIN: {self.target} workers"))
        elif signum == signal.SIGTTOU:
            if self.target <= 1:
                return [Log(logging.INFO, "SIGTTOU: already at 1 worker")]
            self.target -= 1
            actions.append(Log(logging.INFO, f"SIGTTOU: {self.target} workers"))
        else:
            return []
        return actions + self._reconcile(now)

    def tick(self, now: float) -> list[Action]:
        """Time passed: owed spawns come due, stopping workers overstay."""
        actions: list[Action] = []
        for worker in self._workers.values():
            if worker.phase is Phase.RETIRING and not worker.killed and worker.deadline <= now:
                worker.killed = True
                message = f"worker {worker.id} still running past its shutdown timeout; SIGKILL"
                actions.append(Log(logging.WARNING, message))
                actions.append(Signal(worker.id, signal.SIGKILL))
        return actions + self._reconcile(now)

    # -- the rules ----------------------------------------------------------------
    def _active(self) -> list[_Worker]:
        """The workers that serve or will: not told to stop. Oldest first."""
        return [w for _, w in sorted(self._workers.items()) if w.phase is not Phase.RETIRING]

    def _retire(self, worker: _Worker, now: float) -> Signal:
        worker.phase = Phase.RETIRING
        if self.shutdown_timeout is not None:
            worker.deadline = now + self.shutdown_timeout + self.kill_grace
        return Signal(worker.id, signal.SIGTERM)

    def _spawn(self, now: float) -> Spawn:
        worker = _Worker(self._next_id, Phase.STARTING, now)
        self._workers[worker.id] = worker
        self._next_id += 1
        return Spawn(worker.id)

    def _reconcile(self, now: float) -> list[Action]:
        if self.done:
            return []
        actions: list[Action] = []
        if self.stopping:
            actions += [self._retire(w, now) for w in self._active()]
            if not self._workers:
                self.done = True
                actions.append(Exit(1 if self._unclean else 0))
            return actions
        active = self._active()
        retiring = len(self._workers) > len(active)
        rolling = any(w.old for w in active)
        capacity = self.target + (1 if rolling and not retiring else 0)
        # Fewer wanted (SIGTTOU): owed spawns go first, then the oldest workers.
        excess = len(active) + len(self._pending) - max(capacity, self.target)
        while excess > 0 and self._pending:
            self._pending.remove(max(self._pending))
            excess -= 1
        for worker in active[:max(0, excess)]:
            actions.append(self._retire(worker, now))
        active = self._active()
        # The rolling restart's step: the new worker is ready, an old one goes.
        if rolling and len(active) > self.target:
            old = [w for w in active if w.old]
            starting = [w for w in old if w.phase is Phase.STARTING]
            serving = sum(w.phase is Phase.READY for w in active)
            if starting:
                actions.append(self._retire(starting[0], now))
            elif old and serving > self.target:
                actions.append(self._retire(old[0], now))
            active = self._active()
        # More wanted: a new worker now, or when its backoff is over.
        retiring = len(self._workers) > len(active)
        rolling = any(w.old for w in active)
        capacity = self.target + (1 if rolling and not retiring else 0)
        for _ in range(capacity - len(active) - len(self._pending)):
            self._pending.append(now)
        for due in sorted(t for t in self._pending if t <= now):
            self._pending.remove(due)
            actions.append(self._spawn(now))
        if not self._workers and not self._pending and self.target == 0:
            self.done = True
            actions.append(Exit(0))
        return actions
