"""The request side of one exchange: its head parsed, its body read, drained or refused.

:func:`parse_head` and :class:`RequestBody` are the only code that hands
client bytes to h11, so they are the one place where h11's errors become
:class:`~._limits.ClientError` (through :func:`~._limits.parse_error`); a
call site left to itself once turned a malformed trailer into an "app
failed" 500.

A :class:`RequestBody` is made for each request and holds everything about
its body: how much is left (sized) or where the chunked framing stands
(:class:`~._limits.ChunkedScanner` checks the raw bytes, h11 decodes them),
``max_body_size``, ``request_timeout``'s deadline, ``Expect: 100-continue``
(sent at most once, and never after the response began), the trailers, and
whether what the app left unread may be drained so that the connection can
stay open (:data:`DRAIN_LIMIT`). The state changes are synchronous and take
plain bytes (:meth:`RequestBody.feed`), so they are unit-tested without a
socket (``tests/test_http_body.py``); :meth:`RequestBody.read` is the thin
loop that asks the connection for more bytes.

The connection owns the receive buffer, since the bytes after the body
belong to the next request; the body reads it through :class:`BodySource`,
a protocol, so this module does not import the connection's (no import
circle), and h11 is given only the bytes the scanner accepted, so a
pipelined request never reaches h11 before trionet's head checks.

Rejected: a body object per connection, reset for each request. It saves
one allocation per request, but a ``Request`` kept by the app past its
response would then read the next request's body.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

import h11
import trio

try:  # h11's own grammar and head reader, without its state machine (see parse_head)
    from h11._abnf import header_field as _HEADER_FIELD
    from h11._abnf import request_line as _REQUEST_LINE
    from h11._headers import CONTENT_LENGTH_MAX_DIGITS as _MAX_LENGTH_DIGITS
    from h11._headers import Headers as _Headers
    from h11._readers import maybe_read_from_IDLE_client as _read_head
    from h11._receivebuffer import ReceiveBuffer as _ReceiveBuffer
except ImportError:  # pragma: no cover - an h11 that moved them: the public path
    _read_head = None  # type: ignore[assignment]
    _REQUEST_LINE = _HEADER_FIELD = ""

from ._framing import CONTINUE_HEAD
from ._limits import (
    ChunkedScanner,
    ClientError,
    RequestInfo,
    check_version,
    parse_error,
    request_timeout_error,
)

__all__ = ["DRAIN_LIMIT", "BodySource", "RequestBody", "parse_head"]

#: Unread request body bytes the server reads and discards after the response
#: so the connection can be kept alive; a larger leftover closes it instead
#: (Node closes at once; nginx's ``lingering_close`` reads any amount, bounded
#: by time: trionet reads this much and then closes in stages,
#: :mod:`trionet._linger`).
DRAIN_LIMIT = 256 * 1024

_NO_TRAILERS: Sequence[tuple[bytes, bytes]] = ()
# A head that may frame a chunked body, which needs h11's connection to decode
# it. check_head refused obs-fold and bare LF, so a header line starts after CRLF.
_MAYBE_CHUNKED = re.compile(rb"\r\ntransfer-encoding:", re.IGNORECASE)
# h11's own regular expressions for a request line and a header line (RFC 9112
# sections 3 and 5), so that the fast reader accepts exactly what h11 accepts.
_request_line = re.compile(_REQUEST_LINE.encode("ascii")).fullmatch
_header_field = re.compile(_HEADER_FIELD.encode("ascii"))
_match_field = _header_field.fullmatch
_NAME = _header_field.groupindex["field_name"] if _HEADER_FIELD else 0
_VALUE = _header_field.groupindex["field_value"] if _HEADER_FIELD else 0


class BodySource(Protocol):
    """What a request body needs of its connection: the receive buffer and a 1xx sender.

    The unread bytes are ``buf[pos:]``; the body advances ``pos`` past what
    it consumed.
    """

    buf: bytes
    pos: int

    async def receive_more(self) -> None:
        """Append the next bytes from the client to ``buf``.

        Raises:
          ClientError: 400, the client closed the connection.
        """

    async def send_informational(self, head: bytes) -> None:
        """Send a 1xx response head (nothing to an HTTP/1.0 client)."""


def parse_head(head: bytes, max_header_size: int) -> tuple[h11.Request, h11.Connection | None]:
    """Parse a complete, checked head with h11.

    A head without ``Transfer-Encoding`` is read without an
    ``h11.Connection``: the connection's state machine cost 40% of the parse
    (measured: 9.4 against 5.2 us per request), and with no chunked body to
    decode there is nothing left for it to do. The common head is read in
    one pass with h11's grammar (:func:`_read_plain_head`); what that leaves
    (h11 would refuse or rewrite it) goes through h11's own request reader,
    so the event and every refusal are h11's. Both use private h11 modules,
    so an h11 without them falls back to the public path.

    A head that may frame a chunked body gets a fresh ``h11.Connection``
    (cheaper than driving one through ``start_next_cycle``, and it holds no
    memory while the connection sits idle): h11 gets the head whole, then
    the body a line at a time; the only event it may hold incomplete is a
    trailer section, which the ``ChunkedScanner`` keeps within ``max_header_size``.

    Returns:
      The request (HTTP/1.0 or 1.1, :func:`~._limits.check_version`) and
      the parser that decodes its chunked body next (None: not chunked).

    Raises:
      ClientError: what :func:`~._limits.parse_error` makes of h11's refusal.
    """
    parser: h11.Connection | None = None
    event: object = None
    if _read_head is not None:
        event = _read_plain_head(head)  # the common head, as h11's reader reads it
        if event is None and _MAYBE_CHUNKED.search(head) is None:
            buf = _ReceiveBuffer()
            buf += head
            try:
                event = _read_head(buf)
            except h11.LocalProtocolError as exc:  # the reader's; the connection re-raises it
                remote = h11.RemoteProtocolError(str(exc), exc.error_status_hint)
                raise parse_error(remote, "request head") from None
    if event is None:
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_size)
        parser.receive_data(head)
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError as exc:
            raise parse_error(exc, "request head") from None
    assert isinstance(event, h11.Request)
    version = event.http_version
    if version != b"1.1" and version != b"1.0":
        event = check_version(event)
    return event, parser


def _read_plain_head(head: bytes) -> h11.Request | None:
    """The ``h11.Request`` h11's reader makes of ``head``, or None to let h11 read it.

    h11's reader (``maybe_read_from_IDLE_client``) was the largest part of the
    server's own time per request (measured with ``timeit``: 7.7 us for a
    three-line GET, 12.4 us for an eight-line POST; this reads them in 2.4
    and 4.3 us). It spends it on a receive buffer, a generator per header
    line, ``groupdict()`` per match, a second pass (``normalize_and_validate``)
    that lowers the names, and ``Request.__init__``, which walks the new
    ``Headers`` through the generic ``Sequence`` iterator to count ``Host``
    lines and matches the method and target again. This reads the common
    head in one pass with h11's own regular expressions and builds the same
    event (the same fields, the same ``Headers``). Anything h11 would
    refuse or rewrite (a line its grammar does not match, a missing or
    repeated Host, Transfer-Encoding, a Content-Length that is not a single
    number) returns None, and h11's own reader decides: so h11 stays the
    one judge of the syntax, and its messages and status hints are
    unchanged. ``tests/test_http_head_reader.py`` holds the two to the same
    answers.

    Rejected: a parser of trionet's own grammar (two grammars to keep in
    step), and ``Request(headers=Headers(...), _parsed=True)``, which still
    walks the headers and runs the two regular expressions again.
    """
    lines = head[:-4].split(b"\r\n")
    match = _request_line(lines[0])
    if match is None:
        return None
    http_version = match["http_version"]
    items = []
    hosts = 0
    sized = False
    name_at, value_at = _NAME, _VALUE
    for line in lines[1:]:
        field = _match_field(line)
        if field is None:
            return None
        raw_name, value = field.group(name_at, value_at)
        name = raw_name.lower()
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            # h11 folds repeats and lists into one value: its reader says what.
            if sized or not value.isdigit() or len(value) > _MAX_LENGTH_DIGITS:
                return None
            sized = True
        elif name == b"transfer-encoding":
            return None
        items.append((raw_name, name, value))
    if hosts > 1 or (hosts == 0 and http_version == b"1.1"):
        return None  # h11 refuses it (RFC 9112 section 3.2): in its words
    event = _new_request(h11.Request)
    _set(event, "method", match["method"])
    _set(event, "target", match["target"])
    _set(event, "http_version", http_version)
    _set(event, "headers", _Headers(items))
    return event


_new_request = object.__new__
_set = object.__setattr__


class RequestBody:
    """The body of one request, as the app reads it and the server drains it.

    Attributes:
      info: the request's framing (:func:`~._limits.analyze_request`).
      done: the whole body was read (at once for a bodiless request).
      left: bytes still to come of a sized body.
      deadline: when ``request_timeout`` runs out (``trio.current_time()`` clock).
      continue_sent: ``100 Continue`` went out.
      responded: the response head went out; no ``100 Continue`` after it.
      error: the refusal that broke off reading (413, 408, 400), to answer it.
      trailers: the trailer fields of a chunked body, once it is ``done``.
    """

    __slots__ = (
        "_parser",
        "_received",
        "_scanner",
        "_source",
        "continue_sent",
        "deadline",
        "done",
        "error",
        "info",
        "left",
        "max_body_size",
        "responded",
        "trailers",
    )

    # Positional: one is made per request on the server's hottest path.
    def __init__(
        self,
        source: BodySource,
        parser: h11.Connection | None,
        info: RequestInfo,
        max_body_size: int | None,
        max_trailer_size: int,
        deadline: float,
    ) -> None:
        """Start reading a body framed as ``info`` says.

        Raises:
          ClientError: 413, a Content-Length over ``max_body_size``.
        """
        self._source = source
        self.info = info
        self.max_body_size = max_body_size
        self.deadline = deadline
        self.continue_sent = False
        self.responded = False
        self.error: ClientError | None = None
        self.trailers = _NO_TRAILERS
        self._received = 0
        length = info.content_length
        if length is None:
            assert parser is not None, "a chunked body needs the head's h11 connection"
            self._parser: h11.Connection | None = parser
            self._scanner: ChunkedScanner | None = ChunkedScanner(max_trailer_size)
            self.left = 0
            self.done = False
        else:
            self._parser = self._scanner = None
            self.left = length
            self.done = length == 0
            if max_body_size is not None and length > max_body_size:
                raise _too_large()

    # -- state changes, no I/O ---------------------------------------------------
    def feed(self, buf: bytes, pos: int) -> tuple[bytes | None, int]:
        """Take the next piece of the body from ``buf[pos:]``.

        Returns:
          ``(piece, pos)``: the piece (``b""`` once the body is complete,
          None if more bytes must be appended to ``buf`` first) and where the
          unconsumed bytes now start. A sized piece that is the whole of
          ``buf`` is returned uncopied.

        Raises:
          ClientError: a malformed chunked body (400), trailers over budget
            (431), or more than ``max_body_size`` (413).
        """
        if self.done:
            return b"", pos
        scanner = self._scanner
        if scanner is None:
            size = len(buf) - pos
            if size <= 0:
                return None, pos
            take = min(self.left, size)
            self.left -= take
            self.done = self.left == 0
            if pos == 0 and take == size:
                return buf, take
            return buf[pos : pos + take], pos + take
        parser = self._parser
        assert parser is not None
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as exc:  # e.g. a trailer line without a colon
                raise parse_error(exc, "chunked body") from None
            if type(event) is h11.Data:
                self._count(len(event.data))
                return bytes(event.data), pos
            if type(event) is h11.EndOfMessage:
                self.done = True
                self.trailers = event.headers.raw_items()
                self._parser = None
                return b"", pos
            if pos >= len(buf):
                return None, pos
            end = scanner.scan(buf, pos)
            if end == pos:
                return None, pos
            parser.receive_data(buf[pos:end])  # parses nothing: cannot fail
            pos = end

    def _count(self, size: int) -> None:
        limit = self.max_body_size
        if limit is None:
            return
        self._received += size
        if self._received > limit:
            raise _too_large()

    def may_keep_alive(self) -> bool:
        """Whether the connection may stay open after a response sent now.

        Yes if the body is read, or if what is left may be drained after the
        response: a chunked body (its size is unknown; drained up to
        :data:`DRAIN_LIMIT`, then closed), or a sized one of at most
        :data:`DRAIN_LIMIT` bytes. No while the client holds its body back
        for a ``100 Continue`` that was not sent: it may send it after the
        response, or never.
        """
        if self.done:
            return True
        if self.info.expect_continue and not self.continue_sent:
            return False
        return self.info.content_length is None or self.left <= DRAIN_LIMIT

    # -- I/O through the connection ------------------------------------------------
    async def send_continue(self) -> None:
        """Send ``100 Continue`` once, if the response has not begun."""
        if self.continue_sent or self.responded:
            return
        self.continue_sent = True
        await self._source.send_informational(CONTINUE_HEAD)

    async def read(self) -> bytes:
        """The next piece of the body, ``b""`` at its end.

        Sends ``100 Continue`` first if the client waits for it.

        Raises:
          ClientError: the body broke a rule or a limit, or did not arrive
            by ``request_timeout`` (408); also kept as :attr:`error`.
        """
        if self.done:
            return b""
        if self.info.expect_continue and not self.continue_sent:
            await self.send_continue()
        source = self._source
        try:
            with trio.fail_after(max(0.0, self.deadline - trio.current_time())):
                while True:
                    piece, source.pos = self.feed(source.buf, source.pos)
                    if piece is not None:
                        return piece
                    await source.receive_more()
        except trio.TooSlowError:
            self.error = request_timeout_error("request body not received in time")
        except ClientError as exc:
            self.error = exc
        raise self.error

    async def drain(self) -> bool:
        """Read and drop what the app left of the body; False if the connection must close."""
        if self.done:
            return True
        dropped = 0
        with trio.move_on_at(self.deadline):
            while dropped <= DRAIN_LIMIT:
                try:
                    piece = await self.read()
                except ClientError:
                    return False
                if not piece:
                    return True
                dropped += len(piece)
        return False


def _too_large() -> ClientError:
    return ClientError(413, "request body over max_body_size", "ERR_BODY_TOO_LARGE")
