"""Lingering close: half-close, read and drop what the peer still sends, then close.

Why: closing a TCP socket that still has unread data makes the kernel answer
with a reset instead of a FIN, and a reset makes the *peer's* kernel throw
away whatever it had received and the peer had not read yet: our last
response, or our WebSocket Close frame, is destroyed before the peer sees it.
RFC 9112 section 9.6 (Tear-down) spells out the cure for HTTP: close "in
stages": first half-close (shut down the write side, so the peer gets our FIN
after the response), then keep reading until the peer closes too or we are
reasonably sure it has read the response; only then close. A server refusing
an upload (413, 431, 400) while the body still pours in is the common case:
a client sending 4 MiB to a 1 MiB limit got EPIPE and never the 413, and
nginx in front of trionet turned it into a 502 ("writev() failed (32:
Broken pipe) while sending request to upstream").

Policy (nginx's ``lingering_close``, which Apache's ``lingering_close()``
matches): read and drop until end of file, until the peer has been silent
for :data:`LINGER_TIMEOUT`, or until :data:`LINGER_TIME` has passed in all,
whichever comes first. Sources:
http://nginx.org/en/docs/http/ngx_http_core_module.html#lingering_time
(30 s) and ``#lingering_timeout`` (5 s); Apache httpd's
``server/connection.c``: ``MAX_SECS_TO_LINGER`` 30 s, 2 s per read.

Alternatives rejected:

- A byte cap (what trionet had: 256 KiB for HTTP, 1 MiB for WebSocket). It
  is what broke: a 4 MiB upload over loopback outruns any cap small enough
  to matter, and the close with data unread resets the connection. Bytes
  are only read and dropped, 64 KiB at a time, so reading more costs no
  memory; time is what a peer could hold, and time is bounded.
- A shorter total time than nginx's 30 s. A peer trickling one byte every few
  seconds holds the connection that long, but never longer, and it counts
  against ``max_connections`` meanwhile, exactly as a slow request head does
  for ``headers_timeout`` (60 s). A shorter bound would cut honest uploads on
  slow links back to the reset this module exists to avoid.
- ``SO_LINGER``: it makes ``close()`` wait until our data is *sent*, which
  does not stop the reset caused by data *arriving* after the close.

The helper is the same for HTTP (after an error response, or a response sent
before the request body was read) and WebSocket (after failing a connection
with a Close frame). Nothing here logs: the callers log why they closed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

import trio

from ._fdio import DEFAULT_RECEIVE_SIZE

__all__ = [
    "LINGER_READ_SIZE",
    "LINGER_TIME",
    "LINGER_TIMEOUT",
    "Closable",
    "LingerEnd",
    "Lingered",
    "linger",
]

#: Longest time, in all, spent reading and dropping after the half-close
#: (nginx's ``lingering_time`` default; Apache's ``MAX_SECS_TO_LINGER``).
LINGER_TIME = 30.0
#: Longest silence of the peer before we close anyway (nginx's
#: ``lingering_timeout`` default; Apache waits 2 s per read).
LINGER_TIMEOUT = 5.0
#: Bytes asked per read while dropping (Node's socket highWaterMark): the
#: most the drain holds at once.
LINGER_READ_SIZE = DEFAULT_RECEIVE_SIZE


class Closable(Protocol):
    """What a lingering close needs of a connection (a :class:`trionet.net.Socket`).

    A protocol rather than the Socket class itself, so the Socket can offer
    :meth:`~trionet.net.Socket.linger` without the two modules importing each other.
    """

    async def send_eof(self) -> None: ...

    async def receive(self, max_bytes: int = ...) -> bytes: ...


class LingerEnd(enum.Enum):
    """Why a lingering close stopped reading."""

    #: The peer closed its side: the clean ending, nothing can be reset.
    EOF = "eof"
    #: The peer sent nothing for ``timeout`` seconds.
    IDLE = "idle"
    #: ``time_limit`` passed while the peer was still sending.
    TIME = "time"
    #: The socket failed or was closed meanwhile (the peer reset it, or the
    #: code above us closed it); nothing more to do.
    GONE = "gone"


@dataclass(frozen=True)
class Lingered:
    """What one lingering close did: how it ended and how many bytes it dropped."""

    end: LingerEnd
    dropped: int


async def linger(
    sock: Closable,
    *,
    time_limit: float | None = None,
    timeout: float | None = None,
) -> Lingered:
    """Half-close ``sock``, then read and drop until EOF, silence or the time limit.

    The caller closes the socket afterwards. Everything the peer sends in the
    meantime is discarded, ``LINGER_READ_SIZE`` bytes at a time. Never raises
    for a socket that broke or was closed; cancellation goes through.

    Args:
      time_limit: seconds in all, however busily the peer sends
        (None: :data:`LINGER_TIME`, read at each call).
      timeout: seconds the peer may stay silent between two reads
        (None: :data:`LINGER_TIMEOUT`).
    """
    if time_limit is None:
        time_limit = LINGER_TIME
    if timeout is None:
        timeout = LINGER_TIMEOUT
    dropped = 0
    with trio.move_on_after(time_limit):
        try:
            await sock.send_eof()
            while True:
                data = b""
                with trio.move_on_after(timeout):
                    data = await sock.receive(LINGER_READ_SIZE)
                    if not data:
                        return Lingered(LingerEnd.EOF, dropped)
                if not data:
                    return Lingered(LingerEnd.IDLE, dropped)
                dropped += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return Lingered(LingerEnd.GONE, dropped)
    return Lingered(LingerEnd.TIME, dropped)
