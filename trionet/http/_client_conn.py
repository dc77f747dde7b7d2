"""One client connection: a Trio stream (TCP, Unix or TLS) with an h11 client on it.

The agent pools these (an :class:`HTTPConnection` is the agent's
:class:`~trionet.agent.PooledConnection`, :func:`open_connection` its opener);
the request code in :mod:`trionet.http._client_exchange` drives them through
:meth:`HTTPConnection.exchange`, which sends a request and reads
the response head. Opening maps every failure to trionet's errors
(:class:`ConnectError`, :class:`TLSError`); reading maps h11's complaints to
:class:`ProtocolError` and tells apart the one failure a retry can fix: the
server closed the connection before sending a single byte of the response
(:class:`ConnectionLost`).

The server may answer before it has read the whole request body: a ``413``
for an upload over its limit, then it closes. RFC 9112 §9.5: "A client
sending a message body SHOULD monitor the network connection for an error
response while it is transmitting the request", and curl and Node's client
both report that response. So a large or streamed body goes out from a task
of its own while the request's task reads; a final response of 300 or more
that arrives first stops the upload (curl's default, see its
``CURLOPT_KEEP_SENDING_ON_ERROR``), one under 300 lets it finish (Node and
curl keep sending). The upload stops only once that response's body is read
(into :attr:`HTTPConnection.replay`, up to :data:`EARLY_BODY_LIMIT`):
cancelling a send breaks a ``trio.SSLStream``, and the answer with it. A send
that fails (``EPIPE``, ``ECONNRESET``) is not the
error either: what the server sent before closing is read and returned.
Either way a request whose body did not go out whole marks the connection
unusable (h11's ``send_failed()``), so it is never pooled.

Rejected: reading only after a failed send. On plain TCP the kernel keeps
the response readable after the reset, but a TLS stream is broken by the
failed send and a server that answers and stops reading without closing
would leave the upload blocked until a timeout. Also rejected: a watching
task for every request; a small body goes out with the head in one write
(the request path's single system call), so only bodies over
:data:`WATCHED_BODY_SIZE` pay for the task.
"""

from __future__ import annotations

import os
import select
import ssl
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import h11
import trio

from .._errors import ConnectError, ConnectionLost, ProtocolError, TLSError
from .._fdio import DEFAULT_RECEIVE_SIZE
from .._stream import Socket, raw_socket
from .._tls_failure import handshake_failure
from ._client_reader import ResponseReader
from ._limits import DEFAULT_MAX_HEADER_SIZE

__all__ = [
    "EARLY_BODY_LIMIT",
    "END",
    "STOP_SENDING_STATUS",
    "WATCHED_BODY_SIZE",
    "HTTPConnection",
    "Origin",
    "check_framing",
    "open_connection",
]

#: Bytes asked of the kernel per read; a whole small response arrives in one.
RECEIVE_SIZE = DEFAULT_RECEIVE_SIZE

#: Longest response head we accept, Node's ``http.maxHeaderSize`` (16 KiB), as the server.
MAX_HEADER_SIZE = DEFAULT_MAX_HEADER_SIZE

#: Bodies up to this size go out with the head in one write and nothing
#: watches for an early response while they do: the kernel takes them at
#: once (Linux's send buffer starts at 16 KiB, ``tcp_wmem``, and grows; on
#: loopback it holds megabytes) and a server that answers and closes is still
#: heard, by reading after the failed send. Larger bodies and streamed ones
#: are sent by a task of their own (a nursery and a task: a few microseconds,
#: small next to sending 64 KiB).
WATCHED_BODY_SIZE = 65536

#: A final response with this status or more that arrives while the body is
#: still going out stops the upload (curl's default; its
#: ``CURLOPT_KEEP_SENDING_ON_ERROR`` keeps sending). Below it, the body is
#: sent to the end, as Node's client does.
STOP_SENDING_STATUS = 300

#: An early final response of :data:`STOP_SENDING_STATUS` or more is read up
#: to this much of its body before the upload stops (error pages are small);
#: past it the upload stops anyway, and on TLS the rest may be lost.
EARLY_BODY_LIMIT = 1024 * 1024

#: h11 events are immutable: one end-of-message serves every request.
END = h11.EndOfMessage()

#: A body as the exchange sends it: whole bytes, or chunks from an iterable.
BodyIterable = AsyncIterable[bytes | str]


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


def check_framing(event: h11.Response, origin: Origin) -> None:
    """Refuse a response with both Content-Length and Transfer-Encoding.

    RFC 9112 §6.2: "A sender MUST NOT send a Content-Length header field in
    any message that contains a Transfer-Encoding header field"; §6.3 (3):
    such a message "ought to be handled as an error" (a smuggling or
    response-splitting sign). Node's client fails with
    HPE_INVALID_TRANSFER_ENCODING ("Transfer-Encoding can't be present with
    Content-Length"); h11 lets Transfer-Encoding win and would reuse the
    connection. The caller closes it.

    Only header names 17 bytes long are lowered and compared: 0.4 us on a
    five-header response.
    """
    items = event.headers.raw_items()
    for name, _ in items:
        if len(name) == 17 and name.lower() == b"transfer-encoding":
            if any(other.lower() == b"content-length" for other, _ in items):
                raise ProtocolError(
                    f"bad response from {origin.name}: both Content-Length and "
                    "Transfer-Encoding (RFC 9112 §6.3)"
                )
            return


