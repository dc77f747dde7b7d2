"""A worker process: its channel to the primary, and running ``main`` under ``trionet.run``.

At start the worker installs itself as the process's listener provider
(:func:`trionet._listen.set_listener_provider`), so every ``serve()`` of the
program asks the primary for its listening socket instead of binding one.
The answer arrives on the channel with the descriptor attached; a task
reading the channel hands it to the server that asked.

A worker never outlives its primary, by two means: ``prctl(PR_SET_PDEATHSIG,
SIGTERM)`` (Linux: the kernel signals us when the primary dies, even by
``kill -9``; SIGTERM so that we stop gracefully) and the channel (its EOF
means the primary is gone, on any system: :func:`trionet.stop`). A worker
that finds its parent already changed at start exits at once. uvicorn's
workers, which have neither, were seen holding the port after a ``kill -9``
of their parent.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import signal
import socket as _stdlib_socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .._listen import ListenSpec, open_tcp_listener, set_listener_provider
from .._run import run, stop
from . import _channel, _wire
from ._env import CHANNEL_FD, PRIMARY_PID

__all__ = ["WorkerChannel", "run_worker"]

logger = logging.getLogger("trionet.cluster.worker")

#: From <linux/prctl.h>.
PR_SET_PDEATHSIG = 1


class WorkerChannel:
    """The worker's end of the channel: listen requests out, descriptors back."""

    def __init__(self, sock: _stdlib_socket.socket, *, sharing: str = "primary") -> None:
        self._stdlib_sock = sock
        self._sock: trio.socket.SocketType | None = None
        self.sharing = sharing
        self._next_id = 1
        self._waiting: dict[int, tuple[trio.Event, list[Any]]] = {}
        self._ready_sent = False

    @classmethod
    def from_env(cls, *, sharing: str = "primary") -> WorkerChannel:
        fd = int(os.environ[CHANNEL_FD])
        return cls(_stdlib_socket.socket(fileno=fd), sharing=sharing)

    def _trio_sock(self) -> trio.socket.SocketType:
        if self._sock is None:
            self._sock = trio.socket.from_stdlib_socket(self._stdlib_sock)
        return self._sock

    def ready(self) -> None:
        """Tell the primary this worker serves (once; later calls do nothing)."""
        if self._ready_sent:
            return
        self._ready_sent = True
        try:
            self._stdlib_sock.send(_wire.encode(_wire.ready()))
        except OSError as exc:  # a full channel or a gone primary: nothing to tell
            logger.debug("could not report ready: %s", exc)

    async def listener(self, spec: ListenSpec) -> trio.socket.SocketType:
        """The :data:`~trionet._listen.ListenerProvider`: the primary's socket for ``spec``."""
        if self.sharing == "reuse_port" and spec.path is None:
            # Measured alternative: each worker binds its own SO_REUSEPORT socket.
            listener = await open_tcp_listener(
                spec.port, spec.host, backlog=spec.backlog, reuse_port=True, bind_here=True
            )
            self.ready()
            return listener.socket
        request_id = self._next_id
        self._next_id += 1
        done = trio.Event()
        result: list[Any] = []
        self._waiting[request_id] = (done, result)
        try:
            await _channel.send(self._trio_sock(), _wire.listen(request_id, spec))
            await done.wait()
        finally:
            self._waiting.pop(request_id, None)
        outcome = result[0]
        if isinstance(outcome, OSError):
            raise outcome
        sock: trio.socket.SocketType = outcome
        return sock

    async def watch(self, on_eof: Callable[[], None]) -> None:
        """Read the primary's answers until EOF, then call ``on_eof``."""
        sock = self._trio_sock()
        while True:
            try:
                packet = await _channel.receive(sock)
            except _wire.WireError as exc:
                logger.warning("the primary sent a bad packet (%s); ignoring it", exc)
                continue
            except OSError as exc:
                logger.warning("the channel to the primary failed: %s", exc)
                packet = None
            if packet is None:
                logger.info("the primary is gone: stopping")
                on_eof()
                return
            self._answer(packet)

    def _answer(self, packet: _channel.Packet) -> None:
        message = packet.message
        waiting = self._waiting.get(message.get("id", -1))
        if waiting is None or message["op"] not in ("listening", "failed"):
            packet.close_fds()
            return
        done, result = waiting
        if message["op"] == "listening" and len(packet.fds) == 1:
            fd = packet.fds.pop()
            stdlib = _stdlib_socket.socket(fileno=fd)
            result.append(trio.socket.from_stdlib_socket(stdlib))
        else:
            packet.close_fds()
            code = message.get("errno")
            text = str(message.get("message", "the primary could not listen"))
            result.append(OSError(code if isinstance(code, int) else errno.EIO, text))
        done.set()


def die_with_primary() -> bool:
    """Ask the kernel for SIGTERM when the primary dies; False if it is gone already."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError) as exc:  # no libc prctl: the channel's EOF still works
            logger.debug("prctl(PR_SET_PDEATHSIG) unavailable: %s", exc)
    primary = os.environ.get(PRIMARY_PID, "")
    return not primary.isdigit() or os.getppid() == int(primary)


def run_worker(
    main: Callable[..., Awaitable[object]],
    args: tuple[Any, ...],
    *,
    channel: WorkerChannel,
    shutdown_timeout: float | None,
) -> None:
    """Run ``main(*args)`` under ``trionet.run`` with the channel served beside it."""
    if not die_with_primary():
        logger.warning("the primary is gone before the worker started: exiting")
        return

    async def worker_main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(channel.watch, stop)
            await main(*args)
            nursery.cancel_scope.cancel()

    set_listener_provider(channel.listener)
    try:
        run(worker_main, shutdown_timeout=shutdown_timeout)
    finally:
        set_listener_provider(None)
