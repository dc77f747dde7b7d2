"""Accepting connections: waiting for the next one, or taking the queue without waiting.

:func:`accept` is what a server's accept loop awaits. :func:`accept_queued`
is what its close does last: it takes every connection the kernel has
already completed (the listen queue, ``listen(2)``'s backlog) without
waiting, so that closing the listener right after resets none of them
(:mod:`trionet._server` says why and in which order).
"""

from __future__ import annotations

import errno
import os
import socket as _stdlib_socket
from collections.abc import Iterator

import trio

from ._stream import Address, format_address

__all__ = ["ACCEPT_BACKOFF", "ACCEPT_CAPACITY_ERRNOS", "Episode", "accept", "accept_queued"]

# Errors that accept(2) can return, and which indicate that the system is
# overloaded (the list trio uses in _highlevel_serve_listeners.py).
ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
# How long to sleep when we get one of those errors.
ACCEPT_BACKOFF = 0.100

# accept(2) errors that concern only the connection being accepted, which is
# gone: try the next one (the list Trio's SocketListener.accept ignores, in
# trio/_highlevel_socket.py, and its reasons). The closed-socket ones end the loop.
_IGNORABLE_ACCEPT_ERRNOS = {
    getattr(errno, name)
    for name in (
        "EPERM", "ECONNABORTED", "EPROTO", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET",
        "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH", "ENOSR", "ESOCKTNOSUPPORT",
        "EPROTONOSUPPORT", "ETIMEDOUT", "ECONNRESET",
    )
    if hasattr(errno, name)
}  # fmt: skip
_CLOSED_SOCKET_ERRNOS = {errno.EBADF, errno.ENOTSOCK}


async def accept(listener: trio.SocketListener) -> tuple[trio.SocketStream, Address]:
    """The next connection and its peer's address, as ``accept(2)`` returned it.

    ``trio.SocketListener.accept`` drops the address, and asking the kernel
    again (``getpeername``) costs a system call per connection and fails once
    the peer has reset; so this is that method with the address kept.
    """
    while True:
        try:
            sock, address = await listener.socket.accept()
        except OSError as exc:
            if exc.errno in _CLOSED_SOCKET_ERRNOS:
                raise trio.ClosedResourceError from None
            if exc.errno not in _IGNORABLE_ACCEPT_ERRNOS:
                raise
        else:
            return trio.SocketStream(sock), format_address(address)


def accept_queued(sock: trio.socket.SocketType) -> Iterator[tuple[trio.SocketStream, Address]]:
    """Every connection waiting in ``sock``'s listen queue, accepted without waiting.

    Synchronous (no checkpoint between the last, empty ``accept(2)`` and the
    caller's next step, which closes the socket). It accepts on a duplicate
    descriptor of the listening socket: Trio's socket object has only the
    awaiting ``accept``; the queue is the same, and the socket is non-blocking
    (Trio made it so), so ``EAGAIN`` ends it.

    Raises:
      OSError: ``accept(2)`` failed for want of resources (``EMFILE``...).
    """
    if sock.fileno() < 0:
        return
    fd = os.dup(sock.fileno())
    with _stdlib_socket.socket(sock.family, sock.type, sock.proto, fd) as dup:
        dup.setblocking(False)
        while True:
            try:
                conn, address = dup.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _IGNORABLE_ACCEPT_ERRNOS:
                    continue
                raise
            yield trio.SocketStream(trio.socket.from_stdlib_socket(conn)), format_address(address)


class Episode:
    """A run of one kind of trouble, logged when it starts and when it ends.

    At the file descriptor limit the accept loop fails and retries ten times
    a second, and a datagram flood past the handler cap drops thousands of
    datagrams; a log line per event buries everything else (ten ERROR lines a
    second, before). An episode is logged twice instead: when it starts, and
    when it ends with how many events it counted and how long it lasted.
    Rejected: a rate limit on the lines (still a line per interval for as long
    as the trouble lasts, and no total) and logging only the first event (the
    log would never say it ended).

    Pure state, no I/O: :meth:`hit` counts an event and returns True when it
    opens the episode (log the start); :meth:`clear` closes it and returns the
    count and duration (log the end). Callers test :attr:`count` (0 outside an
    episode) on their fast path, which costs one attribute read.
    """

    __slots__ = ("count", "started_at")

    def __init__(self) -> None:
        #: Events in the episode under way; 0 when none is.
        self.count = 0
        self.started_at = 0.0

    def hit(self, now: float) -> bool:
        """Count one event at time ``now``; True if it starts an episode."""
        self.count += 1
        if self.count == 1:
            self.started_at = now
            return True
        return False

    def clear(self, now: float) -> tuple[int, float]:
        """End the episode: ``(events, seconds it lasted)``; ``(0, 0.0)`` if none was under way."""
        if not self.count:
            return 0, 0.0
        counted, self.count = self.count, 0
        return counted, now - self.started_at
