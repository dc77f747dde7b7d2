"""Server: the listening side every ``serve()`` in trionet shares.

A :class:`Server` owns the listening sockets and a nursery of connection tasks.
Protocol modules (``net``, ``http``, ``ws``, ``tls``) only supply a coroutine
that drives one accepted stream; accepting, counting, ``max_connections``,
TLS wrapping, logging a handler's crash and graceful shutdown live here once.

Every accepted connection becomes one :class:`trionet.net.Socket` in one
place, :func:`open_accepted`: TLS is handshaken there, the peer's address
that ``accept()`` returned is set on the Socket there (so nobody asks the
kernel again, and a reset cannot make it forget), and a pre-step that must
read the raw connection first (a PROXY protocol header, which names the real
client) goes there. Handlers get that Socket: the protocol drivers (HTTP,
WebSocket) hold it for the connection's life, and the caller's
``make_socket`` picks the class (``tls.TLSSocket`` for TLS servers) and
``allow_half_open``. Rejected: each protocol building its own Socket from a
stream (what it was): three places to add a pre-step, and the HTTP server
avoided building one at all while the Socket looked its addresses up eagerly.

Shutdown follows Node (``server.close()``: stop accepting, let live
connections run on; https://nodejs.org/api/net.html#serverclosecallback):
:meth:`Server.close` stops accepting at once, :meth:`Server.aclose` also waits
for the live connections and cancels what is left after its timeout. What a
stop must not do is lose work that already reached the machine (a proxy in
front answers 502 for every connection reset under a request: the issue's
nginx measurements lost 7-32 POSTs per stop). So :meth:`Server.close` runs,
in one synchronous step (no checkpoint, so no other task runs in between):

1. :attr:`Server.closing` is set, and a Unix socket's file is removed (no new
   client finds it);
2. the protocol drivers' :meth:`Server.on_close` callbacks run: the HTTP
   server marks every later response ``Connection: close`` and closes its idle
   keep-alive connections, except those on which a request is already
   waiting (checked without blocking, then closed or left in the same step)
   and those that answered a request a moment ago (their next request gets
   ``IDLE_CLOSE_GRACE`` to arrive: ``trionet.http._server`` says why);
3. every connection already in a listener's queue (completed by the kernel,
   not yet accepted: its request may be there too) is accepted without
   waiting and served, counted like any other (:meth:`_serve_backlog`);
4. the listening sockets close right after the queue reads empty.

Then live connections finish their current work (HTTP answers it with
``Connection: close``), and :meth:`Server.aclose` cancels what is left once
its timeout passes. :func:`trionet.run` does this for every server of a
program on SIGINT/SIGTERM (:mod:`trionet._run`).

Rejected: closing the listener first (the kernel resets the queued
connections: the issue measured 0-11 lost per stop even so); cancelling idle
connections from a task that runs later (a request arriving meanwhile is
reset by the close); migrating the queue to a sibling ``SO_REUSEPORT``
socket (``net.ipv4.tcp_migrate_req``, Linux 5.14,
https://docs.kernel.org/networking/ip-sysctl.html): a system-wide sysctl
that needs root and a sibling, which a lone server does not have. A connection
the kernel completes after step 4 began is refused as with any closed port.
"""

from __future__ import annotations

import logging
import os
import socket as _stdlib_socket
import ssl
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Protocol

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup  # Trio's dependency before 3.11

from . import _run
from ._accept import ACCEPT_BACKOFF as ACCEPT_BACKOFF  # dgram's retry pause too
from ._accept import ACCEPT_CAPACITY_ERRNOS, accept, accept_queued
from ._errors import TLSError
from ._forwarded import TrustedProxies
from ._listen import is_inherited
from ._proxy_protocol import PROXY_HEADER_TIMEOUT, ProxyHeader, ProxyHeaderError, v2_length
from ._proxy_protocol import parse as parse_proxy_header
from ._stream import Address, Socket, format_address
from ._tls_failure import handshake_failure

