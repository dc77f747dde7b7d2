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
    """A message is larger than the transport can carry (a UDP datagram over 64 KiB)."""
