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

__all__ = ["ACCEPT_BACKOFF", "ACCEPT_CAPACITY_ERRNOS", "accept", "accept_queued"]

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
