"""Socket: Node's ``net.Socket`` as a Trio stream.

A :class:`Socket` wraps any Trio stream (a TCP or Unix :class:`trio.SocketStream`,
or a TLS stream over one) and adds what a Node user expects from a socket: byte
counters, addresses, ``set_nodelay``/``set_keepalive``, iteration over incoming
chunks, Node's ``allowHalfOpen`` rule, and a ``send`` that any number of tasks
may call at once. It is itself a :class:`trio.abc.HalfCloseableStream`, so
anything written for Trio streams accepts it.

Sending from several tasks. Node's ``socket.write()`` may be called from
anywhere (a chat server writes to every client from every client's handler);
a Trio stream takes one sender at a time and raises ``trio.BusyResourceError``
in the second, which in a broadcast disconnected the *sending* client. So
:meth:`Socket.send` takes turns: a call finding another task mid-send parks in
a FIFO queue (:class:`trio.lowlevel.ParkingLot`) and is handed the turn when
that send is done. Each call's bytes are therefore contiguous on the wire,
calls go out in the order they arrived, and one task's calls keep their order.
The uncontended call costs one flag test more than before; the queue is made
only when a second task first has to wait. Rejected: a ``trio.StrictFIFOLock``
taken on every call (it looks up the current task twice per send, on the TCP
echo path's hottest line); a background writer task with a buffer per socket
(Node's model, but it hides backpressure: ``send`` would return before the
kernel took the bytes, and a slow peer would grow the buffer without bound).
Waiting in the queue *is* the backpressure: one slow peer stalls the tasks
sending to it, which is why the guide's chat example gives each client a
bounded outbox.

:meth:`Socket.send_all` (Trio's name) keeps Trio's rules instead: it raises
``trio.BusyResourceError`` when another task is sending, and, as
:meth:`Socket.receive_some`, is a checkpoint on every call, so code written
for Trio streams sees the stream it expects and ``trio.testing``'s
conformance checks pass. Receiving stays one task at a time, as a Node socket
has one reader: a second task waiting to ``receive`` raises
``trio.BusyResourceError`` (Trio's wait on the descriptor, or the stream
under the socket, refuses it); read in one task and hand data to others.

The bytes. On a plain TCP or Unix socket the Socket reads and writes the
descriptor itself (:class:`trionet._fdio.DirectIO`: a system call when the
kernel is ready, Trio's wait only when it is not, a yield to the scheduler
every few calls), except on Windows; over TLS or any other stream it calls
the stream's ``send_all``/``receive_some``. Every protocol driver (the HTTP
server and client, WebSocket) holds one Socket and goes through it, so byte
counters, ``allow_half_open`` and the errors below hold whichever protocol
runs on top. Drivers use two extras: ``send(head, more=body)`` writes two
buffers as one record without joining a large body to its head, and
:meth:`Socket.checkpoint` is the once-per-request yield.

Addresses are looked up when first read, then kept: an HTTP connection
that never asks for them pays no ``getpeername``/``getsockname`` call (that
cost is why the HTTP server once avoided building a Socket per connection).
Whoever knows better sets them: the accept loop passes the peer address
``accept()`` returned, and a PROXY-protocol pre-step sets the original
client's. The error messages look the peer up too; after a reset the kernel
may no longer know it, which is why ``connect()`` and ``accept()`` fill it in.

Errors. A send or receive on a connection that is gone raises
:class:`SocketClosedError` (closed or ended on our side) or
:class:`SocketBrokenError` (reset or broken by the peer). Both are
:class:`trionet.ConnectError`, so a Node-style handler catches every way a
peer can vanish with one ``except``; and each is also the Trio exception it
replaces (``trio.ClosedResourceError``, ``trio.BrokenResourceError``), so code
written for Trio streams keeps working.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
import socket as _stdlib_socket
from collections.abc import AsyncIterator
from typing import Any

import trio

from ._errors import ConnectError, TimeoutError, TrionetError
from ._fdio import DEFAULT_RECEIVE_SIZE, DirectIO
from ._linger import Lingered
from ._linger import linger as _linger

__all__ = [
    "Address",
    "Socket",
    "SocketBrokenError",
    "SocketClosedError",
    "format_address",
    "handshake",
    "raw_socket",
]

#: A TCP address ``(host, port)`` or the path of a Unix socket.
Address = tuple[str, int] | str


# What ending our side for a peer that ended may run into: nobody to tell.
_QUIET_END_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)

_Buffer = bytes | bytearray | memoryview

# Node's socket.setKeepAlive() sets these besides the idle delay (net.md).
KEEPALIVE_COUNT = 10
KEEPALIVE_INTERVAL = 1


def raw_socket(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    """The OS socket under ``stream`` (looking through TLS), or None for other streams."""
    while True:
        if isinstance(stream, trio.SocketStream):
            return stream.socket
        inner = getattr(stream, "transport_stream", None)
        if inner is None:
            return None
        stream = inner


def _describe(address: Address | None) -> str:
    """``host:port``, a Unix path, or "an unknown peer", for error messages."""
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return address or "an unknown peer"


def format_address(address: Any) -> Address:
    """A socket address in trionet's form: ``(host, port)`` for IP, the path for Unix."""
    if isinstance(address, tuple):
        return (str(address[0]), int(address[1]))
    if isinstance(address, bytes):
        return address.decode(errors="replace")
    return str(address)


