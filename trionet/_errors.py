"""The exception hierarchy: one base class, one subclass per thing a user acts on.

Every error trionet raises on purpose derives from :class:`TrionetError`, so
``except trionet.TrionetError`` catches them all; the subclasses say what went
wrong in a way a caller can branch on (retry a :class:`ConnectError`, report a
:class:`ProtocolError`, raise the pool size after a :class:`PoolTimeout`).
"""

from __future__ import annotations

import builtins

__all__ = [
    "ConnectError",
    "ConnectionLost",
    "MessageSizeError",
    "PoolTimeout",
    "ProtocolError",
    "TLSError",
    "TimeoutError",
    "TrionetError",
]


class TrionetError(Exception):
    """Base class of every error trionet raises on purpose."""


class ConnectError(TrionetError, OSError):
    """A connection could not be opened (refused, unreachable, reset before use).

    Also an :class:`OSError`, so code written for plain sockets keeps working;
    the message names the address that failed.
    """


class ConnectionLost(ConnectError):
    """The server closed or reset the connection before sending a response.

    Node's client reports this as ``socket hang up`` / ``ECONNRESET``. A
    response the server did send before closing is returned, not this error
    (e.g. a ``413`` sent while the request body was still going out). On a
    kept-alive connection this is the stale-connection race: an idempotent
    request is sent once more on a new connection first. A subclass of
    :class:`ConnectError`, so ``except ConnectError`` covers it.
    """


class ProtocolError(TrionetError):
    """The peer broke the protocol (malformed HTTP or WebSocket data)."""


class TLSError(TrionetError):
    """A TLS handshake failed; the message says why (unknown CA, hostname mismatch, ...)."""


class TimeoutError(TrionetError, builtins.TimeoutError):
    """An operation ran past the timeout its caller gave.

    Also a subclass of the builtin :class:`TimeoutError`.
    """


class PoolTimeout(TimeoutError):
    """A request waited longer than the agent's ``pool_timeout`` for a connection."""


class MessageSizeError(TrionetError, ValueError):
    """A message is larger than the transport can carry or the caller allows.

    A UDP datagram over 64 KiB; a response body over the ``max_body_size``
    given to :func:`trionet.http.request` (the message points to
    :func:`trionet.http.stream`, which reads a body in pieces).
    """
