"""The primary process: binds the listening sockets, spawns and supervises the workers.

It never runs the program's ``main``. It re-executes the same program
(``sys.orig_argv`` under ``sys.executable``) once per worker, as Node's
cluster forks ``process.argv`` again, with the worker's id and the
descriptor of its channel in the environment (:mod:`._env`). Each worker's
channel is served by a task here: a ``listen`` request is answered with a
socket bound once per address (a second worker asking for the same
``port=0`` gets the same socket, hence the same port, as in Node) and the
worker counts as ready once it holds one. Every decision (who to spawn,
whom to signal, when to exit) is the pure :class:`._state.Supervisor`'s; this
module only performs them.

Workers run in their own session (``start_new_session``): a Ctrl-C at the
terminal reaches the primary only, which stops the workers in order; a
signal sent to the whole group would give each worker a second signal from
us, which means "cut short".
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import trio

from .._listen import ListenSpec, open_tcp_listener, open_unix_listener
from . import _channel, _wire
from ._env import worker_env
from ._state import Action, Exit, Log, Signal, Spawn, StopListening, Supervisor

__all__ = ["SIGNALS", "supervise"]

logger = logging.getLogger("trionet.cluster")

#: The signals the primary acts on (the table in docs/guide/cluster.md).
SIGNALS = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class _Ready:
    worker_id: int


@dataclass(frozen=True)
class _Exited:
    worker_id: int
    returncode: int


@dataclass(frozen=True)
class _Signalled:
    signum: int


_Event = _Ready | _Exited | _Signalled


class _Processes:
    """The workers' processes by id, and signals for a worker whose process is not up yet.

    A signal decided between the spawn and the process's start (a SIGTERM to
    the primary right after a SIGHUP) is delivered as soon as it starts.
    """

    def __init__(self) -> None:
        self.running: dict[int, trio.Process] = {}
        self._early: dict[int, list[int]] = {}

    def started(self, worker_id: int, process: trio.Process) -> None:
        self.running[worker_id] = process
        for signum in self._early.pop(worker_id, []):
            _send_signal(process, signum)

    def signal(self, worker_id: int, signum: int) -> None:
        process = self.running.get(worker_id)
        if process is None:
            self._early.setdefault(worker_id, []).append(signum)
        else:
            _send_signal(process, signum)

    def exited(self, worker_id: int) -> None:
        self.running.pop(worker_id, None)
        self._early.pop(worker_id, None)


def _send_signal(process: trio.Process, signum: int) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)


class SharedListeners:
    """The listening sockets, bound once per address and handed to every worker that asks."""

    def __init__(self) -> None:
        self._sockets: dict[ListenSpec, trio.socket.SocketType] = {}
        self._unix_inodes: dict[str, tuple[int, int]] = {}
        self._lock = trio.Lock()
        self._closed = False

    async def get(self, spec: ListenSpec) -> trio.socket.SocketType:
        key = replace(spec, reuse_port=False)
        async with self._lock:
            if self._closed:
                raise OSError(errno.ECONNABORTED, "listen: the cluster is stopping")
            sock = self._sockets.get(key)
            if sock is None:
                if spec.path is not None:
                    listener = await open_unix_listener(
                        spec.path, backlog=spec.backlog, mode=spec.mode, bind_here=True
                    )
                    st = os.stat(spec.path)
                    self._unix_inodes[spec.path] = (st.st_dev, st.st_ino)
                else:
                    listener = await open_tcp_listener(
                        spec.port, spec.host, backlog=spec.backlog, bind_here=True
                    )
                sock = listener.socket
                self._sockets[key] = sock
                logger.info("listening on %s for the workers", _where(sock))
            return sock

    def close(self) -> None:
        """Close our copies (the workers' copies keep each socket until they stop)."""
        self._closed = True
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        for path, inode in self._unix_inodes.items():
            try:
                st = os.stat(path)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == inode:  # still ours, not a successor's
                os.unlink(path)
        self._unix_inodes.clear()


def _where(sock: trio.socket.SocketType) -> str:
    name = sock.getsockname()
    if isinstance(name, tuple):
        return f"{name[0]}:{name[1]}"
    return str(name)


async def supervise(
    workers: int,
    *,
    argv: list[str],
    shutdown_timeout: float | None,
    supervisor: Supervisor | None = None,
) -> int:
    """Run the workers until a stop signal (or until none is left); the exit status."""
    state = supervisor or Supervisor(workers, shutdown_timeout=shutdown_timeout)
    listeners = SharedListeners()
    processes = _Processes()
    send_event, events = trio.open_memory_channel[_Event](math.inf)
    code = 0
    try:
        with trio.open_signal_receiver(*SIGNALS) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_forward_signals, signals, send_event)
                actions = state.start(trio.current_time())
                while True:
                    exit_code = _perform(actions, nursery, processes, listeners, argv, send_event)
                    if exit_code is not None:
                        code = exit_code
                        break
                    deadline = state.next_deadline()
                    event: _Event | None = None
                    with trio.move_on_at(math.inf if deadline is None else deadline):
                        event = await events.receive()
                    now = trio.current_time()
                    if event is None:
                        actions = state.tick(now)
                    elif isinstance(event, _Ready):
                        actions = state.ready(event.worker_id, now)
                    elif isinstance(event, _Exited):
                        processes.exited(event.worker_id)
                        actions = state.exited(event.worker_id, event.returncode, now)
                    else:
                        actions = state.signal(event.signum, now)
                nursery.cancel_scope.cancel()
    finally:
        listeners.close()
        for process in processes.running.values():  # only after a crash of our own
            if process.returncode is None:
                process.kill()
    return code