__all__ = [
    "ConnectionHandler",
    "Episode",
    "Server",
    "ServerTLS",
    "SocketFactory",
    "TLSContext",
    "open_accepted",
    "serve_listeners",
]

logger = logging.getLogger("trionet.server")

#: Drives one accepted connection, given its Socket, until the connection is done.
ConnectionHandler = Callable[[Socket], Awaitable[None]]

#: Makes the Socket for an accepted stream (TLS already done): ``net.Socket``
#: with the server's ``allow_half_open``, ``tls.TLSSocket`` for TLS streams.
SocketFactory = Callable[[trio.abc.Stream], Socket]

#: A loop that feeds connections (or datagrams) into the server's nursery.
ServeLoop = Callable[[trio.Nursery], Awaitable[None]]

#: Node's tls.Server ``handshakeTimeout`` is 120 s; a stalled handshake holds a
#: socket and a task, so we cut it shorter.
TLS_HANDSHAKE_TIMEOUT = 30.0


class ServerTLS(Protocol):
    """A TLS layer other than the stdlib's (trionet.tls's pyOpenSSL one).

    ``wrap_server_stream`` runs the server side of the handshake over an
    accepted stream and returns the TLS stream; it raises ``TLSError`` when
    the handshake fails. ``handshake_timeout`` bounds it.
    """

    handshake_timeout: float

    async def wrap_server_stream(self, stream: trio.abc.Stream) -> trio.abc.Stream: ...


#: What every ``serve(ssl_context=...)`` accepts: a stdlib context (served
#: through ``trio.SSLStream``) or a :class:`ServerTLS` such as ``trionet.tls.TLSConfig``.
TLSContext = ssl.SSLContext | ServerTLS