@dataclass(slots=True)
class _Upload:
    """How the body's task ended: sent whole, or failed (the caller's iterator raised)."""

    done: bool = False
    error: Exception | None = None


class HTTPConnection:
    """A :class:`trionet.net.Socket` plus the h11 state of the exchange running over it."""

    __slots__ = (
        "generation",
        "h11",
        "head_bytes",
        "keep_alive_hint",
        "origin",
        "replay",
        "requests",
        "serial",
        "socket",
    )

    def __init__(self, stream: trio.abc.Stream | Socket, origin: Origin) -> None:
        #: The connection's one Socket (``stream`` itself when it is one, as
        #: the WebSocket client's): direct reads and writes on plain TCP and
        #: Unix sockets (:mod:`trionet._fdio`), the stream's own under TLS; its
        #: byte counters run from the first request. Made here, it stays
        #: half-open when the server ends its side: this driver decides what
        #: an end means.
        self.socket = stream if isinstance(stream, Socket) else Socket(stream)
        self.origin = origin
        #: The exchange's parser: an h11 client, or for a request sent whole
        #: (:meth:`exchange_whole`) h11's readers alone.
        self.h11: h11.Connection | ResponseReader = h11.Connection(
            h11.CLIENT, max_incomplete_event_size=MAX_HEADER_SIZE
        )
        #: Exchanges begun on this connection.
        self.requests = 0
        #: The agent's count of connections when this one was opened (set by the agent).
        self.serial = 0
        #: The agent's run generation this connection belongs to (set by the
        #: agent; Trio sockets cannot cross ``trio.run`` calls).
        self.generation = 0
        #: Seconds from the server's ``Keep-Alive: timeout=N``, when it sent one.
        self.keep_alive_hint: float | None = None
        #: Bytes fed to h11 while it waits for a response head (h11 checks the
        #: head size only while the head is incomplete; a whole one in one read
        #: would slip past, so we check too).
        self.head_bytes = 0
        #: Events read ahead (an early response's body), handed out first.
        self.replay: list[Any] = []

    @property
    def stream(self) -> trio.abc.Stream:
        """The Trio stream under :attr:`socket` (TCP, Unix or TLS)."""
        return self.socket.stream

    def start_exchange(self) -> h11.Connection:
        """A fresh h11 state for the next request/response on this connection.

        A new ``h11.Connection`` costs less than ``start_next_cycle()`` on the
        old one (measured: 38 vs 45 us a cycle) and nothing is carried over:
        a response is only reused when it ended exactly at its declared end.
        """
        self.requests += 1
        h = self.h11
        if self.requests > 1 or not isinstance(h, h11.Connection):
            h = self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_SIZE)
        self.head_bytes = 0
        return h

    def __repr__(self) -> str:
        return f"<HTTPConnection {self.origin.name} {self.h11.our_state}/{self.h11.their_state}>"

    async def send(self, data: bytes) -> None:
        """Send bytes (one checkpoint); a dead connection raises :class:`ConnectionLost`.

        The Socket writes the descriptor directly (:mod:`trionet._fdio`) and the
        send yields once, so a request/response exchange on a connection we own
        alone yields once: with many tasks on a few connections the response
        is usually there by the time we read (strace over 5,000 requests, 100
        tasks on 5 connections: 1.0 write + 1.1 read + 0.4 epoll_wait each).
        """
        sock = self.socket
        try:
            await sock.send(data)
            await sock.checkpoint()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ConnectionLost(
                f"connection to {self.origin.name} lost while sending: {exc}"
            ) from exc

    # -- one exchange ------------------------------------------------------------------
    async def exchange_whole(self, wire: bytes, method: bytes, keep_alive: bool) -> h11.Response:
        """Send a request h11 already wrote whole (head and body) and read its final head.

        The fast path of :meth:`exchange` (see :mod:`._client_reader`): no
        ``h11.Connection``; ``keep_alive`` is h11's verdict on the request.
        Raises as :meth:`exchange`.
        """
        self.requests += 1
        self.head_bytes = 0
        reader = self.h11 = ResponseReader(method, keep_alive, MAX_HEADER_SIZE)
        try:
            await self.send(wire)
        except ConnectionLost:
            # Closed or reset: read what the server said before it went.
            reader.send_failed()
        return await self.receive_head()

    async def exchange(
        self,
        request: h11.Request,
        body: bytes | None,
        body_iter: BodyIterable | None,
        expect_continue: bool,
    ) -> h11.Response:
        """Send a request and read its final response head (other 1xx are skipped).

        ``body`` is the whole body (``b""`` for none) or None when ``body_iter``
        gives it in chunks. With ``expect_continue`` the body waits for
        ``100 Continue``; a final response instead means it is never sent.
        A response that came before the body went out whole is returned (see
        the module docstring) and the connection is left unusable.

        Raises:
          ConnectionLost: the server closed or reset the connection without
            answering.
          ProtocolError: the response head is malformed, too large, or has
            both Content-Length and Transfer-Encoding.
        """
        h = self.start_exchange()
        head = h.send(request)
        assert head is not None
        if expect_continue:
            await self.send(head)
            event = await self.next_event()
            while type(event) is h11.InformationalResponse and event.status_code != 100:
                event = await self.next_event()
            if type(event) is h11.Response:
                check_framing(event, self.origin)
                return event  # refused before the body: the connection won't be reused
            head = b""
        elif body is not None and len(body) <= WATCHED_BODY_SIZE:
            if body:
                head += h.send(h11.Data(data=body))
            try:
                await self.send(head + h.send(END))
            except ConnectionLost:
                # Closed or reset: read what the server said before it went
                # (nothing, on a stale keep-alive connection: ConnectionLost).
                h.send_failed()
            return await self.receive_head()
        return await self._send_watching(h, head, body, body_iter)

    async def receive_head(self) -> h11.Response:
        """Read the final response head, skipping 1xx responses."""
        event = await self.next_event()
        while type(event) is h11.InformationalResponse:
            event = await self.next_event()
        if type(event) is not h11.Response:
            raise ProtocolError(f"unexpected {event!r} from {self.origin.name}")
        check_framing(event, self.origin)
        return event

    async def _send_watching(
        self,
        h: h11.Connection,
        head: bytes,
        body: bytes | None,
        body_iter: BodyIterable | None,
    ) -> h11.Response:
        """Send the body from a task of its own while this one reads the response head."""
        upload = _Upload()
        response: h11.Response | None = None
        failure: Exception | None = None
        # Both tasks keep their exceptions and the nursery ends cleanly, so the
        # caller sees ConnectionLost or ProtocolError, not an ExceptionGroup.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                self._upload, h, head, body, body_iter, upload, nursery.cancel_scope
            )
            try:
                response = await self.receive_head()
            except Exception as exc:
                failure = exc
                nursery.cancel_scope.cancel()
            else:
                if response.status_code >= STOP_SENDING_STATUS and not upload.done:
                    # Read the answer first, then stop the upload: a cancelled
                    # send breaks a TLS stream (trio.SSLStream), answer unread.
                    try:
                        await self._buffer_body()
                    except Exception as exc:
                        failure = exc
                    nursery.cancel_scope.cancel()
        if upload.error is not None:
            raise upload.error
        if not upload.done:
            h.send_failed()
        if failure is not None:
            raise failure
        assert response is not None
        return response

    async def _buffer_body(self) -> None:
        """Read the response body into :attr:`replay`, up to :data:`EARLY_BODY_LIMIT` bytes."""
        size = 0
        while size <= EARLY_BODY_LIMIT:
            event = await self.next_event()
            self.replay.append(event)
            kind = type(event)
            if kind is h11.Data:
                size += len(event.data)
            elif kind is h11.EndOfMessage:
                return

    async def _upload(
        self,
        h: h11.Connection,
        head: bytes,
        body: bytes | None,
        body_iter: BodyIterable | None,
        upload: _Upload,
        scope: trio.CancelScope,
    ) -> None:
        try:
            await self._send_body(h, head, body, body_iter)
        except ConnectionLost:
            pass  # the reading task reports the server's response, or its absence
        except Exception as exc:
            upload.error = exc
            scope.cancel()
        else:
            upload.done = True

    async def _send_body(
        self,
        h: h11.Connection,
        head: bytes,
        body: bytes | None,
        body_iter: BodyIterable | None,
    ) -> None:
        """Send the body after ``head`` (bytes already owed): whole, or chunk by chunk."""
        if body is not None:
            out = head + (h.send(h11.Data(data=body)) or b"") if body else head
            await self.send(out + (h.send(END) or b""))
            return
        assert body_iter is not None
        if head:
            await self.send(head)
        async for chunk in body_iter:
            if isinstance(chunk, str):
                chunk = chunk.encode()
            if chunk:
                await self.send(h.send(h11.Data(data=chunk)) or b"")
        await self.send(h.send(END) or b"")

    async def next_event(self) -> Any:
        """The next h11 event from the server, reading as needed."""
        if self.replay:
            return self.replay.pop(0)
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
                data = await self.socket.receive(RECEIVE_SIZE)
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
        # The Socket sees its descriptor closed and never uses the old number again.
        sock = raw_socket(self.stream)
        if sock is not None:
            sock.close()

    def close_foreign(self) -> None:
        """Close a connection left over from another ``trio.run`` (no Trio calls)."""
        sock = raw_socket(self.stream)
        if sock is not None and sock.fileno() != -1:
            os.close(sock.detach())


async def open_connection(origin: Origin) -> HTTPConnection:
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
    return HTTPConnection(stream, origin)


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
        failure = handshake_failure(exc)
        if failure.connection_lost:
            raise ConnectError(f"connection to {origin.name} lost during TLS handshake") from exc
        raise TLSError(failure.message(origin.name)) from exc
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return tls