def _perform(
    actions: list[Action],
    nursery: trio.Nursery,
    processes: _Processes,
    listeners: SharedListeners,
    argv: list[str],
    send_event: trio.MemorySendChannel[_Event],
) -> int | None:
    for action in actions:
        if isinstance(action, Log):
            logger.log(action.level, "%s", action.message)
        elif isinstance(action, Spawn):
            nursery.start_soon(
                _run_worker, action.worker_id, argv, listeners, processes, send_event
            )
        elif isinstance(action, Signal):
            processes.signal(action.worker_id, action.signum)
        elif isinstance(action, StopListening):
            listeners.close()
        elif isinstance(action, Exit):
            return action.code
    return None


async def _forward_signals(
    signals: AsyncIterator[int], send_event: trio.MemorySendChannel[_Event]
) -> None:
    async for signum in signals:
        await send_event.send(_Signalled(signum))


async def _run_worker(
    worker_id: int,
    argv: list[str],
    listeners: SharedListeners,
    processes: _Processes,
    send_event: trio.MemorySendChannel[_Event],
) -> None:
    """Spawn worker ``worker_id``, serve its channel, report its exit."""
    ours, theirs = _channel.socketpair()
    channel = trio.socket.from_stdlib_socket(ours)
    returncode = 127  # the shell's "could not run it"
    try:
        with theirs:
            try:
                process = await trio.lowlevel.open_process(
                    argv,
                    env=worker_env(worker_id, theirs.fileno()),
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,
                )
            except OSError as exc:
                logger.error("worker %d could not start: %s", worker_id, exc)
                return
        logger.info("worker %d started (pid %d)", worker_id, process.pid)
        processes.started(worker_id, process)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve_channel, worker_id, channel, listeners, send_event)
            returncode = await process.wait()
            nursery.cancel_scope.cancel()
    finally:
        channel.close()
        with trio.CancelScope(shield=True):
            await send_event.send(_Exited(worker_id, returncode))


async def _serve_channel(
    worker_id: int,
    channel: trio.socket.SocketType,
    listeners: SharedListeners,
    send_event: trio.MemorySendChannel[_Event],
) -> None:
    """Answer one worker's requests until its end closes."""
    reported_ready = False
    while True:
        try:
            packet = await _channel.receive(channel)
        except _wire.WireError as exc:
            logger.warning("worker %d sent a bad packet (%s); ignoring it", worker_id, exc)
            continue
        except OSError as exc:
            logger.warning("worker %d's channel failed: %s", worker_id, exc)
            return
        if packet is None:
            return
        packet.close_fds()  # a worker has no descriptor to give us
        message = packet.message
        if message["op"] == "ready":
            if not reported_ready:
                reported_ready = True
                await send_event.send(_Ready(worker_id))
            continue
        if message["op"] != "listen":
            continue
        request_id = message.get("id")
        try:
            spec = _wire.spec_from_wire(message.get("spec"))
            sock = await listeners.get(spec)
        except (_wire.WireError, OSError, ValueError) as exc:
            code = getattr(exc, "errno", None) or errno.EINVAL
            await _channel.send(channel, _wire.failed(_int(request_id), code, str(exc)))
            continue
        await _channel.send(channel, _wire.listening(_int(request_id)), sock.fileno())
        if not reported_ready:
            reported_ready = True
            await send_event.send(_Ready(worker_id))


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def worker_argv() -> list[str]:
    """The command line that runs this program again (``python`` replaced by ours)."""
    orig = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    return [sys.executable, *orig[1:]]



