"""``trionet.run(main)``: run a program, and turn Ctrl-C and SIGTERM into a graceful stop.

A server process is stopped by a signal: Ctrl-C (SIGINT) at a terminal,
SIGTERM from systemd, Docker, Kubernetes or a cluster primary. Under a plain
``trio.run`` the first SIGINT raises ``KeyboardInterrupt`` wherever the
program happens to be (out of four nested nurseries, exit status 1, with
"coroutine ... was never awaited" for the connection tasks it tore through)
and SIGTERM kills the process mid-request. :func:`run` handles both signals
for the whole run instead:

1. the first signal (or :func:`stop`) requests a graceful stop, logged once at
   INFO ("SIGTERM: stopping gracefully (30s)");
2. every :class:`trionet._server.Server` started in this run (net, http,
   https, tls, ws, dgram, asgi: they all share it) is closed as
   ``server.aclose()`` closes one: it stops accepting, serves what is already
   queued, ends idle connections, and its in-flight work finishes; all within
   ``shutdown_timeout`` seconds, after which what is left is cancelled;
3. once the servers are done, ``main``'s remaining tasks (its
   ``trio.sleep_forever()``, a timer) are cancelled and :func:`run` returns
   normally: exit status 0;
4. a second signal cancels everything at once (still a normal return).

Servers find their run through a ``trio.lowlevel.RunVar`` (:func:`enroll`
when a server starts, :func:`leave` when it ends): nothing is passed around,
so a server started deep inside a library is stopped too, and servers
started under a plain ``trio.run`` see no registry and behave as before.
This module imports nothing of trionet's (servers are known by the small
:class:`Stoppable` protocol), so ``_server`` can import it without a circle.

Trio leaves graceful shutdown to each program
(https://github.com/python-trio/trio/issues/147); servers that do it (uvicorn,
hypercorn: https://github.com/pgjones/hypercorn/issues/241) stop accepting,
let in-flight work finish within a timeout, then cancel, which is the order
here. The default timeout is Kubernetes' ``terminationGracePeriodSeconds``
(30 s, https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination),
after which it sends SIGKILL anyway.

Rejected: cancelling the whole run on the first signal (what Trio's
``KeyboardInterrupt`` amounts to: in-flight requests are cut, and a proxy in
front answers 502); a ``signal.signal`` handler that calls ``close()``
directly (it runs between bytecodes, inside whatever the event loop was
doing, and cannot wait); per-server signal options on every ``serve()`` (a
program has several servers but one stop).

The wait for a stop, for programs with loops of their own, is
:func:`stopping`: ``await trionet.stopping()`` returns (with the reason,
"SIGTERM", "SIGINT" or "stop()") when a graceful stop begins, so a loop can
end its work itself before the run cancels it.
"""

from __future__ import annotations

import functools
import logging
import math
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup  # Trio's dependency before 3.11

__all__ = [
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "Stoppable",
    "enroll",
    "hurried",
    "leave",
    "run",
    "stop",
    "stopping",
    "supervise",
]

logger = logging.getLogger("trionet.run")

#: Seconds the servers get to finish their in-flight work after the first
#: signal: Kubernetes' default ``terminationGracePeriodSeconds`` (the module
#: docstring has the source) and gunicorn's ``graceful_timeout``
#: (https://docs.gunicorn.org/en/stable/settings.html#graceful-timeout).
DEFAULT_SHUTDOWN_TIMEOUT = 30.0

#: The signals that request a graceful stop: Ctrl-C and the service managers' stop.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stoppable(Protocol):
    """What the run needs of a server: :class:`trionet._server.Server`'s lifecycle."""

    @property
    def connections(self) -> int: ...

    def close(self) -> None: ...

    async def aclose(self, timeout: float | None = None) -> None: ...

    async def wait_closed(self) -> None: ...


class _Stop:
    """One run's stop: its live servers, whether a stop was requested, and why."""

    def __init__(self, shutdown_timeout: float | None) -> None:
        self.shutdown_timeout = shutdown_timeout
        self.servers: set[Stoppable] = set()
        #: Set by the first signal or :func:`stop`.
        self.requested = trio.Event()
        #: Set by the second signal, just before everything is cancelled.
        self.hurried = trio.Event()
        #: What requested the stop: "SIGINT", "SIGTERM" or "stop()".
        self.reason = ""

    def request(self, reason: str) -> None:
        if not self.requested.is_set():
            self.reason = reason
            self.requested.set()


_STOP: trio.lowlevel.RunVar[_Stop | None] = trio.lowlevel.RunVar("trionet.run", default=None)


# -- the servers' side -------------------------------------------------------------
def enroll(server: Stoppable) -> None:
    """A server of this run started serving: it will be closed by a graceful stop.

    A server that starts while the stop is already under way is closed at once.
    Outside :func:`run` this does nothing.
    """
    current = _STOP.get()
    if current is None:
        return
    current.servers.add(server)
    if current.requested.is_set():
        server.close()


def leave(server: Stoppable) -> None:
    """A server of this run ended (call it before ``wait_closed()`` returns)."""
    current = _STOP.get()
    if current is not None:
        current.servers.discard(server)