class SocketClosedError(ConnectError, trio.ClosedResourceError):
    """The socket was closed or ended on our side: Node's ``ERR_STREAM_DESTROYED``
    and "write after end".

    A :class:`trionet.ConnectError`, and a :class:`trio.ClosedResourceError` for
    code written for Trio streams. ``stream`` is the Trio stream it happened on.
    """

    stream: trio.abc.Stream | None = None


class SocketBrokenError(ConnectError, trio.BrokenResourceError):
    """The peer reset the connection or it broke (Node's ``ECONNRESET``, ``EPIPE``).

    ``errno`` is the kernel's code when it gave one. A :class:`trionet.ConnectError`,
    and a :class:`trio.BrokenResourceError` for code written for Trio streams.
    ``stream`` is the Trio stream it happened on.
    """

    stream: trio.abc.Stream | None = None


class Socket(trio.abc.HalfCloseableStream):
    """A connected byte stream with Node's ``net.Socket`` conveniences.

    :meth:`send` may be called from any number of tasks at once; receiving is
    one task at a time (see the module docstring for both rules and why).

    Args:
      stream: the Trio stream to wrap.
      allow_half_open: when False (Node's default), the end of the peer's data
        ends our side too, so a handler that only reads still closes cleanly.
        If another task is sending at that moment, our side ends when that
        send is done; any later send raises :class:`SocketClosedError`,
        as Node's writes fail once the peer has ended the connection.
      remote_address: the peer's address when the caller knows it already
        (``accept()`` returned it); else it is looked up on first use.
    """

    # Every HTTP keep-alive connection holds one while idle: no __dict__ saves
    # ~200 bytes each (subclasses such as tls.TLSSocket may still add attributes).
    __slots__ = (
        "_end_after_send",
        "_ended_by_peer",
        "_eof_sent",
        "_io",
        "_local",
        "_local_known",
        "_remote",
        "_remote_known",
        "_sending",
        "_sock",
        "_strict_sender",
        "_turns",
        "allow_half_open",
        "bytes_read",
        "bytes_written",
        "stream",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        allow_half_open: bool = True,
        remote_address: Address | None = None,
    ) -> None:
        self.stream = stream
        """The underlying Trio stream (a ``trio.SocketStream``, or TLS over one)."""
        self.allow_half_open = allow_half_open
        """Whether the peer's end of data leaves our side open (Node's ``allowHalfOpen``)."""
        self.bytes_read = 0
        """Bytes received so far (Node's ``socket.bytesRead``)."""
        self.bytes_written = 0
        """Bytes the kernel has taken so far (Node's ``socket.bytesWritten``)."""
        # The engine: the descriptor itself on plain sockets, else the stream.
        self._io = DirectIO(stream)
        self._eof_sent = False
        # The send turn: True while a task is in send(), send_all() or
        # send_eof(); tasks that find it taken park in _turns (made on first
        # use) and are handed it in arrival order.
        self._sending = False
        self._turns: trio.lowlevel.ParkingLot | None = None
        # The turn's holder came through send_all(), whose rule (Trio's) is one
        # sender at a time: send_all() and send_eof() meanwhile raise BusyResourceError.
        self._strict_sender = False
        # The peer ended while a task was sending: that send ends our side.
        self._end_after_send = False
        self._ended_by_peer = False
        self._sock = raw_socket(stream)
        # Looked up on first use (see the module docstring); None: unknown.
        self._remote = remote_address
        self._remote_known = remote_address is not None
        self._local: Address | None = None
        self._local_known = False

    def __repr__(self) -> str:
        return f"<trionet.net.Socket {self.local_address!r} -> {self.remote_address!r}>"

    # -- addresses -------------------------------------------------------------
    @property
    def remote_address(self) -> Address | None:
        """The peer's ``(host, port)``, its Unix socket path, or None when unknown
        (Node's ``remoteAddress`` and ``remotePort`` together).

        Looked up on first use and kept; settable, for a pre-step that knows
        the real client (the PROXY protocol).
        """
        if not self._remote_known:
            self._remote_known = True
            self._remote = self._look_up(peer=True)
        return self._remote

    @remote_address.setter
    def remote_address(self, address: Address | None) -> None:
        self._remote, self._remote_known = address, True

    @property
    def local_address(self) -> Address | None:
        """Our ``(host, port)`` or Unix socket path (Node's ``localAddress``, ``localPort``).

        Looked up on first use and kept; settable, as :attr:`remote_address`.
        """
        if not self._local_known:
            self._local_known = True
            self._local = self._look_up(peer=False)
        return self._local

    @local_address.setter
    def local_address(self, address: Address | None) -> None:
        self._local, self._local_known = address, True

    def _look_up(self, *, peer: bool) -> Address | None:
        sock = self._sock
        if sock is None:
            return None
        try:
            return format_address(sock.getpeername() if peer else sock.getsockname())
        except OSError:  # closed, or reset (the kernel forgets the peer)
            return None

    @property
    def remote_port(self) -> int | None:
        """The peer's port, or None for a Unix socket."""
        address = self.remote_address
        return address[1] if isinstance(address, tuple) else None

    # -- sending ---------------------------------------------------------------
    async def send(self, data: _Buffer | str, *, more: _Buffer = b"") -> None:
        """Send all of ``data``; returns once the kernel took it (Node's ``drain``).

        ``more`` goes out right after ``data`` as part of the same call (a
        response head and its body): a large ``more`` is written with
        ``writev``, never copied next to ``data``.

        Safe from any number of tasks at once, as Node's ``write()``: a call
        made while another task is sending waits its turn (first come, first
        served), so each call's bytes are contiguous on the wire and one
        task's calls keep their order. A call cancelled while it waits sends
        nothing; one cancelled mid-send may have sent part of ``data``, after
        which the stream is unusable (Trio's rule for every stream).

        Raises:
          SocketClosedError: the socket was closed, or our side has ended
            (``send_eof()``, or the peer's end without ``allow_half_open``).
          SocketBrokenError: the peer reset the connection (``ECONNRESET``, ``EPIPE``).
        """
        if isinstance(data, str):
            data = data.encode()
        if self._sending:
            await self._wait_turn()
        else:
            self._sending = True
        try:
            if self._eof_sent or self._end_after_send:
                await trio.lowlevel.checkpoint()
                raise self._ended()
            await self._io.send(data, more)
            self.bytes_written += len(data) + len(more)
            if self._end_after_send:
                self._end_after_send = False
                with contextlib.suppress(*_QUIET_END_ERRORS):
                    await self._shut_write_side()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if isinstance(exc, TrionetError):
                raise
            raise self._gone(exc, "write") from exc
        finally:
            # Hand the turn to the first waiter, or free it (inline: the hot path).
            turns = self._turns
            if turns:
                turns.unpark()
            else:
                self._sending = False

    def _send_now(self, data: _Buffer) -> int:
        """:meth:`send` with no wait or yield: the bytes of ``data`` the kernel took
        at once; 0 when only ``await send()`` can send (another task is sending, our
        side ended, TLS, a full buffer, a yield due). The rest goes out with
        :meth:`send`, no await in between. For a driver's per-message path."""
        if self._sending or self._eof_sent or self._end_after_send:
            return 0
        try:
            sent = self._io.write_now(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise self._gone(exc, "write") from exc
        self.bytes_written += sent
        return sent

    async def _wait_turn(self) -> None:
        """Park until the task holding the send turn hands it over."""
        turns = self._turns
        if turns is None:
            turns = self._turns = trio.lowlevel.ParkingLot()
        await turns.park()

    def _pass_turn(self) -> None:
        turns = self._turns
        if turns:
            turns.unpark()
        else:
            self._sending = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Trio's name for :meth:`send`, with Trio's rules: one sender at a time,
        and every call is a checkpoint (taken before sending, so a cancelled
        call sent nothing).

        Raises:
          trio.BusyResourceError: another task is sending. Code written for
            Trio streams expects this; use :meth:`send` to send from several tasks.
        """
        if self._io.direct:  # the stream's own send_all checkpoints otherwise
            await trio.lowlevel.checkpoint()
        if self._sending:
            raise trio.BusyResourceError(
                "another task is sending on this socket (send() lets several tasks send)"
            )
        self._strict_sender = True
        try:
            await self.send(data)
        finally:
            self._strict_sender = False

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        """Half-close: tell the peer we are done sending (Node's ``end()``).

        Called while other tasks are in :meth:`send`, it waits for their data
        to go first, as ``end()`` follows the writes before it. Sending EOF
        twice is a no-op, as ``end()`` is in Node; sending data after it
        raises :class:`SocketClosedError` (Node's "write after end").

        Raises:
          trio.BusyResourceError: another task is in :meth:`send_all` (Trio's rule).
        """
        if self._sending:
            if self._strict_sender:
                raise trio.BusyResourceError("another task is in send_all() on this socket")
            await self._wait_turn()
        else:
            self._sending = True
        try:
            await self._shut_write_side()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if isinstance(exc, TrionetError):
                raise
            raise self._gone(exc, "end") from exc
        finally:
            self._pass_turn()

    async def _shut_write_side(self) -> None:
        """send_eof's work; the caller holds the send turn."""
        if self._eof_sent:
            await trio.lowlevel.checkpoint()
            return
        self._eof_sent = True
        if isinstance(self.stream, trio.abc.HalfCloseableStream):
            await self.stream.send_eof()
        elif self._sock is not None:
            # TLS has no half-close in Trio (trio#823): shut the TCP write side.
            await trio.lowlevel.checkpoint()
            self._sock.shutdown(_stdlib_socket.SHUT_WR)
        else:
            await trio.lowlevel.checkpoint()

    def _ended(self) -> SocketClosedError:
        if self._ended_by_peer:
            reason = "cannot send: the peer ended the connection (allow_half_open=False)"
        else:
            reason = "cannot send after send_eof() (Node: write after end)"
        error = SocketClosedError(reason)
        error.stream = self.stream
        return error

    def _gone(
        self, exc: trio.BrokenResourceError | trio.ClosedResourceError, operation: str
    ) -> SocketClosedError | SocketBrokenError:
        """The trionet error for a Trio stream's, in Node's words (``write ECONNRESET ...``)."""
        peer = _describe(self.remote_address)
        error: SocketClosedError | SocketBrokenError
        if isinstance(exc, trio.ClosedResourceError):
            error = SocketClosedError(f"{operation} on a closed socket ({peer})")
        else:
            cause = exc.__cause__
            code = cause.errno if isinstance(cause, OSError) else None
            if code:
                name = _errno.errorcode.get(code, "failed")
                error = SocketBrokenError(code, f"{operation} {name} {peer} ({os.strerror(code)})")
            else:
                error = SocketBrokenError(f"{operation} failed {peer}: {exc}")
        error.stream = self.stream
        return error

    # -- receiving -------------------------------------------------------------
    async def receive(self, max_bytes: int = DEFAULT_RECEIVE_SIZE) -> bytes:
        """Receive up to ``max_bytes``; ``b""`` means the peer ended its side.

        One task receives at a time, as a Node socket has one reader.

        Raises:
          SocketClosedError: the socket was closed.
          SocketBrokenError: the peer reset the connection.
          trio.BusyResourceError: another task is receiving on this socket.
        """
        if max_bytes < 1:  # os.read would return b"", which means the end
            raise ValueError(f"max_bytes must be at least 1, not {max_bytes}")
        try:
            data = await self._io.receive(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if isinstance(exc, TrionetError):
                raise
            raise self._gone(exc, "read") from exc
        except trio.BusyResourceError:
            # Trio's words ("another task is already reading / writing this fd")
            # say less than a user needs.
            raise trio.BusyResourceError(
                "another task is receiving on this socket: a socket has one reader;"
                " receive in one task and hand the data on (e.g. a memory channel)"
            ) from None
        if data:
            self.bytes_read += len(data)
        elif not self.allow_half_open and not self._eof_sent:
            self._ended_by_peer = True
            if self._sending:
                self._end_after_send = True  # the send in progress ends our side
            else:
                await self._end_quietly()
        return data

    def _receive_now(self, max_bytes: int, *, waited: bool = False) -> bytes | None:
        """:meth:`receive` without waiting or yielding: the bytes already in, or
        None when only ``await receive()`` can answer (nothing in yet, the end
        of the stream, TLS, a yield due). For a driver that waits for the
        socket in its own frame (``waited``: on ``Socket._io.idle_fd()``)."""
        try:
            data = self._io.read_now(max_bytes, waited=waited)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise self._gone(exc, "read") from exc
        if data is not None:
            self.bytes_read += len(data)
        return data

    async def checkpoint(self) -> None:
        """Yield to the scheduler if this socket's last calls completed without waiting.

        Trio's streams yield on every call; the direct path yields every
        :data:`trionet._fdio.MAX_UNYIELDED_IO` calls. A driver that wants
        Trio's fairness at a coarser grain (once per request) calls this; it
        costs nothing when the socket already waited, and on streams other
        than plain sockets, whose every call yields.
        """
        await self._io.checkpoint()

    async def _end_quietly(self) -> None:
        """End our side for the peer that ended its own (Node's allowHalfOpen=false)."""
        with contextlib.suppress(*_QUIET_END_ERRORS):
            await self.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Trio's name for :meth:`receive`, with Trio's rule that every call is a
        checkpoint (taken before reading, so a cancelled call loses no data).

        :meth:`receive` yields to other tasks only every few calls that found
        data waiting, which is what makes it fast; code written for Trio
        streams may count on the stricter rule, so it gets it here.
        """
        if self._io.direct:  # the stream's own receive_some checkpoints otherwise
            await trio.lowlevel.checkpoint()
        return await self.receive(DEFAULT_RECEIVE_SIZE if max_bytes is None else max_bytes)

    async def __aiter__(self) -> AsyncIterator[bytes]:  # type: ignore[override]
        """Yield chunks as they arrive, until the peer ends its side."""
        while data := await self.receive():
            yield data

    # -- closing ---------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the socket (Node's ``destroy()``)."""
        await self.stream.aclose()

    async def linger(
        self, *, time_limit: float | None = None, timeout: float | None = None
    ) -> Lingered:
        """Close in stages, so the last thing we sent is not reset away (RFC 9112 §9.6).

        Half-closes, then reads and drops what the peer still sends until it
        ends, goes silent for ``timeout`` or ``time_limit`` passes (nginx's
        ``lingering_timeout`` and ``lingering_time``: see :mod:`trionet._linger`).
        Call :meth:`aclose` afterwards. Never raises for a peer that left.
        """
        return await _linger(self, time_limit=time_limit, timeout=timeout)

    # -- options ---------------------------------------------------------------
    def set_nodelay(self, enable: bool = True) -> None:
        """Turn Nagle's algorithm off (True) or on (False) for a TCP socket."""
        if self._is_tcp():
            assert self._sock is not None
            self._sock.setsockopt(
                _stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_NODELAY, int(enable)
            )

    def set_keepalive(self, enable: bool = False, idle: float | None = None) -> None:
        """Enable TCP keep-alive probes after ``idle`` seconds without traffic.

        Like Node, enabling it also sets 10 probes one second apart.
        """
        if not self._is_tcp():
            return
        sock = self._sock
        assert sock is not None
        sock.setsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_KEEPALIVE, int(enable))
        if not enable:
            return
        tcp = _stdlib_socket.IPPROTO_TCP
        if idle is not None and hasattr(_stdlib_socket, "TCP_KEEPIDLE"):
            sock.setsockopt(tcp, _stdlib_socket.TCP_KEEPIDLE, max(1, int(idle)))
        if hasattr(_stdlib_socket, "TCP_KEEPCNT"):
            sock.setsockopt(tcp, _stdlib_socket.TCP_KEEPCNT, KEEPALIVE_COUNT)
            sock.setsockopt(tcp, _stdlib_socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)

    def _is_tcp(self) -> bool:
        return self._sock is not None and self._sock.family in (
            _stdlib_socket.AF_INET,
            _stdlib_socket.AF_INET6,
        )


@contextlib.asynccontextmanager
async def handshake(
    resource: trio.abc.AsyncResource, timeout: float | None, what: str
) -> AsyncIterator[None]:
    """Run the block (a protocol handshake over ``resource``) within ``timeout`` seconds.

    On any failure the resource is closed before the error goes on, so a
    failed or abandoned handshake never leaks a socket; running out of time
    raises :class:`trionet.TimeoutError` ("``what`` timed out after N s").
    """
    try:
        with trio.fail_after(timeout if timeout is not None else float("inf")):
            yield
    except BaseException as exc:
        await trio.aclose_forcefully(resource)
        if isinstance(exc, trio.TooSlowError):
            raise TimeoutError(f"{what} timed out after {timeout}s") from None
        raise
