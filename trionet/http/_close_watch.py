"""Noticing a client that goes away while its response is still being made.

``await res.wait_closed()`` is Node's ``res.on('close')``
(https://nodejs.org/api/http.html#event-close_2: "the response is
completed, or its underlying connection was terminated prematurely"). Node
learns it for free, since its socket is always reading; a trionet connection
reads only when the server or the app asks, so a client that closes while the
app is busy (a long poll, a stream of server-sent events, a slow query) goes
unnoticed until a write fails, and an app that writes nothing never notices.

So the waiter reads: the connection reads ahead into its own receive buffer
(the one the next request's head is read from, so a pipelined request read
ahead is served next, never lost) until the peer ends its side or resets the
connection. Reading is the only way that works for every transport: a close
behind pipelined bytes is found only by reading past them, and under TLS a
``close_notify`` record is "bytes waiting" to a peek (the ``MSG_PEEK`` probe
this replaces missed both). The read-ahead stops at
:data:`READ_AHEAD_LIMIT` buffered bytes (uvicorn's flow control pauses
reading at the same 64 KiB, ``HIGH_WATER_LIMIT`` in
``uvicorn/protocols/http/flow_control.py``): past that, a client that
pipelines without end would grow the buffer without bound, and the waiter
then waits only for the response to finish.

It needs the request body read first (the body's bytes would otherwise be
read ahead from under it). It costs the server nothing per request when no
app calls it: the watch is made on the first call, and the response checks
one attribute when it ends.

One :class:`CloseWatch` per response, made on the first ``wait_closed()``.
Any number of tasks may wait; one of them reads (a socket has one reader),
the others wait for it, and if the reader is cancelled (its caller gave up)
another waiter takes over. The reads are cancel-safe (a cancelled receive
loses no byte: its cancel point comes before it reads, on plain sockets,
:mod:`trionet._fdio`, and under TLS, :mod:`trionet._tls_stream`, as in
``trio.SSLStream``), so the response finishing cancels the reader at any point.

``await res.client_gone()`` answers at once from what has arrived: it reads
while the descriptor is readable now (a zero-timeout ``poll``), shielded, so
it answers even under a cancelled scope, as Starlette's
``request.is_disconnected()`` asks. A zero Trio timeout is no poll: a scope
whose deadline has passed is cancelled as it is entered, before any read.

Rejected: a reader task per connection, as Node's and uvicorn's, always
reading into a queue (a task and a buffer for every connection, paid by the
hot path whether or not anyone waits); peeking the socket (above).
"""

from __future__ import annotations

import select
from typing import Protocol

import trio

from .._stream import Socket, raw_socket
from ._limits import ClientError

__all__ = ["READY_READ_TIMEOUT", "READ_AHEAD_LIMIT", "CloseWatch", "Connection"]

_GONE = (ClientError, trio.BrokenResourceError, trio.ClosedResourceError)

#: Buffered unread bytes past which the read-ahead stops (uvicorn's
#: ``HIGH_WATER_LIMIT``, see the module docstring).
READ_AHEAD_LIMIT = 64 * 1024
#: Bound on one read :meth:`CloseWatch.poll` makes of a readable descriptor:
#: it returns at once on plain TCP; over TLS a record cut short waits for its rest.
READY_READ_TIMEOUT = 0.05


def readable_now(fd: int) -> bool:
    """Whether ``fd`` has bytes or an end waiting (a ``poll`` that does not wait)."""
    if not hasattr(select, "poll"):  # pragma: no cover - Windows: no answer without waiting
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class Connection(Protocol):
    """What the watch needs of the connection: its socket and its receive buffer."""

    #: Received bytes not yet consumed: ``buf[pos:]`` (the next request's).
    buf: bytes
    pos: int

    @property
    def socket(self) -> Socket:
        """The connection's socket (plain or TLS)."""

    async def receive_more(self) -> None:
        """Append the peer's next bytes to ``buf``; ClientError at the end of its data."""


class CloseWatch:
    """Whether a response's client is gone; waits until it is or the response finished."""

    __slots__ = ("_changed", "_connection", "_reader", "finished", "peer_closed")

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        #: The response went out whole.
        self.finished = False
        #: The client ended its side or reset the connection.
        self.peer_closed = False
        # The scope of the waiter now reading, and an event set when it stops.
        self._reader: trio.CancelScope | None = None
        self._changed = trio.Event()

    @property
    def closed(self) -> bool:
        """Whether ``wait`` has nothing left to wait for."""
        return self.finished or self.peer_closed

    async def poll(self) -> bool:
        """Whether the peer closed, from what has arrived (see the module docstring)."""
        if not (self.peer_closed or self.finished or self._reader is not None):
            self.peer_closed = await self._read_ready()
        return self.peer_closed

    def finish(self) -> None:
        """The response is complete: wake every waiter (the reader is cancelled)."""
        self.finished = True
        if self._reader is not None:
            self._reader.cancel()
        self._changed.set()

    async def wait(self) -> None:
        """Return once the response finished or the peer closed (see the module docstring)."""
        while not (self.finished or self.peer_closed):
            if self._reader is not None:
                await self._changed.wait()
                continue
            scope = self._reader = trio.CancelScope()
            try:
                with scope:
                    if await self._read_ahead():
                        self.peer_closed = True
                    else:  # the buffer is full: only the response's end is left to wait for
                        await trio.sleep_forever()
            finally:
                self._reader = None
                changed, self._changed = self._changed, trio.Event()
                changed.set()

    async def _read_ahead(self) -> bool:
        """Read into the buffer until the peer closes (True) or it holds the limit (False).

        A reset counts as a close; a cancelled read loses no byte.
        """
        connection = self._connection
        while len(connection.buf) - connection.pos < READ_AHEAD_LIMIT:
            try:
                await connection.receive_more()
            except _GONE:  # ClientError: the end of the peer's data
                return True
        return False

    async def _read_ready(self) -> bool:
        """Read what the peer sent by now, never waiting for more, shielded; True if it closed."""
        connection = self._connection
        raw = raw_socket(connection.socket.stream)
        if raw is None:
            return False
        fd = raw.fileno()
        with trio.CancelScope(shield=True):
            while len(connection.buf) - connection.pos < READ_AHEAD_LIMIT and readable_now(fd):
                with trio.move_on_after(READY_READ_TIMEOUT):
                    try:
                        await connection.receive_more()
                    except _GONE:
                        return True
                    continue
                break  # a TLS record cut short: its rest is not here yet
        return False
