"""Server: the listening side every ``serve()`` in trionet shares.

A :class:`Server` owns the listening sockets and a nursery of connection tasks.
Protocol modules (``net``, ``http``, ``ws``, ``tls``) only supply a coroutine
that drives one accepted stream; accepting, counting, ``max_connections``,
logging a handler's crash and graceful shutdown live here once; each accepted
connection becomes its Socket (PROXY header, TLS) in :mod:`trionet._accepted`.

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
   ``IDLE_CLOSE_GRACE`` to arrive: ``trionet.http._config`` says why);
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
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup  # Trio's dependency before 3.11

from . import _run
from ._accept import ACCEPT_BACKOFF, ACCEPT_CAPACITY_ERRNOS, Episode, accept, accept_queued
from ._accepted import (
    SocketFactory,
    TLSContext,
    TLSHandshakeFailed,
    describe_peer,
    open_accepted,
)
from ._forwarded import TrustedProxies
from ._listen import is_inherited
from ._proxy_protocol import ProxyHeaderError
from ._stream import Address, Socket, format_address

__all__ = ["ConnectionHandler", "Server", "serve_listeners"]

logger = logging.getLogger("trionet.server")

#: Drives one accepted connection, given its Socket, until the connection is done.
ConnectionHandler = Callable[[Socket], Awaitable[None]]

#: A loop that feeds connections (or datagrams) into the server's nursery.
ServeLoop = Callable[[trio.Nursery], Awaitable[None]]

#: Every connection task's name. Trio would otherwise build one string per
#: task from the method's module and qualified name (87 bytes an idle connection).
CONNECTION_TASK_NAME = "trionet.server.connection"

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
        #: Set by :meth:`aclose` (and so by trionet.run's graceful stop): live
        #: connections are asked to finish now (an open WebSocket closes with
        #: 1001, "going away"). :meth:`close` alone lets them run on, as Node's
        #: ``server.close()`` and ws's ``wss.close()`` do.
        self.stopping = trio.Event()
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
        """Stop accepting, ask live connections to finish (:attr:`stopping`: a
        WebSocket closes with 1001), wait for them, cancel the rest after ``timeout``."""
        self.close()
        self.stopping.set()
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
                        name=CONNECTION_TASK_NAME,
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
                    name=CONNECTION_TASK_NAME,
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
            logger.info("TLS handshake with %s failed: %s", describe_peer(peer), exc)
        except ProxyHeaderError as exc:
            logger.info("closed a connection from %s: %s", describe_peer(peer), exc)
        except Exception as exc:
            broken = _peer_break(exc, wrapped)
            if broken is not None:
                # The peer reset or vanished mid-conversation: Node's socket 'error'
                # (ECONNRESET, EPIPE). The network's doing, not a bug: one line.
                logger.info("connection with %s broken: %s", describe_peer(peer), broken)
            else:
                logger.exception("connection handler for %s failed", describe_peer(peer))
        finally:
            self._connections -= 1
            if wrapped is stream:
                # Closing a plain socket never blocks; aclose_forcefully's
                # cancelled scope would cost an exception per connection.
                await stream.aclose()
            else:
                await trio.aclose_forcefully(wrapped)


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
