"""One client connection: a Trio stream (TCP, Unix or TLS) with an h11 client on it.

The agent pools these; the request code in :mod:`trionet.http._client` drives
them. Opening maps every failure to trionet's errors (:class:`ConnectError`,
:class:`TLSError`); reading maps h11's complaints to :class:`ProtocolError` and
tells apart the one failure a retry can fix: the server closed the connection
before sending a single byte of the response (:class:`ConnectionLost`).
"""

from __future__ import annotations

import os
import select
import ssl
from typing import Any, NamedTuple

import h11
import trio

from .._errors import ConnectError, ProtocolError, TLSError
from .._fdio import DirectIO
from .._stream import raw_socket

__all__ = ["ConnectionLost", "HTTPConnection", "Origin", "open_connection"]

#: Bytes asked of the kernel per read; a whole small response arrives in one.
RECEIVE_SIZE = 65536

#: Longest response head we accept, Node's ``http.maxHeaderSize`` (16 KiB).
MAX_HEADER_SIZE = 16384


class Origin(NamedTuple):
    """Where a request goes, and the pool key that follows from it.

    ``name`` is Node's ``agent.getName()`` without the local-address part:
    ``"host:port"`` (or ``"unix:PATH"`` for a Unix socket). ``key`` adds the
    TLS identity (the ``ssl.SSLContext`` object, by identity), so a connection
    made with one client certificate never carries another's request.
    """

    scheme: str
    host: str
    port: int
    socket_path: str | None
    ssl_context: ssl.SSLContext | None

    @property
    def name(self) -> str:
        if self.socket_path is not None:
            return f"unix:{self.socket_path}"
        return f"{self.host}:{self.port}"

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, id(self.ssl_context) if self.ssl_context is not None else 0)


class ConnectionLost(ConnectError):
    """The server closed (or reset) the connection before sending any of the response.

    On a reused keep-alive connection this is the stale-connection race, and an
    idempotent request is retried on a new connection.
    """


