"""One HTTP request/response cycle: the app's ``receive`` and ``send`` over Request/Response.

:class:`HTTPCycle` is made per request and lives in the connection's task:
no task, no queue and no lock per request. ``receive()`` reads the body one
piece at a time, only when the app asks (backpressure: trionet never holds
more than one read of a slow app's body); ``send()`` maps the response
messages onto :class:`trionet.http.Response`, which does the framing
(Content-Length when the whole body comes in one message, chunked
otherwise, HEAD and 304 without a body).

Why not a queue between a reader task and the app, as uvicorn and hypercorn
have: that costs a task switch per message and a buffer of read-ahead,
and trionet's Request already reads on demand. The one thing a queue gives
is noticing a client that left while the app is busy; here ``receive()``
after the body watches for that itself (:func:`peer_gone`) and only then,
and ``send()`` raises :class:`~._types.ClientDisconnected` (an ``OSError``,
spec 2.4) once a write finds the client gone, which is how Starlette's
streaming responses learn it under spec 2.4.

The states of a response: nothing sent yet; ``http.response.start`` seen (its
head is held until the first body message, so that a whole body in one
message gets a Content-Length and an app that fails before its first body
still gets a clean 500); streaming; complete.

Errors are reported to the HTTP server, which answers them: a body that
broke a limit (413, 408, 400) is re-raised as the very ``ClientError`` the
server raised, so it answers with that status even if the app caught it and
tried a 500 of its own; a client that left ends quietly; anything else is
the app's failure (500 before the head went out, an aborted connection
after: never a truncated body passed off as complete).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncGenerator
from typing import Any, cast

import trio

from ..http import ClientError, Request, Response
from ._types import ASGIProtocolError, ClientDisconnected, Message, Scope

__all__ = ["FILE_CHUNK", "HTTPCycle", "body_length", "peer_gone", "peer_left"]

access_logger = logging.getLogger("trionet.access")

#: Bytes read from the file per write of an ``http.response.pathsend``
#: (the HTTP server's own read size, Node's highWaterMark).
FILE_CHUNK = 65536

_GONE = (trio.BrokenResourceError, trio.ClosedResourceError)

# Response states.
_NOTHING, _HEAD_PENDING, _STREAMING, _COMPLETE = range(4)


def body_length(headers: list[tuple[bytes, bytes]]) -> int:
    """The request body's length from its (lower-cased) headers; -1 for chunked.

    No Content-Length and no Transfer-Encoding is an empty body (RFC 9112
    section 6.3, rule 7); the HTTP server already refused conflicting or
    malformed framing headers before the app runs.
    """
    for name, value in headers:
        if name == b"content-length":
            return int(value)
        if name == b"transfer-encoding":
            return -1
    return 0


def _transport_socket(stream: Any) -> Any:
    """The Trio socket under a stream, looking through TLS layers; None if there is none."""
    while not isinstance(stream, trio.SocketStream):
        stream = getattr(stream, "transport_stream", None)
        if stream is None:
            return None
    return stream.socket


def _peek(raw: Any) -> bool | None:
    """Without waiting: True if the peer closed or reset, False if bytes wait, None if neither.

    A stdlib socket over the same descriptor does the non-blocking ``MSG_PEEK``
    (Trio's socket has only an ``async`` recv, which checks for cancellation
    first: Starlette's ``is_disconnected()`` calls ``receive()`` under an
    already-cancelled scope and must still get the answer).
    """
    probe = socket.socket(raw.family, raw.type, raw.proto, fileno=raw.fileno())
    try:
        data = probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None
    except OSError:
        return True
    finally:
        probe.detach()  # the descriptor stays the connection's
    return not data


def peer_left(stream: trio.abc.Stream) -> bool:
    """Whether the peer under ``stream`` has closed or reset the connection, now."""
    raw = _transport_socket(stream)
    return raw is not None and _peek(raw) is True


async def peer_gone(stream: trio.abc.Stream) -> None:
    """Return once the peer has closed or reset the connection under ``stream``.

    Peeks (``MSG_PEEK``) so that no byte is taken from the HTTP server, whose
    connection reads the next request after this one. If bytes are waiting
    instead (a pipelined request, a TLS record), the peer may well still be
    there and nothing more can be learned without reading: this then waits
    until cancelled (the caller cancels it when the response is complete).

    TODO(hook): an ``await req.wait_disconnected()`` from the HTTP server,
    which owns the buffer, would also notice a close behind pipelined bytes
    and under TLS.
    """
    raw = _transport_socket(stream)
    while raw is not None:
        gone = _peek(raw)
        if gone is True:
            return
        if gone is False:
            break
        await trio.lowlevel.wait_readable(raw)
    await trio.sleep_forever()


class HTTPCycle:
    """``receive`` and ``send`` of one request (see the module docstring)."""

    __slots__ = (
        "_body",
        "_left",
        "_waiters",
        "access_log",
        "body_done",
        "client_error",
        "disconnected",
        "headers",
        "req",
        "res",
        "scope",
        "sent",
        "state",
        "status",
    )

    def __init__(self, req: Request, res: Response, scope: Scope, access_log: bool) -> None:
        self.req = req
        self.res = res
        self.scope = scope
        self.access_log = access_log
        self.state = _NOTHING
        self.status = 200
        self.headers: Any = ()
        self.body_done = False
        self.disconnected = False
        #: The limit the body broke while the app read it (the server answers it).
        self.client_error: ClientError | None = None
        #: Body bytes handed to the Response (the access log's size).
        self.sent = 0
        self._body: AsyncGenerator[bytes, None] | None = None
        self._left = 0
        self._waiters: list[trio.CancelScope] | None = None

    @property
    def complete(self) -> bool:
        """Whether the whole response went out."""
        return self.state == _COMPLETE

    @property
    def reading(self) -> bool:
        """Whether the app began the body and left some of it unread."""
        return self._body is not None

    @property
    def started(self) -> bool:
        """Whether ``http.response.start`` was sent by the app."""
        return self.state != _NOTHING

    # -- receive ---------------------------------------------------------------------
    async def receive(self) -> Message:
        """The next ``http.request`` piece; after the body, ``http.disconnect`` when it happens."""
        if not self.body_done:
            return await self._read()
        if not (self.disconnected or self.state == _COMPLETE):
            if peer_left(self.req.socket.stream):
                self.disconnected = True
            else:
                await self._wait_disconnect()
        return {"type": "http.disconnect"}

    async def _read(self) -> Message:
        body = self._body
        if body is None:
            left = body_length(self.scope["headers"])
            if left == 0:
                self.body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            self._left = left
            # Request.__aiter__ is an async generator; typed as an iterator.
            body = self._body = cast("AsyncGenerator[bytes, None]", self.req.__aiter__())
        try:
            chunk = await body.__anext__()
        except StopAsyncIteration:
            chunk = b""
        except ClientError as exc:  # over max_body_size, too slow, cut short
            self.client_error = exc
            self.body_done = self.disconnected = True
            return {"type": "http.disconnect"}
        except _GONE:
            self.body_done = self.disconnected = True
            return {"type": "http.disconnect"}
        if self._left > 0:
            self._left -= len(chunk)
            more = self._left > 0
        else:
            more = bool(chunk)
        if not more:
            self.body_done = True
            await self.close_body()
        return {"type": "http.request", "body": chunk, "more_body": more}

    async def close_body(self) -> None:
        """Let go of the body reader (the HTTP server drains or closes what is left)."""
        body, self._body = self._body, None
        if body is not None:
            await body.aclose()

    async def _wait_disconnect(self) -> None:
        """Wait until the client leaves or the response is complete (the first waiter peeks)."""
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        scope = trio.CancelScope()
        waiters.append(scope)
        try:
            with scope:
                if len(waiters) > 1:
                    await trio.sleep_forever()
                else:
                    await peer_gone(self.req.socket.stream)
                    self.disconnected = True
                    self._wake()
        finally:
            waiters.remove(scope)

    def _wake(self) -> None:
        for scope in self._waiters or ():
            scope.cancel()

    # -- send ------------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        """Take one response message from the app."""
        kind = message["type"]
        if kind == "http.response.body":
            state = self.state
            if state != _HEAD_PENDING and state != _STREAMING:
                raise self._misuse(kind)
            if self.disconnected:
                raise ClientDisconnected("the client disconnected")
            body = message.get("body", b"")
            self.sent += len(body)
            try:
                if state == _HEAD_PENDING:
                    self._apply_head()
                if message.get("more_body", False):
                    self.state = _STREAMING
                    await self.res.write(body)
                else:
                    self.state = _COMPLETE
                    await self.res.end(body)
                    self._completed()
            except _GONE as exc:
                self.disconnected = True
                raise ClientDisconnected("the client disconnected") from exc
        elif kind == "http.response.start":
            if self.state != _NOTHING:
                raise self._misuse(kind)
            if message.get("trailers", False):
                raise ASGIProtocolError(
                    "http.response.start asks for trailers, but this server does not "
                    "offer the http.response.trailers extension"
                )
            self.status = message["status"]
            self.headers = message.get("headers", ())
            self.state = _HEAD_PENDING
        elif kind == "http.response.pathsend":
            if self.state != _HEAD_PENDING:
                raise self._misuse(kind)
            if self.disconnected:
                raise ClientDisconnected("the client disconnected")
            try:
                await self._send_file(message["path"])
            except _GONE as exc:
                self.disconnected = True
                raise ClientDisconnected("the client disconnected") from exc
        else:
            raise self._misuse(kind)

    def _misuse(self, kind: str) -> ASGIProtocolError:
        what = {
            _NOTHING: "before http.response.start",
            _HEAD_PENDING: "after http.response.start",
            _STREAMING: "while the response body is streaming",
            _COMPLETE: "after the response was complete",
        }[self.state]
        return ASGIProtocolError(f"unexpected ASGI message {kind!r} {what}")

    def _apply_head(self) -> None:
        """Give the status and headers to the Response (sent with its first write)."""
        res = self.res
        res.write_head(self.status)
        for raw_name, value in self.headers:
            name = raw_name.decode("latin-1")
            if res.has_header(name):  # repeated (Set-Cookie): one line per value
                previous = res.get_header(name)
                values = list(previous) if isinstance(previous, list) else [previous]
                res.set_header(name, [*values, value])
            else:
                res.set_header(name, value)

    async def _send_file(self, path: str) -> None:
        """``http.response.pathsend``: the file's bytes as the body.

        TODO(hook): zero-copy needs ``os.sendfile`` on the connection's
        descriptor, under its send turn, with the head in front (e.g.
        ``await res.send_file(fd, offset, count)`` on the HTTP Response);
        meanwhile the file is read in :data:`FILE_CHUNK` pieces in a thread.
        """
        if self.req.method == "HEAD":
            self._apply_head()
            self.state = _COMPLETE
            await self.res.end()
            self._completed()
            return
        async with await trio.open_file(path, "rb") as file:  # fails before any byte is sent
            self._apply_head()
            self.state = _STREAMING
            while chunk := await file.read(FILE_CHUNK):
                self.sent += len(chunk)
                await self.res.write(chunk)
        self.state = _COMPLETE
        await self.res.end()
        self._completed()

    def _completed(self) -> None:
        if self._waiters:
            self._wake()
        if self.access_log:
            log_access(self.req, self.status, self.sent)


def log_access(req: Request, status: int, size: int) -> None:
    """One line in the common log format (NCSA's; Apache's ``%h %l %u %t "%r" %>s %b``).

    ``host - - [day/Mon/year:HH:MM:SS +zone] "METHOD target HTTP/x" status size``,
    with ``-`` for an empty body, as the format says.
    """
    address = req.remote_address
    host = address[0] if isinstance(address, tuple) else "-"
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z")
    access_logger.info(
        '%s - - [%s] "%s %s HTTP/%s" %d %s',
        host,
        stamp,
        req.method,
        req.url,
        req.http_version,
        status,
        size or "-",
    )