class Server:
    """A listening server started by one of trionet's ``serve()`` functions.

    Users do not create it; ``await nursery.start(trionet.net.serve, ...)``
    returns it.
    """

    def __init__(
        self,
        sockets: Sequence[trio.socket.SocketType],
        *,
        max_connections: int | None = None,
        unix_path: str | None = None,
        close_sockets: bool = True,
    ) -> None:
        if max_connections is not None and max_connections < 0:
            raise ValueError(f"max_connections must be >= 0, not {max_connections}")
        self._sockets = list(sockets)
        # A listening socket closes at close(); a UDP server's socket is also the
        # one its live handlers reply on, so its owner closes it after they end.
        self._close_sockets = close_sockets
        self.max_connections = max_connections
        # A socket file that a cluster primary bound is the primary's to remove.
        self._unix_path = None if is_inherited(self._sockets[0]) else unix_path
        self._unix_inode = _inode(unix_path) if unix_path else None
        self._connections = 0
        #: Connections refused because ``max_connections`` was reached (Node's
        #: 'drop'); for a UDP server, datagrams dropped at ``max_handlers``.
        self.dropped = 0
        #: Set when :meth:`close` is called; drivers close idle connections on it.
        self.closing = trio.Event()
        self._closed = trio.Event()
        self._accept_scope: trio.CancelScope | None = None
        self._connection_scope: trio.CancelScope | None = None
        self._connection_nursery: trio.Nursery | None = None
        # Per listener, a sync call that serves its listen queue (close() runs them).
        self._drains: list[Callable[[], None]] = []
        # The protocol drivers' sync reactions to close() (on_close()).
        self._on_close: list[Callable[[], None]] = []
        self.address: Address = format_address(self._sockets[0].getsockname())

    def __repr__(self) -> str:
        if self._closed.is_set():
            state = "closed"
        else:
            state = "closing" if self.closing.is_set() else "open"
        return f"<trionet Server {self.address!r} {state}, {self._connections} connections>"

    @property
    def port(self) -> int | None:
        """The port listened on, or None for a Unix socket."""
        return self.address[1] if isinstance(self.address, tuple) else None

    @property
    def connections(self) -> int:
        """How many connections (or datagram handlers) are live now."""
        return self._connections

    # -- lifecycle -------------------------------------------------------------
    def close(self) -> None:
        """Stop accepting now; live connections go on until they finish.

        Connections already in the listen queue are accepted and served
        first, so none is reset (see the module docstring for the order).
        """
        self._close(drain=True)

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` in :meth:`close`, synchronously, before the backlog is served.

        For protocol drivers that must act on the close with no checkpoint in
        between (the HTTP server closes its idle connections there). Called at
        once if the server is already closing.
        """
        if self.closing.is_set():
            callback()
        else:
            self._on_close.append(callback)

    def _close(self, *, drain: bool) -> None:
        if self.closing.is_set():
            return
        self.closing.set()
        if self._unix_path is not None and _inode(self._unix_path) == self._unix_inode:
            # Remove the socket file only if it is still ours, not a successor's;
            # first, so no new client finds it while the backlog is served.
            os.unlink(self._unix_path)
        for callback in self._on_close:
            callback()
        if drain and self._connection_nursery is not None:
            for serve_backlog in self._drains:
                serve_backlog()
        if self._close_sockets:
            for sock in self._sockets:
                sock.close()
        if self._accept_scope is not None:
            self._accept_scope.cancel()

    async def aclose(self, timeout: float | None = None) -> None:
        """Stop accepting, wait for live connections, cancel the rest after ``timeout``."""
        self.close()
        if timeout is not None:
            with trio.move_on_after(timeout):
                await self._closed.wait()
            if self._connection_scope is not None:
                self._connection_scope.cancel()
        await self._closed.wait()

    async def wait_closed(self) -> None:
        """Wait until the server is closed and its last connection has ended."""
        await self._closed.wait()

    # -- running ---------------------------------------------------------------
    async def run(
        self,
        loops: Sequence[ServeLoop],
        task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run ``loops`` until :meth:`close`, then wait for the connections they started."""
        try:
            async with trio.open_nursery() as connection_nursery:
                self._connection_scope = connection_nursery.cancel_scope
                self._connection_nursery = connection_nursery
                async with trio.open_nursery() as accept_nursery:
                    self._accept_scope = accept_nursery.cancel_scope
                    for loop in loops:
                        accept_nursery.start_soon(loop, connection_nursery)
                    task_status.started(self)
                    # trionet.run's graceful stop closes it (after started():
                    # enroll() closes a server that starts during a stop at once).
                    _run.enroll(self)
        finally:
            # Cancelled from outside (or a loop failed): nothing is served any more.
            self._connection_nursery = None
            self._close(drain=False)
            _run.leave(self)
            self._closed.set()

    def accept_loop(
        self,
        listener: trio.SocketListener,
        handle: ConnectionHandler,
        *,
        make_socket: SocketFactory = Socket,
        ssl_context: TLSContext | None = None,
        proxy_protocol: TrustedProxies | None = None,
    ) -> ServeLoop:
        """A serve loop that accepts from ``listener`` and runs ``handle`` per connection.

        :meth:`close` serves the connections still in ``listener``'s queue
        (:meth:`_serve_backlog`) before closing it. With ``proxy_protocol``
        (the peers trusted to send one), each connection starts with a PROXY
        protocol header (see :func:`open_accepted`).
        """
        self._drains.append(
            partial(
                self._serve_backlog, listener, handle, make_socket, ssl_context, proxy_protocol
            )
        )

        async def loop(nursery: trio.Nursery) -> None:
            deferred = Episode()
            try:
                while True:
                    try:
                        stream, peer = await accept(listener)
                    except (trio.ClosedResourceError, trio.BrokenResourceError):
                        return
                    except OSError as exc:
                        if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                            raise
                        if deferred.hit(trio.current_time()):
                            logger.warning(
                                "accept failed: %s; retrying every %ss (logged once until it"
                                " succeeds)", exc, ACCEPT_BACKOFF,
                            )  # fmt: skip
                        await trio.sleep(ACCEPT_BACKOFF)
                        continue
                    if deferred.count:
                        _log_accept_episode_end(deferred, "accepting again")
                    if self.max_connections is not None and self._full():
                        await trio.aclose_forcefully(stream)
                        continue
                    self._connections += 1
                    nursery.start_soon(
                        self._run_connection,
                        stream, peer, handle, make_socket, ssl_context, proxy_protocol,
                    )  # fmt: skip
            finally:
                if deferred.count:
                    _log_accept_episode_end(deferred, "stopped accepting")

        return loop

    def _full(self) -> bool:
        """True (and the drop counted and logged) if ``max_connections`` are live."""
        if self.max_connections is None or self._connections < self.max_connections:
            return False
        self.dropped += 1
        logger.info("dropped a connection: max_connections=%d", self.max_connections)
        return True

    def _serve_backlog(
        self,
        listener: trio.SocketListener,
        handle: ConnectionHandler,
        make_socket: SocketFactory,
        ssl_context: TLSContext | None,
        proxy_protocol: TrustedProxies | None,
    ) -> None:
        """Accept, without waiting, every connection in ``listener``'s queue, and serve it.

        Called by :meth:`close` just before it closes the listening socket,
        with no checkpoint in between: a connection the kernel completed (the
        client may have sent its request already: nginx had, in the issue's
        measurements) would otherwise be reset by that close.
        """
        nursery = self._connection_nursery
        assert nursery is not None
        served = 0
        try:
            for stream, peer in accept_queued(listener.socket):
                if self.max_connections is not None and self._full():
                    stream.socket.close()
                    continue
                self._connections += 1
                served += 1
                nursery.start_soon(
                    self._run_connection,
                    stream, peer, handle, make_socket, ssl_context, proxy_protocol,
                )  # fmt: skip
        except OSError as exc:
            logger.warning("serving the listen queue at close stopped: %s", exc)
        if served:
            logger.debug("serving %d connections from the listen queue before closing", served)

    async def run_counted(self, what: str, job: Callable[[], Awaitable[None]]) -> None:
        """Run one unit of work as a live 'connection', logging its crash."""
        self._connections += 1
        # The body of _run_counted, not a call to it: one coroutine fewer per
        # datagram on dgram's inline path (UDP echo measured 0.85x -> 0.88-0.89x of raw Trio).
        try:
            await job()
        except Exception:
            logger.exception("%s failed", what)
        finally:
            self._connections -= 1

    def start_counted(
        self, nursery: trio.Nursery, what: str, job: Callable[[], Awaitable[None]]
    ) -> None:
        """Start :meth:`run_counted` in ``nursery``, counted from now, not from when
        the task first runs, so a cap checked against :attr:`connections` holds."""
        self._connections += 1
        nursery.start_soon(self._run_counted, what, job)

    async def _run_counted(self, what: str, job: Callable[[], Awaitable[None]]) -> None:
        try:
            await job()
        except Exception:
            logger.exception("%s failed", what)
        finally:
            self._connections -= 1

    async def _run_connection(
        self,
        stream: trio.SocketStream,
        peer: Address,
        handle: ConnectionHandler,
        make_socket: SocketFactory,
        ssl_context: TLSContext | None,
        proxy_protocol: TrustedProxies | None = None,
    ) -> None:
        wrapped: trio.abc.Stream = stream
        try:
            sock = await open_accepted(stream, peer, make_socket, ssl_context, proxy_protocol)
            wrapped = sock.stream
            await handle(sock)
        except TLSHandshakeFailed as exc:
            logger.info("TLS handshake with %s failed: %s", _describe(peer), exc)
        except ProxyHeaderError as exc:
            logger.info("closed a connection from %s: %s", _describe(peer), exc)
        except Exception as exc:
            broken = _peer_break(exc, wrapped)
            if broken is not None:
                # The peer reset or vanished mid-conversation: Node's socket 'error'
                # (ECONNRESET, EPIPE). The network's doing, not a bug: one line.
                logger.info("connection with %s broken: %s", _describe(peer), broken)
            else:
                logger.exception("connection handler for %s failed", _describe(peer))
        finally:
            self._connections -= 1
            if wrapped is stream:
                # Closing a plain socket never blocks; aclose_forcefully's
                # cancelled scope would cost an exception per connection.
                await stream.aclose()
            else:
                await trio.aclose_forcefully(wrapped)


async def open_accepted(
    stream: trio.SocketStream,
    peer: Address,
    make_socket: SocketFactory,
    ssl_context: TLSContext | None,
    proxy_protocol: TrustedProxies | None = None,
) -> Socket:
    """Make the Socket for an accepted connection: the one place that happens.

    With ``proxy_protocol``, the connection must start with a PROXY protocol
    header (v1 or v2) from a peer that list trusts; it is read first, before
    TLS, and the Socket's ``remote_address`` becomes the client it names
    (a ``LOCAL`` or ``UNKNOWN`` header, a proxy's health check, keeps the
    proxy's). Then the TLS handshake (with ``ssl_context``) runs; the Socket
    gets ``peer``, the address ``accept()`` returned, so it never asks the kernel.

    Raises:
      ProxyHeaderError: no valid header in time, or one from an untrusted
        peer (logged at INFO by the caller, the connection closed).
      TLSHandshakeFailed: the TLS handshake failed or stalled (logged by the caller).
    """
    if proxy_protocol is not None:
        if not proxy_protocol.trusts(peer):
            # Section 5 of the spec: accept the header "only from a number of known sources".
            raise ProxyHeaderError(f"PROXY protocol from an untrusted peer ({proxy_protocol!r})")
        header = await read_proxy_header(stream.socket, PROXY_HEADER_TIMEOUT)
        if header.source is not None:
            peer = header.source
    wrapped = stream if ssl_context is None else await tls_handshake(stream, ssl_context)
    sock = make_socket(wrapped)
    sock.remote_address = peer
    return sock


async def _read_exactly(sock: trio.socket.SocketType, size: int) -> bytes:
    """``size`` bytes from ``sock`` (which the caller knows are header bytes)."""
    parts = []
    while size > 0:
        chunk = await sock.recv(size)
        if not chunk:
            raise ProxyHeaderError("connection closed inside the PROXY protocol header")
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


#: How much one peek at a PROXY header asks for: the spec's bound on what
#: arrives at once (section 2: "576 - 40 = 536 bytes").
PROXY_PEEK_SIZE = 536


async def read_proxy_header(sock: trio.socket.SocketType, timeout: float) -> ProxyHeader:
    """Read the PROXY protocol header off ``sock``, and not one byte more.

    Each pass peeks (``MSG_PEEK``) at what has arrived; a complete header is
    then read for exactly its length, so what follows it stays in the kernel
    for the Socket and the protocol, which therefore need no way to be handed
    bytes read ahead. An incomplete one is all header bytes
    (:func:`trionet._proxy_protocol.parse`), so it is consumed and the next
    peek waits for more. Rejected: reading ahead and giving the rest to the
    Socket (a prefix buffer checked on every receive, the hot path, or a
    wrapper stream that would lose the Socket's direct descriptor I/O).

    Raises:
      ProxyHeaderError: malformed, cut short by the peer, or not complete within ``timeout``.
    """
    seen = b""
    try:
        with trio.fail_after(timeout):
            while True:
                peeked = await sock.recv(PROXY_PEEK_SIZE, _stdlib_socket.MSG_PEEK)
                if not peeked:
                    raise ProxyHeaderError("connection closed inside the PROXY protocol header")
                header = parse_proxy_header(seen + peeked)
                if header is not None:
                    await _read_exactly(sock, header.length - len(seen))
                    return header
                seen += await sock.recv(len(peeked))
                length = v2_length(seen)
                if length is not None:  # a v2 header: the rest is known to be header
                    rest = await _read_exactly(sock, length - len(seen))
                    header = parse_proxy_header(seen + rest)
                    assert header is not None  # all of it is there
                    return header
    except trio.TooSlowError:
        raise ProxyHeaderError(f"no complete PROXY protocol header within {timeout}s") from None
    except OSError as exc:
        raise ProxyHeaderError(f"reading the PROXY protocol header failed: {exc}") from None


def _peer_break(exc: BaseException, stream: trio.abc.Stream) -> BaseException | None:
    """The error that says this connection's peer reset or vanished, if that is all
    ``exc`` is; else None (the handler's failure, logged with its traceback).

    A handler that runs tasks in a nursery (a reader and a writer) raises its
    peer's reset inside an exception group; every exception in the group must
    be such a reset. A ``BrokenResourceError`` raised by *another* connection's
    socket (a broadcast to a peer that left: its ``stream`` is not ours) is
    the handler's failure, as the API contract says.
    """
    if isinstance(exc, BaseExceptionGroup):
        breaks = [_peer_break(inner, stream) for inner in exc.exceptions]
        return breaks[0] if all(b is not None for b in breaks) else None
    if isinstance(exc, trio.BrokenResourceError) and getattr(exc, "stream", stream) is stream:
        return exc
    return None


def _log_accept_episode_end(deferred: Episode, outcome: str) -> None:
    counted, lasted = deferred.clear(trio.current_time())
    logger.warning(
        "%s after %.1fs out of resources: %d accepts deferred", outcome, lasted, counted
    )


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


class TLSHandshakeFailed(Exception):
    """Internal: a server-side handshake failed or stalled (logged, never raised to users)."""


async def tls_handshake(stream: trio.abc.Stream, context: TLSContext) -> trio.abc.Stream:
    """Wrap an accepted stream in TLS and finish the handshake within the timeout.

    Either engine's failure is told in the same words (:func:`handshake_failure`).
    """
    if isinstance(context, ssl.SSLContext):
        timeout = TLS_HANDSHAKE_TIMEOUT
    else:
        timeout = context.handshake_timeout
    try:
        with trio.fail_after(timeout):
            if not isinstance(context, ssl.SSLContext):
                return await context.wrap_server_stream(stream)
            tls = trio.SSLStream(stream, context, server_side=True, https_compatible=True)
            await tls.do_handshake()
            return tls
    except trio.TooSlowError:
        raise TLSHandshakeFailed(f"no handshake within {timeout}s") from None
    except (TLSError, trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
        raise TLSHandshakeFailed(handshake_failure(exc).reason) from None


def _describe(peer: Address) -> str:
    """The peer's address for a log line (an unnamed Unix client: "a Unix peer")."""
    return repr(peer) if peer else "a Unix peer"


def _inode(path: str | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


async def serve_listeners(
    handle: ConnectionHandler,
    listeners: Sequence[trio.SocketListener],
    *,
    make_socket: SocketFactory = Socket,
    max_connections: int | None = None,
    unix_path: str | None = None,
    ssl_context: TLSContext | None = None,
    proxy_protocol: TrustedProxies | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handle`` on ready listeners until the server is closed or cancelled.

    Each connection's Socket comes from ``make_socket`` (see :func:`open_accepted`);
    ``proxy_protocol``: expect a PROXY protocol header from these trusted peers.
    """
    server = Server(
        [listener.socket for listener in listeners],
        max_connections=max_connections,
        unix_path=unix_path,
    )
    loops = [
        server.accept_loop(
            lst,
            handle,
            make_socket=make_socket,
            ssl_context=ssl_context,
            proxy_protocol=proxy_protocol,
        )
        for lst in listeners
    ]
    await server.run(loops, task_status=task_status)