class HTTPConnection:
    """A Trio stream plus the h11 state of the exchange running over it."""

    __slots__ = (
        "generation",
        "h11",
        "head_bytes",
        "io",
        "keep_alive_hint",
        "origin",
        "requests",
        "serial",
        "stream",
    )

    def __init__(self, stream: trio.abc.Stream, origin: Origin, generation: int = 0) -> None:
        self.stream = stream
        self.origin = origin
        #: Direct reads and writes on plain TCP and Unix sockets (TLS: the stream's).
        self.io = DirectIO(stream)
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_SIZE)
        #: Exchanges begun on this connection.
        self.requests = 0
        #: The agent's count of connections when this one was opened.
        self.serial = 0
        #: The agent's run generation this connection belongs to (Trio sockets
        #: cannot cross ``trio.run`` calls).
        self.generation = generation
        #: Seconds from the server's ``Keep-Alive: timeout=N``, when it sent one.
        self.keep_alive_hint: float | None = None
        #: Bytes fed to h11 while it waits for a response head (h11 checks the
        #: head size only while the head is incomplete; a whole one in one read
        #: would slip past, so we check too).
        self.head_bytes = 0

    def start_exchange(self) -> h11.Connection:
        """A fresh h11 state for the next request/response on this connection.

        A new ``h11.Connection`` costs less than ``start_next_cycle()`` on the
        old one (measured: 38 vs 45 us a cycle) and nothing is carried over:
        a response is only reused when it ended exactly at its declared end.
        """
        self.requests += 1
        if self.requests > 1:
            self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_SIZE)
        self.head_bytes = 0
        return self.h11

    def __repr__(self) -> str:
        return f"<HTTPConnection {self.origin.name} {self.h11.our_state}/{self.h11.their_state}>"

    async def send(self, data: bytes) -> None:
        """Send bytes (one checkpoint); a dead connection raises :class:`ConnectionLost`.

        The descriptor is written directly (:mod:`trionet._fdio`) and the send
        yields once, so a request/response exchange on a connection we own
        alone yields once: with many tasks on a few connections the response
        is usually there by the time we read (strace over 5,000 requests, 100
        tasks on 5 connections: 1.0 write + 1.1 read + 0.4 epoll_wait each).
        """
        try:
            await self.io.send(data)
            await self.io.checkpoint()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ConnectionLost(
                f"connection to {self.origin.name} lost while sending: {exc}"
            ) from exc

    async def next_event(self) -> Any:
        """The next h11 event from the server, reading as needed."""
        conn = self.h11
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise ProtocolError(f"bad response from {self.origin.name}: {exc}") from None
            if event is not h11.NEED_DATA:
                if self.head_bytes:
                    self._check_head_size(event)
                return event
            try:
                data = await self.io.receive(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                if conn.their_state is h11.SEND_RESPONSE and not conn.trailing_data[0]:
                    raise ConnectionLost(
                        f"{self.origin.name} reset the connection before responding: {exc}"
                    ) from exc
                raise ProtocolError(f"response from {self.origin.name} cut short: {exc}") from exc
            if not data and conn.their_state is h11.SEND_RESPONSE:
                if not conn.trailing_data[0]:
                    raise ConnectionLost(
                        f"{self.origin.name} closed the connection before responding"
                    )
                raise ProtocolError(
                    f"response from {self.origin.name} cut short in its head "
                    f"({len(conn.trailing_data[0])} bytes received)"
                )
            if conn.their_state is h11.SEND_RESPONSE:
                self.head_bytes += len(data)
            conn.receive_data(data)

    def _check_head_size(self, event: Any) -> None:
        """Refuse a response head over :data:`MAX_HEADER_SIZE` (Node: HPE_HEADER_OVERFLOW)."""
        if type(event) not in (h11.Response, h11.InformationalResponse):
            return
        received, self.head_bytes = self.head_bytes, 0
        if received <= MAX_HEADER_SIZE:
            return
        size = received - len(self.h11.trailing_data[0])
        if size > MAX_HEADER_SIZE:
            raise ProtocolError(
                f"bad response from {self.origin.name}: head of {size} bytes is over "
                f"the {MAX_HEADER_SIZE}-byte limit"
            )

    def looks_alive(self) -> bool:
        """False when an idle connection has something to read: EOF, a reset or junk.

        An idle HTTP/1.1 connection has nothing to say; when it is readable the
        server closed it (Node drops such sockets from ``freeSockets`` on their
        'end' event). One ``select`` call with no wait.
        """
        sock = raw_socket(self.stream)
        if sock is None:
            return True
        try:
            readable, _, _ = select.select([sock.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def close(self) -> None:
        """Close at once, without waiting (Node's ``destroy()``); safe to repeat."""
        # self.io sees the socket closed and never uses its old number again.
        sock = raw_socket(self.stream)
        if sock is not None:
            sock.close()

    def close_foreign(self) -> None:
        """Close a connection left over from another ``trio.run`` (no Trio calls)."""
        sock = raw_socket(self.stream)
        if sock is not None and sock.fileno() != -1:
            os.close(sock.detach())


async def open_connection(origin: Origin, generation: int = 0) -> HTTPConnection:
    """Open a TCP, Unix or TLS connection to ``origin``.

    Raises:
      ConnectError: refused or unreachable; names the address.
      TLSError: the TLS handshake failed; says why (e.g. the certificate check).
    """
    try:
        if origin.socket_path is not None:
            stream: trio.abc.Stream = await trio.open_unix_socket(origin.socket_path)
        else:
            stream = await trio.open_tcp_stream(origin.host, origin.port)
            stream.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, True)
    except OSError as exc:
        raise ConnectError(exc.errno, f"connect {exc.strerror or exc}: {origin.name}") from exc
    if origin.ssl_context is not None:
        stream = await _tls_handshake(stream, origin)
    return HTTPConnection(stream, origin, generation)


async def _tls_handshake(stream: trio.abc.Stream, origin: Origin) -> trio.SSLStream[Any]:
    """Wrap ``stream`` in TLS for ``origin`` and complete the handshake."""
    assert origin.ssl_context is not None
    tls = trio.SSLStream(
        stream, origin.ssl_context, server_hostname=origin.host, https_compatible=True
    )
    try:
        await tls.do_handshake()
    except (trio.BrokenResourceError, OSError) as exc:
        await trio.aclose_forcefully(stream)
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = f"certificate verify failed: {cause.verify_message or cause.reason}"
        elif isinstance(cause, ssl.SSLError):
            reason = cause.reason or str(cause)
        else:
            raise ConnectError(f"connection to {origin.name} lost during TLS handshake") from exc
        raise TLSError(f"TLS handshake with {origin.name} failed: {reason}") from exc
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return tls