# -- the program's side ------------------------------------------------------------
def _current(what: str) -> _Stop:
    current = _STOP.get()
    if current is None:
        raise RuntimeError(f"trionet.{what}() works inside trionet.run() only")
    return current


def stop() -> None:
    """Request a graceful stop of this :func:`run`, as a first SIGTERM does.

    Callable from any task of the run (not from another thread: use
    ``trio.from_thread.run_sync(trionet.stop)`` there); calling it again does nothing.

    Raises:
      RuntimeError: not inside :func:`run`.
    """
    _current("stop").request("stop()")


async def stopping() -> str:
    """Wait until a graceful stop of this :func:`run` begins; returns what requested it.

    The reason is "SIGINT", "SIGTERM" or "stop()". A program with a loop of its
    own (a producer, a timer, a client) waits on it to finish that work
    cleanly: the run cancels what is still running once its servers are done.

    Raises:
      RuntimeError: not inside :func:`run`.
    """
    current = _current("stopping")
    await current.requested.wait()
    return current.reason


def hurried() -> bool:
    """Whether a second signal cut this run's graceful stop short (False outside :func:`run`)."""
    current = _STOP.get()
    return current is not None and current.hurried.is_set()


def run(
    main: Callable[..., Awaitable[object]],
    /,
    *args: object,
    shutdown_timeout: float | None = DEFAULT_SHUTDOWN_TIMEOUT,
) -> None:
    """Run ``main(*args)`` under ``trio.run``; SIGINT and SIGTERM stop it gracefully.

    The first signal (or :func:`stop`) closes every server started in the run,
    gives their in-flight work ``shutdown_timeout`` seconds (None: no bound),
    cancels what is left, then cancels ``main``'s remaining tasks; ``run`` then
    returns normally (exit status 0). A second signal cancels everything at
    once. An exception from ``main`` comes out as itself (not inside an
    exception group, when it is the only one).

    Raises:
      ValueError: ``shutdown_timeout`` is negative.
    """
    trio.run(functools.partial(supervise, main, *args, shutdown_timeout=shutdown_timeout))


async def supervise(
    main: Callable[..., Awaitable[object]],
    /,
    *args: object,
    shutdown_timeout: float | None = DEFAULT_SHUTDOWN_TIMEOUT,
) -> None:
    """:func:`run`'s body, for a caller already inside ``trio.run`` (the CLI commands).

    It must run in the main thread (signals are delivered there), once per run.
    """
    if shutdown_timeout is not None and shutdown_timeout < 0:
        raise ValueError(f"shutdown_timeout must be >= 0 or None, not {shutdown_timeout}")
    if _STOP.get() is not None:
        raise RuntimeError("trionet.run() is already running in this Trio run")
    current = _Stop(shutdown_timeout)
    _STOP.set(current)
    try:
        await _supervise(current, main, args)
    except BaseExceptionGroup as group:
        failure = _only(group)
        if failure is group:
            raise
    else:
        return
    finally:
        _STOP.set(None)
    # Raised outside the except block, so the group does not become its context.
    raise failure


async def _supervise(
    current: _Stop, main: Callable[..., Awaitable[object]], args: tuple[object, ...]
) -> None:
    # The receiver is held for the whole run and read until main is done: a
    # signal left unread when it closes would be redelivered to the default
    # handler (SIGTERM's kills the process).
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as program:
                outer.start_soon(_watch_signals, signals, current, program.cancel_scope)
                program.start_soon(_stop_gracefully, current, program.cancel_scope)
                await main(*args)
                program.cancel_scope.cancel()
            outer.cancel_scope.cancel()


async def _watch_signals(
    signals: AsyncIterator[int], current: _Stop, program: trio.CancelScope
) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        if not current.requested.is_set():
            current.request(name)
        elif not current.hurried.is_set():
            logger.warning("%s again: cancelling what is left", name)
            current.hurried.set()
            program.cancel()


async def _stop_gracefully(current: _Stop, program: trio.CancelScope) -> None:
    await current.requested.wait()
    timeout = current.shutdown_timeout
    logger.info("%s: stopping gracefully (%s)", current.reason, _seconds(timeout))
    deadline = math.inf if timeout is None else trio.current_time() + timeout
    with trio.move_on_at(deadline):
        # A loop: a server that starts during the stop is closed by enroll(),
        # and waited for in the next round.
        while current.servers:
            async with trio.open_nursery() as nursery:
                for server in list(current.servers):
                    nursery.start_soon(server.aclose)
    if current.servers:
        left = sum(server.connections for server in current.servers)
        logger.warning(
            "%s after %s: cancelling %d connections still open",
            current.reason, _seconds(timeout), left,
        )  # fmt: skip
        async with trio.open_nursery() as nursery:
            for server in list(current.servers):
                nursery.start_soon(server.aclose, 0.0)
    program.cancel()


def _seconds(timeout: float | None) -> str:
    return "no time limit" if timeout is None else f"{timeout:g}s"


def _only(exc: BaseException) -> BaseException:
    """The one exception inside nested single-exception groups (the nurseries' wrapping)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
