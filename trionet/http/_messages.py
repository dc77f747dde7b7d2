"""Response: what the app answers an HTTP request with (Node's ``ServerResponse``).

The response keeps what the app sets and hands it to
:func:`~._framing.frame_response` for the head, built in one ``bytes.join``
so that ``end(data)`` is a single write. Like the :class:`~._request.Request`
(re-exported here with it: the two are the app's side of one exchange), it
reaches the connection only through :class:`~._request.Exchange`; the
driver reads back only public state (``headers_sent``, ``finished``,
``should_keep_alive``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

import trio

from .._fdio import JOIN_LIMIT
from ._body import RequestBody
from ._close_watch import CloseWatch
from ._files import FILE_CHUNK, open_file, sendfile
from ._framing import NO_TRAILER_FIELDS, AppHeaders, frame_response, has_body, last_chunk
from ._headers import HeaderValue, encode_header
from ._request import Exchange, Request

__all__ = ["Exchange", "HeaderPairs", "Request", "Response"]

#: Headers as pairs, the way ASGI and the wire carry them: names of any case,
#: ``str`` or ``bytes`` (latin-1); a name may repeat.
HeaderPairs = Iterable[tuple[str | bytes, HeaderValue]]


class Response:
    """The response to one request, as Node's ``http.ServerResponse``.

    Headers are buffered until the first :meth:`write` or :meth:`end`. A body
    given whole to ``end(data)`` goes out with ``Content-Length`` in one write;
    a body written piece by piece is chunked (or close-delimited for HTTP/1.0).
    """

    __slots__ = (
        "_bodiless",
        "_body",
        "_chunked",
        "_exchange",
        "_headers",
        "_method",
        "_trailers",
        "_unsent",
        "_watch",
        "finished",
        "headers_sent",
        "should_keep_alive",
        "status_code",
        "status_message",
    )

    def __init__(self, exchange: Exchange, body: RequestBody, method: bytes) -> None:
        self._exchange = exchange
        self._body = body
        self._method = method
        self.status_code = 200
        #: The reason phrase; None sends the standard one.
        self.status_message: str | None = None
        # Lower-case name -> (the value as given, its validated wire lines).
        self._headers: AppHeaders = {}
        self.headers_sent = False
        #: ``end()`` has run: the whole response was handed to the kernel.
        self.finished = False
        #: The connection stays open after this response (Node's
        #: ``res.shouldKeepAlive``): decided when the head goes out, and
        #: cleared if the response ends short of its Content-Length or fails.
        #: Setting it to False before the head goes out sends ``Connection: close``.
        self.should_keep_alive = True
        self._chunked = False
        # The status or method forbids body bytes (HEAD, 204, 304): set with the head.
        self._bodiless = False
        # Body bytes still owed when the app set Content-Length itself (-1: not set).
        self._unsent = -1
        # The trailer section's encoded lines (add_trailers).
        self._trailers = b""
        # Made by the first wait_closed(); end() wakes it.
        self._watch: CloseWatch | None = None

    def __repr__(self) -> str:
        return f"<trionet.http.Response {self.status_code}>"

    # -- headers ---------------------------------------------------------------
    def set_header(self, name: str, value: HeaderValue) -> None:
        """Set a header, replacing any earlier value; a list sends one line per value.

        Raises:
          ValueError: the name is not a token or the value has CR, LF or NUL.
          RuntimeError: the headers were already sent.
        """
        if self.headers_sent:
            raise RuntimeError("cannot set headers after they are sent")
        self._headers[name.lower()] = (value, encode_header(name, value))

    def set_headers(self, headers: HeaderPairs) -> None:
        """Set headers from ``(name, value)`` pairs, as ASGI apps and the wire give them.

        Node's ``res.setHeaders()`` for pairs: names of any case, ``str`` or
        ``bytes``; a name given twice in ``headers`` sends one line per value
        (``Set-Cookie``), and replaces what was set under it before. Each
        pair is checked as in :meth:`set_header`, once: apps send the same
        few pairs again and again, so a pair seen before costs one lookup.

        Raises:
          ValueError: a name is not a token or a value has CR, LF or NUL.
          RuntimeError: the headers were already sent.
        """
        if self.headers_sent:
            raise RuntimeError("cannot set headers after they are sent")
        fresh: AppHeaders = {}
        for name, value in headers:
            try:
                key, line = _pair_line(name, value)  # type: ignore[arg-type]
            except TypeError:  # an unhashable value (a list): not cached
                key, line = _pair_line.__wrapped__(name, value)
            entry = fresh.get(key)
            if entry is None:
                fresh[key] = (value, line)
            else:
                previous = entry[0]
                values = list(previous) if isinstance(previous, list | tuple) else [previous]
                values.append(value)  # type: ignore[arg-type]
                fresh[key] = (values, entry[1] + line)  # type: ignore[assignment]
        self._headers.update(fresh)

    def add_trailers(self, headers: Mapping[str, HeaderValue] | HeaderPairs) -> None:
        """Add trailer fields, sent after a chunked body (Node's ``res.addTrailers()``).

        As in Node, trailers go out only with a chunked body: added before
        the head is sent, they make ``end(data)`` chunk its body instead of
        sending a Content-Length (Node does so when a ``Trailer`` header is
        set); an HTTP/1.0 client, which cannot be sent chunks, gets none.
        Announce them with a ``Trailer`` header (RFC 9110 section 6.6.2).

        Raises:
          ValueError: a field that frames, routes or controls the message
            (RFC 9110 section 6.5.1), a name that is not a token, or a
            value with CR, LF or NUL.
          RuntimeError: the response already ended.
        """
        if self.finished:
            raise RuntimeError("add_trailers() after end()")
        items = headers.items() if isinstance(headers, Mapping) else headers
        lines = []
        for name, value in items:
            text = name if isinstance(name, str) else name.decode("latin-1")
            if text.lower() in NO_TRAILER_FIELDS:
                raise ValueError(f"{text!r} may not be sent as a trailer (RFC 9110 section 6.5.1)")
            lines.append(encode_header(text, value))
        self._trailers += b"".join(lines)

    def get_header(self, name: str) -> HeaderValue | None:
        """The value set for ``name`` (any case), or None."""
        entry = self._headers.get(name.lower())
        return None if entry is None else entry[0]

    def has_header(self, name: str) -> bool:
        """Whether a header ``name`` (any case) is set."""
        return name.lower() in self._headers

    def remove_header(self, name: str) -> None:
        """Remove a header set earlier (no error if absent)."""
        if self.headers_sent:
            raise RuntimeError("cannot remove headers after they are sent")
        self._headers.pop(name.lower(), None)

    def get_headers(self) -> dict[str, HeaderValue]:
        """All headers set so far, lower-case names to values."""
        return {name: entry[0] for name, entry in self._headers.items()}

    def write_head(
        self,
        status: int,
        headers: Mapping[str, HeaderValue] | Sequence[tuple[str, HeaderValue]] | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        """Set the status (and optionally reason and headers); sent with the first write."""
        if self.headers_sent:
            raise RuntimeError("write_head() after the headers were sent")
        if not 100 <= status <= 999:
            raise ValueError(f"invalid status code {status}")
        self.status_code = status
        if reason is not None:
            self.status_message = reason
        items = headers.items() if isinstance(headers, Mapping) else headers or ()
        for name, value in items:
            self.set_header(name, value)

    async def write_continue(self) -> None:
        """Send ``100 Continue`` (for ``on_check_continue`` hooks, Node's writeContinue)."""
        await self._body.send_continue()

    async def write_early_hints(self, hints: Mapping[str, HeaderValue]) -> None:
        """Send ``103 Early Hints`` ahead of the response (Node's writeEarlyHints).

        ``hints`` must hold a ``Link`` (e.g. ``"</style.css>; rel=preload;
        as=style"``, or a list of them), so that a browser fetches those while
        the app prepares the response. An HTTP/1.0 client gets nothing: RFC
        9110 section 15.2 forbids 1xx responses to it.

        Raises:
          ValueError: no Link, or a name or value that is not a valid header.
          RuntimeError: the response head was already sent.
        """
        if self.headers_sent:
            raise RuntimeError("early hints after the response head was sent")
        if not any(name.lower() == "link" for name in hints):
            raise ValueError("early hints need a Link header")
        lines = b"".join(encode_header(name, value) for name, value in hints.items())
        await self._exchange.send_informational(b"HTTP/1.1 103 Early Hints\r\n" + lines + b"\r\n")

    # -- body ------------------------------------------------------------------
    async def write(self, data: bytes | str) -> None:
        """Send a piece of the body (the head first, if not sent yet)."""
        if self.finished:
            raise RuntimeError("write() after end()")
        if isinstance(data, str):
            data = data.encode()
        if not self.headers_sent:
            head = self._start(None, data)
            await self._send_body(head, data)
        elif data:
            self._count(len(data))
            await self._send_body(b"", data)

    async def end(self, data: bytes | str = b"") -> None:
        """Finish the response, sending ``data`` as its last piece."""
        if self.finished:
            return
        if isinstance(data, str):
            data = data.encode()
        if not self.headers_sent:
            if self._trailers:  # trailers need a chunked body
                head = self._start(None, data)
                self.finished = True
                last = last_chunk(self._trailers) if self._chunked else b""
                await self._send_body(head, data, last)
            else:
                head = self._start(len(data), data)
                self.finished = True
                await self._exchange.send(head, b"" if self._bodiless else data)
        else:
            self._count(len(data))
            self.finished = True
            if self._chunked:
                await self._send_body(b"", data, last_chunk(self._trailers))
            elif data and not self._bodiless:
                await self._exchange.send(data)
        if self._unsent > 0:
            # Shorter than the app's Content-Length: only a close tells the client.
            self.should_keep_alive = False
        if self._watch is not None:
            self._watch.finish()

    async def wait_closed(self) -> None:
        """Wait until the response is finished or the client has gone away.

        Node's ``res.on('close')``: "the response is completed, or its
        underlying connection was terminated prematurely"; as there,
        :attr:`finished` tells which (Node's ``res.writableFinished``). The
        client going away is its closing or resetting the connection (over
        TLS too), noticed while the app is busy: a long poll or an event
        stream stops working for nobody. Any number of tasks may wait; the
        usual shape runs the work and the wait side by side and stops the
        work when the wait returns first.

        It reads the connection ahead while it waits (keeping the bytes, so
        a pipelined request is still served next), hence it needs the
        request body read first. :mod:`trionet.http._close_watch` says why.

        Raises:
          RuntimeError: the request body has not been read to its end.
        """
        if self._watch is None and self.finished:
            return
        await self._watching().wait()

    async def client_gone(self) -> bool:
        """Whether the client has closed or reset the connection, judged without waiting.

        The answer from what has arrived by now (what is waiting is read, as
        :meth:`wait_closed` reads it); it answers even when called in a
        cancelled scope. For polling from a loop that has no task to spare
        (Starlette's ``request.is_disconnected()``).

        Raises:
          RuntimeError: the request body has not been read to its end.
        """
        return await self._watching().poll()

    def _watching(self) -> CloseWatch:
        watch = self._watch
        if watch is None:
            if not self._body.done:
                raise RuntimeError("the request body must be read first")
            watch = self._watch = CloseWatch(self._exchange)
            watch.finished = self.finished
        return watch

    async def send_file(
        self, file: str | os.PathLike[str] | int, *, offset: int = 0, count: int | None = None
    ) -> None:
        """Finish the response with a file's bytes as the rest of its body, zero-copy.

        ``file`` is a path or an open descriptor (which stays the caller's to
        close); ``count`` bytes from ``offset`` are sent (None: to the end of
        the file). Like ``end(data)``: if nothing was written before, the
        head carries ``Content-Length: count``; after ``write()`` the file
        continues the body (one chunk if it is chunked). On plain TCP and
        Unix sockets the kernel copies the file to the socket (``os.sendfile``,
        as nginx's ``sendfile on``); over TLS, which must encrypt in user
        space, the file is read in :data:`FILE_CHUNK` pieces in a thread.

        A path is opened (in a thread) before anything is sent, so a missing
        file raises ``OSError`` while the app may still answer 404 or 500.

        Raises:
          OSError: the file could not be opened or read.
          EOFError: the file ended before ``count`` bytes; the response is
            cut short, so the connection is closed (never a short body passed
            off as complete).
          ValueError: a negative offset or count, or more bytes than the
            app's own Content-Length.
          RuntimeError: the response already ended.
        """
        if self.finished:
            raise RuntimeError("send_file() after end()")
        if offset < 0 or (count is not None and count < 0):
            raise ValueError(f"invalid offset {offset} or count {count}")
        own = not isinstance(file, int)
        if isinstance(file, int):
            fd = file
            size = os.fstat(fd).st_size if count is None else 0
        else:
            fd, size = await trio.to_thread.run_sync(open_file, os.fspath(file), count is None)
        try:
            if count is None:
                count = max(0, size - offset)
            await self._send_fd(fd, offset, count)
        finally:
            if own:
                os.close(fd)
        if self._watch is not None:
            self._watch.finish()

    async def _send_fd(self, fd: int, offset: int, count: int) -> None:
        """send_file's body: the head, then ``count`` bytes of ``fd``, then the end."""
        head = b""
        if not self.headers_sent:
            head = self._start(None if self._trailers else count, b"")
        self._count(count)
        self.finished = True
        if self._unsent > 0:
            self.should_keep_alive = False
        exchange = self._exchange
        if self._bodiless or count == 0:
            last = last_chunk(self._trailers) if self._chunked else b""
            if head or last:
                await exchange.send(head + last)
            return
        if self._chunked:
            head += b"%x\r\n" % count
        if head:
            await exchange.send(head)
        sock = exchange.socket
        stream = sock.stream
        if isinstance(stream, trio.SocketStream) and hasattr(os, "sendfile"):
            try:
                await sendfile(stream.socket, fd, offset, count)
            except BaseException:
                self.should_keep_alive = False
                raise
            sock.bytes_written += count
        else:
            while count:
                piece = await trio.to_thread.run_sync(os.pread, fd, min(count, FILE_CHUNK), offset)
                if not piece:
                    self.should_keep_alive = False
                    raise EOFError(f"the file ended {count} bytes before the response's end")
                await exchange.send(piece)
                offset += len(piece)
                count -= len(piece)
        if self._chunked:
            await exchange.send(b"\r\n" + last_chunk(self._trailers))

    def _start(self, length: int | None, data: bytes) -> bytes:
        """The head for a first write of ``data`` (``length``: the whole body's, if known).

        The head counts as sent only if it and ``data`` pass the checks: if
        this raises ValueError, the app (or the server's 500) may still answer.
        """
        exchange = self._exchange
        status = self.status_code
        method = self._method
        head, chunked, keep_alive, declared = frame_response(
            status,
            self.status_message,
            self._headers,
            method,
            length,
            exchange.http11,
            self.should_keep_alive and exchange.may_keep_alive(),
            exchange.keep_alive_lines,
        )
        bodiless = not has_body(status, method)
        if declared >= 0 and not bodiless:
            if len(data) > declared:
                raise ValueError(
                    f"response body longer than its Content-Length ({declared} bytes left)"
                )
            self._unsent = declared - len(data)
        self._chunked = chunked
        self._bodiless = bodiless
        self.should_keep_alive = keep_alive
        self.headers_sent = True
        self._body.responded = True
        return head

    def _count(self, size: int) -> None:
        """Hold the app to the Content-Length it set (h11 would, as Node does)."""
        if self._unsent < 0:
            return
        if size > self._unsent:
            raise ValueError(
                f"response body longer than its Content-Length ({self._unsent} bytes left)"
            )
        self._unsent -= size

    async def _send_body(self, head: bytes, data: bytes, last: bytes = b"") -> None:
        """Send ``head``, then ``data`` as body (one chunk if chunked), then ``last``.

        A large payload is never copied to frame it: a copy lives as long as a
        slow reader takes to read it, and 500 slow readers of 1 MiB writes
        held 500 MB that glibc never gave back. So a chunk of ``JOIN_LIMIT``
        bytes or more goes out as two writes: its size line (after ``head``)
        and the payload in one uncopied ``writev``, then the CRLF that closes
        the chunk (and ``last``). Smaller chunks keep their single write,
        joined: copying a few KiB costs less than a system call. Both sends
        complete before this returns, so no chunk is ever left open.
        """
        send = self._exchange.send
        if not data or self._bodiless:
            if head or last:
                await send(head + last)
            return
        if not self._chunked:
            # The connection joins a small body to the head, and sends a large one uncopied.
            await (send(head, data) if head else send(data))
        elif len(data) < JOIN_LIMIT:
            await send(b"%s%x\r\n%s\r\n%s" % (head, len(data), data, last))
        else:
            await send(b"%s%x\r\n" % (head, len(data)), data)
            await send(b"\r\n" + last)


@lru_cache(maxsize=1024)
def _pair_line(name: str | bytes, value: HeaderValue) -> tuple[str, bytes]:
    """``(lower-case name, validated wire lines)`` of one header pair (set_headers)."""
    text = name if isinstance(name, str) else bytes(name).decode("latin-1")
    return text.lower(), encode_header(text, value)
