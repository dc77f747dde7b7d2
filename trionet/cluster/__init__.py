"""trionet.cluster: one program in N worker processes, as Node's ``cluster`` module.

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(trionet.http.serve, app, 8000)

    trionet.cluster.run(main, workers=4)

Run in the primary (the process you start), ``run`` never calls ``main``: it
starts ``workers`` processes running the same program again, and in each of
them ``run`` calls ``main`` under :func:`trionet.run`. The listening sockets
are bound once, by the primary, and passed to the workers, which share their
accept queue. The primary restarts workers that die, rolls them on SIGHUP,
adds or removes one on SIGTTIN/SIGTTOU and stops them all on SIGTERM/SIGINT.
See docs/guide/cluster.md for the design, its measurements and the signals.

Rejected: ``os.fork()`` of the primary after it imported the program (Node
spawns a fresh process too: a fork of a process that started threads or a
Trio run is undefined territory, and macOS forbids it for many libraries), and
``multiprocessing`` (its spawn start method pickles ``main``, which cannot be
a closure, and hides the worker's command line).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ._env import current_worker_id
from ._state import SHUTDOWN_TIMEOUT

__all__ = ["SHARING", "is_primary", "ready", "run", "worker_id"]

worker_id: int | None = current_worker_id()
"""This process's worker id (1, 2, ...; a restarted worker gets a new one), None in
the primary. Node's ``cluster.worker.id``."""
is_primary: bool = worker_id is None
"""True in the primary (and in a program that is not a cluster's worker). Node's
``cluster.isPrimary``."""

SHARING = ("primary", "reuse_port")
"""How workers share a listening address (``run``'s ``sharing``): ``"primary"``
(bound once by the primary, descriptors passed; the default) or ``"reuse_port"``
(each worker binds its own ``SO_REUSEPORT`` socket, TCP only; needs a fixed port)."""

_worker_channel: Any = None


def run(
    main: Callable[..., Awaitable[object]],
    *args: Any,
    workers: int | None = None,
    shutdown_timeout: float | None = SHUTDOWN_TIMEOUT,
    sharing: str = "primary",
) -> None:
    """Run ``main(*args)`` in ``workers`` processes (default: ``os.cpu_count()``).

    In the primary this supervises until SIGTERM/SIGINT (or until every
    worker's ``main`` returned) and then exits the process with the status
    (0 when every worker stopped cleanly). In a worker it runs ``main`` under
    :func:`trionet.run` with ``shutdown_timeout`` (None: no bound) and
    returns when it ends.
    """
    if sharing not in SHARING:
        raise ValueError(f"sharing must be one of {SHARING}, not {sharing!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if not is_primary:
        global _worker_channel
        from ._worker import WorkerChannel, run_worker

        _worker_channel = WorkerChannel.from_env(sharing=sharing)
        run_worker(main, args, channel=_worker_channel, shutdown_timeout=shutdown_timeout)
        return
    from ._primary import supervise, worker_argv

    count = workers if workers is not None else (os.cpu_count() or 1)
    code = trio.run(
        lambda: supervise(count, argv=worker_argv(), shutdown_timeout=shutdown_timeout)
    )
    raise SystemExit(code)


def ready() -> None:
    """Tell the primary this worker serves (for a worker that listens on nothing).

    A worker is ready anyway once it was handed its first listening socket;
    the rolling restart waits for a new worker to be ready before it stops an
    old one. In the primary, or outside a cluster, this does nothing.
    """
    if _worker_channel is not None:
        _worker_channel.ready()
