"""A response read with h11's own readers, without an ``h11.Connection``.

Profiling the benchmark's client (100 tasks, 5 keep-alive connections, Node
server) showed h11's connection state machine (``_process_event``, its
state triggers and ``send``) at about half of the client's per-request
Python time. For the common exchange, a request whose head and body went
out whole, that machine has little left to decide: the response head is
read by h11's own reader (its regular expressions, the same
``h11.Response`` event and header validation), the body framing and
keep-alive are decided as h11's ``_body_framing`` and ``_keep_alive`` do
(RFC 9112 §6.3, one pass over the headers), and the body by h11's ``ContentLengthReader``,
``ChunkedReader`` or ``Http10Reader``. :class:`ResponseReader` offers the
part of ``h11.Connection`` the client uses (``next_event``,
``receive_data``, ``trailing_data``, ``our_state``, ``their_state``,
``send_failed``), so the rest of the client does not know which it has.
The server does the same for its request heads (``parse_head`` in
:mod:`trionet.http._body`).

Everything else keeps a real ``h11.Connection``: upgrades and CONNECT
(h11 tracks the protocol switch), ``Expect: 100-continue`` and streamed or
large bodies (sent while the response is read). The readers live in private
h11 modules, so an h11 that moves them leaves :data:`AVAILABLE` false and
every exchange on the public path.

Rejected: a response parser of our own (h11's validation is the contract the
tests hold us to) and ``start_next_cycle()`` on a kept ``h11.Connection``
(slower than a new one).
"""

from __future__ import annotations

from typing import Any

import h11

try:  # h11's private readers and framing rules (see the module docstring)
    from h11._readers import ChunkedReader as _ChunkedReader
    from h11._readers import ContentLengthReader as _ContentLengthReader
    from h11._readers import Http10Reader as _Http10Reader
    from h11._readers import maybe_read_from_SEND_RESPONSE_server as _read_head
    from h11._receivebuffer import ReceiveBuffer as _ReceiveBuffer

    AVAILABLE = True
except ImportError:  # pragma: no cover - an h11 that moved them: the public path
    AVAILABLE = False

__all__ = ["AVAILABLE", "ResponseReader"]


class ResponseReader:
    """The client side of ``h11.Connection`` for one exchange whose request went out whole.

    ``request_keep_alive``: h11's verdict on the request (it asked for
    ``Connection: close``, or not); ``max_head_size`` bounds an incomplete
    event, as h11's ``max_incomplete_event_size``.
    """

    __slots__ = (
        "_buf",
        "_closed",
        "_keep_alive",
        "_max_head_size",
        "_method",
        "_reader",
        "our_state",
        "their_state",
    )

    def __init__(self, method: bytes, request_keep_alive: bool, max_head_size: int) -> None:
        self._buf = _ReceiveBuffer()
        self._closed = False
        self._method = method
        self._keep_alive = request_keep_alive
        self._max_head_size = max_head_size
        self._reader: Any = _read_head
        self.our_state: type[h11.DONE] | type[h11.MUST_CLOSE] | type[h11.ERROR] = (
            h11.DONE if request_keep_alive else h11.MUST_CLOSE
        )
        self.their_state: Any = h11.SEND_RESPONSE

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """Bytes received and not yet parsed, and whether the server closed (as h11's)."""
        return bytes(self._buf), self._closed

    def send_failed(self) -> None:
        """The request did not go out whole: the connection is never reused."""
        self.our_state = h11.ERROR

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the server; ``b""`` is its end of stream."""
        if data:
            self._buf += data
        else:
            self._closed = True

    def next_event(self) -> Any:
        """The next event, ``h11.NEED_DATA`` or ``h11.PAUSED``, as ``h11.Connection``'s.

        Raises:
          h11.RemoteProtocolError: the response broke HTTP/1.1 (h11's message).
        """
        if self.their_state is not h11.SEND_RESPONSE and self.their_state is not h11.SEND_BODY:
            return h11.PAUSED
        buf = self._buf
        reader = self._reader
        if not buf and reader is _read_head and not self._closed:
            return h11.NEED_DATA  # the first call of every exchange: nothing read yet
        try:
            event = reader(buf)
            if event is None and not buf and self._closed:
                read_eof = getattr(reader, "read_eof", None)
                if read_eof is None:
                    raise h11.LocalProtocolError("peer closed the connection before responding")
                event = read_eof()
        except h11.RemoteProtocolError:  # a body reader's read_eof: cut short
            self.their_state = h11.ERROR
            raise
        except h11.LocalProtocolError as exc:
            self.their_state = h11.ERROR
            raise h11.RemoteProtocolError(str(exc), exc.error_status_hint) from None
        if event is None:
            if len(buf) > self._max_head_size:
                self.their_state = h11.ERROR
                raise h11.RemoteProtocolError("Receive buffer too long", error_status_hint=431)
            if self._closed:
                self.their_state = h11.ERROR
                raise h11.RemoteProtocolError("peer unexpectedly closed connection")
            return h11.NEED_DATA
        kind = type(event)
        if kind is h11.Response:
            self._start_body(event)
        elif kind is h11.EndOfMessage:
            self.their_state = h11.DONE if self._keep_alive else h11.MUST_CLOSE
            if not self._keep_alive and self.our_state is h11.DONE:
                self.our_state = h11.MUST_CLOSE
        elif kind is h11.InformationalResponse and event.status_code == 101:
            # No upgrade was asked for (those keep an h11.Connection); h11 refuses it too.
            self.their_state = h11.ERROR
            raise h11.RemoteProtocolError("101 Switching Protocols without an upgrade request")
        return event

    def _start_body(self, event: h11.Response) -> None:
        """Pick the body reader and the keep-alive verdict as h11 does (RFC 9112 §6.3).

        h11's ``_body_framing`` and ``_keep_alive`` scan the headers three
        times; one pass over the raw lines decides the same (h11 already
        refused a Transfer-Encoding other than ``chunked`` and unequal
        Content-Lengths when it built the event).
        """
        chunked = False
        length: bytes | None = None
        if event.http_version < b"1.1":
            self._keep_alive = False
        for name, value in event.headers.raw_items():
            size = len(name)
            if size == 17 and name.lower() == b"transfer-encoding":
                chunked = True
            elif size == 14 and name.lower() == b"content-length":
                length = value
            elif (
                size == 10
                and name.lower() == b"connection"
                and b"close" in [token.strip() for token in value.lower().split(b",")]
            ):
                self._keep_alive = False
        if event.status_code in (204, 304) or self._method == b"HEAD":
            self._reader = _ContentLengthReader(0)
        elif chunked:
            self._reader = _ChunkedReader()
        elif length is not None:
            self._reader = _ContentLengthReader(int(length))
        else:  # read until the server closes: the connection ends with the body
            self._reader = _Http10Reader()
            self._keep_alive = False
        self.their_state = h11.SEND_BODY
