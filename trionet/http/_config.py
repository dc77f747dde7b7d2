"""The options of one HTTP ``serve()`` call, and the watch kept over its connections.

:class:`ServerConfig` is what every connection of one server shares: the
app and hooks, the limits and timeouts (checked once, here), and the set of
live connections, which it supervises. Timeouts work as Node's
``connectionsCheckingInterval``: each connection keeps a plain ``deadline``
number that moves with its phase (``headers_timeout`` from accept and from
the first byte of each later request, ``keep_alive_timeout`` while idle
between requests, none while the app runs), and one task per server cancels
the connections whose deadline has passed. Moving a Trio cancel-scope
deadline twice per request cost 6% of the request's CPU time; a float costs
nothing. At the server's close, :meth:`ServerConfig.close_idle` ends the idle
connections (:mod:`trionet._server` gives the stop's order).

The connections are known here only through :class:`Supervised` (the
connection driver, :mod:`._connection`, implements it): hypercorn's split of
config from protocol, so that the options and their supervision read apart
from the request loop, and neither module imports the other's internals.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from .._forwarded import TrustedProxies
from .._server import Server
from .._stream import Socket
from ._framing import keep_alive_lines
from ._limits import (
    DEFAULT_HEADERS_TIMEOUT,
    DEFAULT_KEEP_ALIVE_TIMEOUT,
    DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_REQUEST_TIMEOUT,
    ClientError,
)
from ._messages import Request, Response

__all__ = [
    "BUSY",
    "HEAD",
    "IDLE",
    "IDLE_CLOSE_GRACE",
    "LINGER",
    "App",
    "ClientErrorHook",
    "ServerConfig",
    "SocketHook",
    "Supervised",
]

App = Callable[["Request", "Response"], Awaitable[None]]
#: ``on_upgrade`` / ``on_connect``: the request, the raw socket, bytes read past the head.
SocketHook = Callable[["Request", Socket, bytes], Awaitable[None]]
ClientErrorHook = Callable[[ClientError, Socket], Awaitable[None]]

#: Longest and shortest pause of the task that enforces timeouts (Node checks
#: every 30 s; we check ten times per shortest timeout, at most once a second).
MAX_CHECK_INTERVAL = 1.0
MIN_CHECK_INTERVAL = 0.01

#: At shutdown, a connection idle for less than this gets the rest of it for
#: its next request: it answered a request just now, so its client is likely
#: in a request loop (a proxy, a load generator) with the next request a round
#: trip away. Closed at once, that request would arrive on a closed socket:
#: measured with 30 closed-loop keep-alive clients, 16-30 requests were reset
#: per stop. Half a second covers a round trip across continents (~300 ms).
#: A connection idle for longer is truly idle and closes at once.
IDLE_CLOSE_GRACE = 0.5

#: Connection phases. Shutdown closes connections that are IDLE or LINGER
#: (the last response is out; only the lingering close is left).
IDLE, HEAD, BUSY, LINGER = range(4)


class Supervised(Protocol):
    """What the server's watch needs of a connection (:class:`._connection.Connection`)."""

    #: IDLE, HEAD, BUSY or LINGER.
    phase: int
    #: When the watch cancels the connection (``trio.current_time()`` clock).
    deadline: float
    #: When it last became idle: accepted, or its last response sent.
    idle_since: float
    #: Cancelled to end the connection.
    scope: trio.CancelScope

    def close_unless_request_waiting(self) -> bool: ...


class ServerConfig:
    """The options of one ``serve()`` call, shared by all its connections."""

    def __init__(
        self,
        app: App,
        *,
        on_upgrade: SocketHook | None = None,
        on_connect: SocketHook | None = None,
        on_check_continue: App | None = None,
        on_client_error: ClientErrorHook | None = None,
        headers_timeout: float = DEFAULT_HEADERS_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        max_body_size: int | None = None,
        max_requests_per_socket: int | None = None,
        trusted_proxies: TrustedProxies | None = None,
    ) -> None:
        for name, value in (
            ("headers_timeout", headers_timeout),
            ("request_timeout", request_timeout),
            ("keep_alive_timeout", keep_alive_timeout),
            ("max_body_size", max_body_size or 0),
            ("max_requests_per_socket", max_requests_per_socket or 0),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, not {value}")
        if max_header_size <= 0:
            raise ValueError(f"max_header_size must be positive, not {max_header_size}")
        self.app = app
        self.on_upgrade = on_upgrade
        self.on_connect = on_connect
        self.on_check_continue = on_check_continue
        self.on_client_error = on_client_error
        # As in Node, 0 turns a timeout off, and the head, being part of the
        # request, never gets longer than request_timeout.
        self.request_timeout = request_timeout or math.inf
        self.headers_timeout = min(headers_timeout or math.inf, self.request_timeout)
        self.keep_alive_timeout = keep_alive_timeout or math.inf
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self.max_requests_per_socket = max_requests_per_socket or 0
        #: With ``proxy_headers``: whose forwarding headers count (None: nobody's).
        self.trusted_proxies = trusted_proxies
        shortest = min(self.headers_timeout, self.request_timeout, self.keep_alive_timeout)
        self.check_interval = min(MAX_CHECK_INTERVAL, max(MIN_CHECK_INTERVAL, shortest / 10))
        self.keep_alive_lines = keep_alive_lines(keep_alive_timeout)
        #: Live connections, so shutdown can close the idle ones.
        self.connections: set[Supervised] = set()
        self.closing = False
        #: Set when the server is stopping (``Server.stopping``: ``aclose()``,
        #: trionet.run's graceful stop): what connections handed to ``on_upgrade``
        #: wait on (a WebSocket then closes with 1001, see trionet._ws_running).
        self.going_away = trio.Event()

    async def supervise(self, server: Server) -> None:
        """Enforce timeouts while the server runs (:meth:`close_idle` runs at its
        close); pass its ``stopping`` on to :attr:`going_away`."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._expire_connections)
            nursery.start_soon(self._relay_stopping, server)
            await server.wait_closed()
            nursery.cancel_scope.cancel()

    async def _relay_stopping(self, server: Server) -> None:
        await server.stopping.wait()
        self.going_away.set()

    def close_idle(self) -> None:
        """``Server.on_close``: responses say ``Connection: close`` from now on; truly
        idle connections close at once unless a request waits on one (it is served);
        those idle for less than :data:`IDLE_CLOSE_GRACE` get the rest of it;
        lingering ones stop lingering; busy ones finish their request."""
        self.closing = True
        now = trio.current_time()
        for connection in list(self.connections):
            if connection.phase == IDLE:
                closes_at = connection.idle_since + IDLE_CLOSE_GRACE
                if closes_at > now:
                    connection.deadline = min(connection.deadline, closes_at)
                else:
                    connection.close_unless_request_waiting()
            elif connection.phase == LINGER:
                connection.scope.cancel()

    async def _expire_connections(self) -> None:
        """Cancel every connection whose deadline has passed, every ``check_interval``.

        An idle one is left if a request is waiting on it: a request racing the
        keep-alive timeout is served, not reset (nginx's 502, "recv() failed (104)").
        """
        while True:
            await trio.sleep(self.check_interval)
            now = trio.current_time()
            for connection in list(self.connections):
                if connection.deadline > now:
                    continue
                if connection.phase != IDLE:
                    connection.scope.cancel()
                elif not connection.close_unless_request_waiting():
                    connection.deadline = now + self.headers_timeout
