"""What a worker process inherits from its primary: three environment variables.

Node marks a worker with ``NODE_UNIQUE_ID`` (the worker's id) and passes its
channel's descriptor in ``NODE_CHANNEL_FD``; these are the same ideas under
trionet's names. They are read once, at import, so ``cluster.is_primary``
and ``cluster.worker_id`` are plain values a program can test at its top.
"""

from __future__ import annotations

import os

__all__ = ["CHANNEL_FD", "PRIMARY_PID", "WORKER_ID", "current_worker_id", "worker_env"]

#: The worker's id (1, 2, ...; a replacement gets a new one, as in Node).
WORKER_ID = "TRIONET_CLUSTER_WORKER_ID"
#: The descriptor number of the worker's end of its channel to the primary.
CHANNEL_FD = "TRIONET_CLUSTER_CHANNEL_FD"
#: The primary's pid: a worker whose parent is already someone else stops.
PRIMARY_PID = "TRIONET_CLUSTER_PRIMARY_PID"


def worker_env(worker_id: int, channel_fd: int) -> dict[str, str]:
    """The environment of worker ``worker_id``: ours plus the three markers."""
    env = dict(os.environ)
    env[WORKER_ID] = str(worker_id)
    env[CHANNEL_FD] = str(channel_fd)
    env[PRIMARY_PID] = str(os.getpid())
    return env


def current_worker_id() -> int | None:
    """This process's worker id, or None in the primary (or a program outside any cluster)."""
    value = os.environ.get(WORKER_ID)
    return int(value) if value is not None and value.isdigit() else None
