"""Request policy without I/O: Node's limits and the checks stricter than h11.

h11 0.16 accepts inputs that Node's llhttp rejects and that enable request
smuggling (bare LF line ends, obs-fold, repeated or listed Content-Length,
Content-Length with Transfer-Encoding, 20-digit chunk sizes, any chunk
extension), and it enforces its size limit only while an event is
incomplete, so a 20 KB request line read in one piece passes. It also takes
any ``HTTP/d.d`` version and any request target. The functions here close
those gaps on the raw bytes and the parsed head; the driver calls them and
maps :class:`ClientError` to a response. Node 20 is the oracle:
``tests/test_http_server_limits.py`` sends each refused row to it as well.

One rule holds for everything a client sends: a malformed message gets a
4xx (its status is on the :class:`ClientError`), never a 5xx, so that a 5xx
always means the server or the app failed. Every h11 call that parses
client bytes goes through :func:`parse_error`, one mapping for all of them;
one call site left to itself (``next_event`` in a chunked body) once turned
a malformed trailer into an "app failed" 500.

Each rule names its source. Where trionet departs from Node it says so:
stricter on chunk sizes of 17+ digits and on Content-Length over 2^63 - 1;
more lenient on empty lines before a request (CRLF only, no bare LF) and
on ``HTTP/1.2`` (served as 1.1, RFC 9110 section 2.5, where Node answers 400).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import h11

from .._errors import ProtocolError

__all__ = [
    "DEFAULT_HEADERS_TIMEOUT",
    "DEFAULT_KEEP_ALIVE_TIMEOUT",
    "DEFAULT_MAX_HEADER_SIZE",
    "DEFAULT_REQUEST_TIMEOUT",
    "KNOWN_METHODS",
    "MAX_CHUNK_SIZE_DIGITS",
    "MAX_CONTENT_LENGTH",
    "MAX_HEADERS_COUNT",
    "ChunkedScanner",
    "ClientError",
    "RequestInfo",
    "analyze_request",
    "check_head",
    "check_partial_head",
    "check_target",
    "check_version",
    "parse_error",
    "request_timeout_error",
    "skip_empty_lines",
]

#: Node's ``server.headersTimeout``: 60 s for the whole head (slowloris guard,
#: CVE-2018-12122); counted from accept for the first request.
DEFAULT_HEADERS_TIMEOUT = 60.0
#: Node's ``server.requestTimeout`` (since v18): 300 s for the whole request.
DEFAULT_REQUEST_TIMEOUT = 300.0
#: Node's ``server.keepAliveTimeout``: 5 s idle between requests (advertised
#: as ``Keep-Alive: timeout=5``).
DEFAULT_KEEP_ALIVE_TIMEOUT = 5.0
#: Node's ``http.maxHeaderSize``: 16 KiB for request line plus headers
#: (was 80 KB, cut to 8 KB by CVE-2018-12121, then raised to 16 KiB).
DEFAULT_MAX_HEADER_SIZE = 16384
#: Node's ``server.maxHeadersCount``; Node drops the rest, trionet answers 431.
MAX_HEADERS_COUNT = 2000
#: llhttp refuses a chunk size that overflows 64 bits; trionet caps the digits
#: at 16 (64 bits' worth), so it also refuses 17 digits with a leading zero,
#: which Node takes. h11 alone allows 20 digits.
MAX_CHUNK_SIZE_DIGITS = 16
#: The largest request Content-Length: a signed 64-bit size (nginx's
#: ``NGX_MAX_OFF_T_VALUE``). RFC 9110 section 8.6 asks recipients to guard
#: against overflowing numerals. llhttp refuses only past 2^64 - 1 (Node 20
#: probed), h11 only past 20 digits; without this cap the server waited for
#: a body no client can send until ``request_timeout``.
MAX_CONTENT_LENGTH = 2**63 - 1

#: The methods llhttp knows (Node's ``http.METHODS``); anything else, including
#: a lower-case ``get``, is a 400 in Node.
KNOWN_METHODS = frozenset(
    b"ACL BIND CHECKOUT CONNECT COPY DELETE GET HEAD LINK LOCK M-SEARCH MERGE"
    b" MKACTIVITY MKCALENDAR MKCOL MOVE NOTIFY OPTIONS PATCH POST PROPFIND"
    b" PROPPATCH PURGE PUT QUERY REBIND REPORT SEARCH SOURCE SUBSCRIBE TRACE"
    b" UNBIND UNLINK UNLOCK UNSUBSCRIBE".split()
)

_CONTENT_LENGTH_RE = re.compile(rb"\r\ncontent-length[ \t]*:([^\r]*)", re.IGNORECASE)
_CHUNK_SIZE_RE = re.compile(rb"[0-9A-Fa-f]+")
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
# RFC 9110 section 5.6.4: qdtext is HTAB, SP, VCHAR but '"' and '\\', obs-text.
_QUOTED_STRING = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
# RFC 9112 section 7.1.1: chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ),
# a value being a token or a quoted-string. Whitespace before the first ";" is
# refused, as by h11 and llhttp; a CR, NUL or other control byte never matches
# (llhttp: HPE_STRICT "Expected LF after chunk size").
_CHUNK_EXT_RE = re.compile(
    rb"(?:;[ \t]*%s(?:[ \t]*=[ \t]*(?:%s|%s))?[ \t]*)+" % (_TOKEN, _TOKEN, _QUOTED_STRING)
)
# Empty lines a client may send before a request line (RFC 9112 section 2.2).
_EMPTY_LINES_RE = re.compile(rb"(?:\r\n)*")
# RFC 9112 section 3.2.3: uri-host ":" port, the host a reg-name, IPv4 or [IPv6].
_AUTHORITY_FORM_RE = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[^\[\]/?#@:]+):[0-9]+")
# RFC 9112 section 3.2.2: absolute-form; like llhttp, trionet wants "scheme://",
# so that "host:port" (scheme "host" by RFC 3986) stays an authority-form.
_ABSOLUTE_FORM_RE = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://")


class ClientError(ProtocolError):
    """The HTTP client sent something the server refuses (Node's ``clientError``).

    Attributes:
      status: the response status the default handler sends (400, 408, 413,
        417, 431, ...), always with ``Connection: close``.
      code: Node's error code, e.g. ``"HPE_HEADER_OVERFLOW"``.
    """

    def __init__(self, status: int, message: str, code: str = "HPE_INVALID") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _bad(message: str, code: str = "HPE_INVALID") -> ClientError:
    return ClientError(400, message, code)


def _overflow(message: str) -> ClientError:
    return ClientError(431, message, "HPE_HEADER_OVERFLOW")


def request_timeout_error(message: str) -> ClientError:
    """408 for a head or body that did not arrive in time (Node's ``requestTimeout``)."""
    return ClientError(408, message, "ERR_HTTP_REQUEST_TIMEOUT")


def check_partial_head(head: bytes | bytearray, max_header_size: int, new_from: int = 0) -> None:
    """Refuse an incomplete head early: over budget (431) or bare LF (400).

    ``head`` is the start of a head whose blank line has not arrived;
    checking it on every read makes the limit independent of how the bytes
    were split into reads. Only ``head[new_from:]`` (the bytes just read) is
    searched for bare LFs, so a head dripping in byte by byte costs linear
    time, not quadratic.
    """
    if len(head) > max_header_size:
        raise _overflow(f"request head over {max_header_size} bytes")
    # A CRLF may straddle the reads: the pair search starts one byte earlier.
    if head.count(b"\n", new_from) != head.count(b"\r\n", max(0, new_from - 1)):
        raise _bad("bare LF in request head", "HPE_LF_EXPECTED")


def check_head(head: bytes, max_header_size: int) -> None:
    """Check a complete raw head (request line through the blank line).

    Raises:
      ClientError: 431 over ``max_header_size`` or ``MAX_HEADERS_COUNT``
        lines; 400 for bare LF line ends or obs-fold continuation lines.
    """
    if len(head) > max_header_size:
        raise _overflow(f"request head over {max_header_size} bytes")
    lines = head.count(b"\n")
    if lines != head.count(b"\r\n"):
        raise _bad("bare LF in request head", "HPE_LF_EXPECTED")
    if lines - 2 > MAX_HEADERS_COUNT:
        raise _overflow(f"more than {MAX_HEADERS_COUNT} header lines")
    # RFC 9112 §5.2: a server MUST reject obs-fold or replace it; Node rejects.
    if b"\n " in head or b"\n\t" in head:
        raise _bad("obsolete line folding in request head")


def skip_empty_lines(data: bytes | bytearray, pos: int) -> int:
    """Where the request starts in ``data[pos:]``, past any empty lines (CRLFs).

    RFC 9112 section 2.2: a server SHOULD ignore at least one empty line
    before a request line (old clients send a CRLF after a POST body); Node
    ignores any number. A bare LF or CR is not skipped: the head checks
    refuse it, as everywhere else.
    """
    match = _EMPTY_LINES_RE.match(data, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def parse_error(exc: h11.RemoteProtocolError, where: str) -> ClientError:
    """The answer to an h11 parse failure: 431 when h11 hints so, else 400.

    h11's other hint, 501 for a Transfer-Encoding it does not know, becomes
    400 as in Node (an unknown coding means the framing is unknown, RFC 9112
    section 6.1).
    """
    if exc.error_status_hint == 431:
        return _overflow(f"{where} too large: {exc}")
    return _bad(f"malformed {where}: {exc}")


def check_version(event: h11.Request) -> h11.Request:
    """A request whose version is neither 1.0 nor 1.1, as the server will serve it.

    RFC 9110 section 2.5: a higher minor version (``HTTP/1.2``) is served as
    the highest the server speaks, 1.1, so it needs a Host like 1.1 does
    (RFC 9112 section 3.2). Another major version (``HTTP/2.0``, ``HTTP/0.9``)
    gets 400, as in Node; h11 accepts any digit pair. RFC 9110 section 2.5
    also allows 505, but trionet keeps one rule for what a client sends:
    a 4xx, never a 5xx, so a 5xx always means the server or app failed.
    The event is rebuilt rather than the version remembered beside it, so
    everything downstream (keep-alive, ``Request.http_version``) sees one
    version.

    Raises:
      ClientError: 400 for a major version other than 1, or HTTP/1.x
        without a Host.
    """
    if not event.http_version.startswith(b"1."):
        raise _bad(f"HTTP version {event.http_version!r} not supported", "HPE_INVALID_VERSION")
    try:
        return h11.Request(
            method=event.method,
            target=event.target,
            headers=event.headers,
            http_version=b"1.1",
            _parsed=True,
        )
    except h11.LocalProtocolError as exc:
        raise _bad(f"malformed request: {exc}") from None


def check_target(method: bytes, target: bytes) -> None:
    """Refuse a request target in a form its method may not use (RFC 9112 section 3.2).

    Origin-form (``/path``) is the common case and the caller skips this
    check for it. CONNECT takes only authority-form (``host:port``, section
    3.2.3), and authority-form is for CONNECT only; other methods may use
    absolute-form (``http://host/path``, section 3.2.2, for proxies) or
    ``*`` (section 3.2.4; Node takes it with any method). Node answers 400
    to the rest, e.g. ``GET localhost:80`` or ``GET a/b``.
    """
    if method == b"CONNECT":
        if not _AUTHORITY_FORM_RE.fullmatch(target):
            raise _bad(f"CONNECT target {target[:64]!r} is not host:port", "HPE_INVALID_URL")
    elif target[:1] != b"/" and target != b"*" and not _ABSOLUTE_FORM_RE.match(target):
        raise _bad(f"invalid request target {target[:64]!r}", "HPE_INVALID_URL")


@dataclass(slots=True)
class RequestInfo:
    """What the driver needs from a parsed head, found in one pass."""

    #: Request body length: an int, ``None`` for chunked.
    content_length: int | None
    #: The client asked to keep the connection open (1.1 default, 1.0 opt-in).
    keep_alive: bool
    #: The client waits for ``100 Continue`` before sending the body.
    expect_continue: bool
    #: The request asks for a protocol switch (Upgrade + Connection: upgrade).
    upgrade: bool


def analyze_request(event: h11.Request, head: bytes) -> RequestInfo:
    """Apply Node's rules to a head h11 accepted; return its framing.

    ``event`` is HTTP/1.0 or 1.1 (:func:`check_version` made it so).
    Connection and Expect are lists (RFC 9110 section 5.3): several lines
    count as one comma-joined value, so a ``close`` on any line closes.

    Raises:
      ClientError: 400 for an unknown or lower-case method, a target form
        the method may not use, repeated or listed Content-Length, one over
        ``MAX_CONTENT_LENGTH``, or Content-Length with Transfer-Encoding
        (RFC 9112 §6.1: a smuggling vector, the connection must close);
        417 for an Expect member other than ``100-continue``.
    """
    method = event.method
    if method not in KNOWN_METHODS:
        raise _bad(f"unknown method {method!r}", "HPE_INVALID_METHOD")
    if event.target[0] != 0x2F or method == b"CONNECT":  # 0x2F: "/", origin-form
        check_target(method, event.target)
    content_length: int | None = 0
    has_length = False
    chunked = False
    connection = b""
    expect = b""
    upgrade = False
    # h11 keeps each header as (raw name, lower-case name, value): read that
    # list itself. Iterating the Headers sequence calls a Python __getitem__
    # per header, and raw_items() builds a list whose names need lowering again.
    for _, name, value in event.headers._full_items:
        if name == b"content-length":
            content_length = int(value)
            has_length = True
        elif name == b"transfer-encoding":
            chunked = True
        elif name == b"connection":
            connection = b"%s,%s" % (connection, value.lower()) if connection else value.lower()
        elif name == b"expect":
            expect = b"%s,%s" % (expect, value.lower()) if expect else value.lower()
        elif name == b"upgrade":
            upgrade = True
    http11 = event.http_version == b"1.1"
    if chunked:
        if has_length:
            raise _bad("both Content-Length and Transfer-Encoding", "HPE_UNEXPECTED_CONTENT_LENGTH")
        content_length = None
    elif has_length:
        _check_single_content_length(head)
        assert content_length is not None
        if content_length > MAX_CONTENT_LENGTH:
            raise _bad(f"Content-Length over {MAX_CONTENT_LENGTH}", "HPE_INVALID_CONTENT_LENGTH")
    if expect and expect != b"100-continue":
        _check_expect(expect)
    if http11:
        keep_alive = b"close" not in connection
    else:
        # RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty
        # framing; the server MUST close after the response (Node does).
        keep_alive = not chunked and b"keep-alive" in connection
    return RequestInfo(
        content_length=content_length,
        keep_alive=keep_alive,
        expect_continue=bool(expect) and http11 and b"100-continue" in expect,
        upgrade=upgrade and b"upgrade" in connection,
    )


def _check_expect(expect: bytes) -> None:
    """RFC 9110 §10.1.1: a server MAY answer 417 to an Expect member other than 100-continue."""
    for member in expect.split(b","):
        member = member.strip(b" \t")
        if member and member != b"100-continue":
            raise ClientError(417, f"unsupported Expect: {expect!r}", "HPE_EXPECTATION_FAILED")


def _check_single_content_length(head: bytes) -> None:
    """h11 folds ``Content-Length: 3`` twice, or ``3, 3``, into one; Node refuses both."""
    values = _CONTENT_LENGTH_RE.findall(head)
    if len(values) != 1 or b"," in values[0]:
        raise _bad("repeated or listed Content-Length", "HPE_UNEXPECTED_CONTENT_LENGTH")


class ChunkedScanner:
    """Finds where a chunked body ends, checking the framing as strictly as llhttp.

    The driver feeds h11 only the bytes this scanner accepted, so a pipelined
    request after the body stays in trionet's buffer for the head checks, and
    h11 never holds more than one line, or the trailer section, unparsed.

    Raises :class:`ClientError`: 400 for a chunk size of more than
    ``MAX_CHUNK_SIZE_DIGITS`` hex digits, a bare LF, a malformed size line or
    chunk extension, or an obs-fold line in the trailers; 431 for a trailer
    section over ``max_trailer_size`` bytes or ``MAX_HEADERS_COUNT`` lines.
    Trailers are header fields (RFC 9112 section 7.1.2), so they get the
    head's budget; h11 checks the syntax of each field.
    """

    __slots__ = (
        "_done",
        "_max_trailer_size",
        "_remaining",
        "_state",
        "_trailer_lines",
        "_trailer_size",
    )

    # States: reading a size line; in chunk data (``_remaining`` bytes left);
    # expecting the CRLF after data; reading trailer lines.
    _SIZE, _DATA, _DATA_END, _TRAILER = range(4)

    def __init__(self, max_trailer_size: int = DEFAULT_MAX_HEADER_SIZE) -> None:
        self._state = self._SIZE
        self._remaining = 0
        self._done = False
        self._max_trailer_size = max_trailer_size
        self._trailer_size = 0
        self._trailer_lines = 0

    @property
    def done(self) -> bool:
        """The terminating chunk and trailers have been seen."""
        return self._done

    def scan(self, data: bytes, start: int = 0) -> int:
        """Consume ``data[start:]``; return the index where the body's bytes end."""
        pos = start
        end = len(data)
        while pos < end and not self._done:
            if self._state == self._DATA:
                step = min(self._remaining, end - pos)
                pos += step
                self._remaining -= step
                if self._remaining == 0:
                    self._state = self._DATA_END
                continue
            nl = data.find(b"\n", pos)
            if nl < 0:
                self._check_unfinished_line(end - pos)
                return pos
            if nl == pos or data[nl - 1] != 0x0D:  # b"\r"
                raise _bad("bare LF in chunked body", "HPE_LF_EXPECTED")
            line = data[pos : nl - 1]
            pos = nl + 1
            self._line(line)
        return pos

    def _check_unfinished_line(self, length: int) -> None:
        if self._state == self._TRAILER:
            self._count_trailer(length)
        elif length > DEFAULT_MAX_HEADER_SIZE:
            # A size line cannot legitimately be long; llhttp caps chunk extensions too.
            raise _bad("chunk size line too long", "HPE_INVALID_CHUNK_SIZE")

    def _count_trailer(self, length: int) -> None:
        if self._trailer_size + length > self._max_trailer_size:
            raise _overflow(f"trailer section over {self._max_trailer_size} bytes")

    def _line(self, line: bytes) -> None:
        if self._state == self._SIZE:
            size_text, semicolon, _ = line.partition(b";")
            if semicolon:
                if not _CHUNK_EXT_RE.fullmatch(line, len(size_text)):
                    raise _bad(f"malformed chunk extension {line[:32]!r}", "HPE_STRICT")
            else:
                size_text = size_text.rstrip(b" \t")  # h11 allows trailing OWS too
            if not _CHUNK_SIZE_RE.fullmatch(size_text) or len(size_text) > MAX_CHUNK_SIZE_DIGITS:
                raise _bad(f"invalid chunk size {size_text[:32]!r}", "HPE_INVALID_CHUNK_SIZE")
            size = int(size_text, 16)
            if size:
                self._remaining = size
                self._state = self._DATA
            else:
                self._state = self._TRAILER
        elif self._state == self._DATA_END:
            if line:
                raise _bad("chunk data longer than its size", "HPE_INVALID_CHUNK_SIZE")
            self._state = self._SIZE
        elif not line:  # _TRAILER: a blank line ends the body
            self._done = True
        else:
            self._count_trailer(len(line) + 2)
            self._trailer_size += len(line) + 2
            self._trailer_lines += 1
            if self._trailer_lines > MAX_HEADERS_COUNT:
                raise _overflow(f"more than {MAX_HEADERS_COUNT} trailer lines")
            if line[0] in b" \t":  # RFC 9112 §5.2, as in the head; h11 would unfold it
                raise _bad("obsolete line folding in trailers")
