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
after the body asks the HTTP server for that, and only then
(``Response.wait_closed()``, Node's ``res.on('close')``: it reads the
connection ahead into the server's own buffer, so a close is seen behind
pipelined bytes and under TLS, and the pipelined request is still served),
and ``send()`` raises :class:`~._types.ClientDisconnected` (an ``OSError``,
spec 2.4) once a write finds the client gone, which is how Starlette's
streaming responses learn it under spec 2.4.

The states of a response: nothing sent yet; ``http.response.start`` seen (its
status and headers are checked and set on the Response at once, so a bad
header raises at the app's line, but go out only with the first body
message, so that a whole body in one message gets a Content-Length in one
write and an app that fails before its first body still gets a clean 500);
streaming; the body done and trailers awaited (``"trailers": True``: the body
is chunked, and the ``http.response.trailers`` messages end it); complete.
``http.response.pathsend`` is ``Response.send_file``: ``sendfile`` on plain
TCP, with a Content-Length.

Errors are reported to the HTTP server, which answers them: a body that
broke a limit (413, 408, 400) is re-raised as the very ``ClientError`` the
server raised, so it answers with that status even if the app caught it and
tried a 500 of its own; a client that left ends quietly; anything else is
the app's failure (500 before the head went out, an aborted connection
after: never a truncated body passed off as complete).
"""

from __future__ import annotations

import logging
import time

import trio

from ..http import ClientError, Request, Response
from ..http._files import FILE_CHUNK
from ._types import ASGIProtocolError, ClientDisconnected, Message

__all__ = ["HTTPCycle"]

access_logger = logging.getLogger("trionet.access")


_GONE = (trio.BrokenResourceError, trio.ClosedResourceError)

# Response states: nothing sent yet; http.response.start taken (its head
# waits for the first body message); streaming; the body is done and
# trailers are awaited; complete.
_NOTHING, _STARTED, _STREAMING, _TRAILERS, _COMPLETE = range(5)


class HTTPCycle:
    """``receive`` and ``send`` of one request (see the module docstring)."""

    __slots__ = (
        "access_log",
        "body_done",
        "client_error",
        "disconnected",
        "req",
        "res",
        "sent",
        "state",
        "trailers",
    )

    def __init__(self, req: Request, res: Response, access_log: bool) -> None:
        self.req = req
        self.res = res
        self.access_log = access_log
        self.state = _NOTHING
        #: ``http.response.start`` asked for trailers: the body is chunked and
        #: ends with the ``http.response.trailers`` messages.
        self.trailers = False
        self.body_done = False
        self.disconnected = False
        #: The limit the body broke while the app read it (the server answers it).
        self.client_error: ClientError | None = None
        #: Body bytes handed to the Response (the access log's size).
        self.sent = 0

    @property
    def complete(self) -> bool:
        """Whether the whole response went out."""
        return self.state == _COMPLETE

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
            res = self.res
            # Starlette's is_disconnected() asks under an already-cancelled
            # scope and needs the answer: first what has arrived by now.
            if not await res.client_gone():
                await res.wait_closed()  # the client leaves or the response completes
            if not res.finished:
                self.disconnected = True
        return {"type": "http.disconnect"}

    async def _read(self) -> Message:
        """The next piece of the body, read now (backpressure: nothing is read ahead).

        Read with the request body's own ``read()``, never through an async
        generator over it (``async for chunk in req``): Starlette's
        ``is_disconnected()`` calls ``receive()`` in a cancelled scope, and a
        cancelled generator is finished for good, so the rest of the body
        would read as nothing forever (the app looped on empty pieces and
        the server with it). ``read()`` is cancel-safe: a cancelled call
        takes no byte.
        """
        body = self.req._body  # the RequestBody under trionet's Request
        try:
            chunk = await body.read()
        except ClientError as exc:  # over max_body_size, too slow, cut short
            self.client_error = exc
            self.body_done = self.disconnected = True
            return {"type": "http.disconnect"}
        except _GONE:
            self.body_done = self.disconnected = True
            return {"type": "http.disconnect"}
        more = not body.done
        if not more:
            self.body_done = True
        return {"type": "http.request", "body": chunk, "more_body": more}

    # -- send ------------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        """Take one response message from the app.

        The usual response, a start and one whole body, is two dict lookups
        and ``Response.end(body)``: one write with a Content-Length.
        """
        kind = message["type"]
        if kind == "http.response.body":
            state = self.state
            if state != _STARTED and state != _STREAMING:
                raise self._misuse(kind)
            if self.disconnected:
                raise ClientDisconnected("the client disconnected")
            body = message.get("body", b"")
            self.sent += len(body)
            try:
                if message.get("more_body", False):
                    self.state = _STREAMING
                    await self.res.write(body)
                elif self.trailers:  # chunked, so that the trailer section can follow
                    self.state = _TRAILERS
                    await self.res.write(body)
                else:
                    self.state = _COMPLETE
                    await self.res.end(body)
                    if self.access_log:
                        self._completed()
            except _GONE as exc:
                self.disconnected = True
                raise ClientDisconnected("the client disconnected") from exc
        elif kind == "http.response.start":
            if self.state != _NOTHING:
                raise self._misuse(kind)
            res = self.res
            # The head is checked now, so a bad status or header raises at the
            # app's own line; it goes out with the first body message.
            status = message["status"]
            if type(status) is int and 100 <= status <= 999:
                res.status_code = status  # write_head's checks, without its headers argument
            else:
                res.write_head(status)  # raises its error, or takes an int subclass
            res.set_headers(message.get("headers", ()))
            self.trailers = bool(message.get("trailers", False))
            self.state = _STARTED
        elif kind == "http.response.trailers":
            if self.state != _TRAILERS:
                raise self._misuse(kind)
            self.res.add_trailers(message.get("headers", ()))
            if not message.get("more_trailers", False):
                self.state = _COMPLETE
                await self._end(b"")
        elif kind == "http.response.pathsend":
            if self.state != _STARTED:
                raise self._misuse(kind)
            if self.disconnected:
                raise ClientDisconnected("the client disconnected")
            await self._send_file(message["path"])
        else:
            raise self._misuse(kind)

    async def _end(self, body: bytes) -> None:
        try:
            await self.res.end(body)
        except _GONE as exc:
            self.disconnected = True
            raise ClientDisconnected("the client disconnected") from exc
        self._completed()

    def _misuse(self, kind: str) -> ASGIProtocolError:
        what = {
            _NOTHING: "before http.response.start",
            _STARTED: "after http.response.start",
            _STREAMING: "while the response body is streaming",
            _TRAILERS: "while the response trailers are awaited",
            _COMPLETE: "after the response was complete",
        }[self.state]
        if kind == "http.response.trailers" and not self.trailers and self.state != _NOTHING:
            what += " (which did not ask for trailers)"
        return ASGIProtocolError(f"unexpected ASGI message {kind!r} {what}")

    async def _send_file(self, path: str) -> None:
        """``http.response.pathsend``: the file as the body, by ``sendfile`` on plain TCP.

        A file that cannot be opened fails before any byte is sent (the app
        gets the ``OSError``; the server answers 500).
        """
        if self.trailers:
            self.state = _TRAILERS
        else:
            self.state = _COMPLETE
        res = self.res
        try:
            if self.trailers:
                # send_file ends the response; with trailers to come, stream it.
                async with await trio.open_file(path, "rb") as file:
                    while chunk := await file.read(FILE_CHUNK):
                        self.sent += len(chunk)
                        await res.write(chunk)
                return
            await res.send_file(path)
            if self.access_log:
                self.sent += (await trio.Path(path).stat()).st_size
        except _GONE as exc:
            self.disconnected = True
            raise ClientDisconnected("the client disconnected") from exc
        self._completed()

    def _completed(self) -> None:
        if self.access_log:
            log_access(self.req, self.res.status_code, self.sent)


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
