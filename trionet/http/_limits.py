"""Request policy without I/O: Node's limits and the checks stricter than h11.

h11 0.16 accepts inputs that Node's llhttp rejects and that enable request
smuggling (bare LF line ends, obs-fold, repeated or listed Content-Length,
Content-Length with Transfer-Encoding, 20-digit chunk sizes), and it enforces
its size limit only while an event is incomplete, so a 20 KB request line read
in one piece passes. The functions here close those gaps on the raw bytes and
the parsed head; the driver calls them and maps :class:`ClientError` to a
response. See ANCHORS.md §1.1 for the Node-vs-h11 matrix.
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
    "MAX_HEADERS_COUNT",
    "ChunkedScanner",
    "ClientError",
    "RequestInfo",
    "analyze_request",
    "check_head",
    "check_partial_head",
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

    Raises:
      ClientError: 400 for an unknown or lower-case method, repeated or
        listed Content-Length, or Content-Length with Transfer-Encoding
        (RFC 9112 §6.1: a smuggling vector, the connection must close);
        417 for an Expect other than ``100-continue``.
    """
    if event.method not in KNOWN_METHODS:
        raise _bad(f"unknown method {event.method!r}", "HPE_INVALID_METHOD")
    content_length: int | None = 0
    has_length = False
    chunked = False
    connection = b""
    expect = b""
    upgrade = False
    # raw_items() is one list comprehension; iterating the Headers sequence
    # would call a Python __getitem__ per header.
    for raw_name, value in event.headers.raw_items():
        name = raw_name.lower()
        if name == b"content-length":
            content_length = int(value)
            has_length = True
        elif name == b"transfer-encoding":
            chunked = True
        elif name == b"connection":
            connection = value.lower()
        elif name == b"expect":
            expect = value.lower()
        elif name == b"upgrade":
            upgrade = True
    if chunked:
        if has_length:
            raise _bad("both Content-Length and Transfer-Encoding", "HPE_UNEXPECTED_CONTENT_LENGTH")
        content_length = None
    elif has_length:
        _check_single_content_length(head)
    if expect and expect != b"100-continue":
        raise ClientError(417, f"unsupported Expect: {expect!r}", "HPE_EXPECTATION_FAILED")
    if event.http_version == b"1.1":
        keep_alive = b"close" not in connection
    else:
        keep_alive = b"keep-alive" in connection
    return RequestInfo(
        content_length=content_length,
        keep_alive=keep_alive,
        expect_continue=bool(expect) and event.http_version == b"1.1",
        upgrade=upgrade and b"upgrade" in connection,
    )


def _check_single_content_length(head: bytes) -> None:
    """h11 folds ``Content-Length: 3`` twice, or ``3, 3``, into one; Node refuses both."""
    values = _CONTENT_LENGTH_RE.findall(head)
    if len(values) != 1 or b"," in values[0]:
        raise _bad("repeated or listed Content-Length", "HPE_UNEXPECTED_CONTENT_LENGTH")


class ChunkedScanner:
    """Finds where a chunked body ends, checking the framing as strictly as llhttp.

    The driver feeds h11 only the bytes this scanner accepted, so a pipelined
    request after the body stays in trionet's buffer for the head checks.

    Raises :class:`ClientError` (400) for a chunk size of more than
    ``MAX_CHUNK_SIZE_DIGITS`` hex digits, a bare LF, or a malformed size line.
    """

    __slots__ = ("_done", "_remaining", "_state")

    # States: reading a size line; in chunk data (``_remaining`` bytes left);
    # expecting the CRLF after data; reading trailer lines.
    _SIZE, _DATA, _DATA_END, _TRAILER = range(4)

    def __init__(self) -> None:
        self._state = self._SIZE
        self._remaining = 0
        self._done = False

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
        # A size line cannot legitimately be long; llhttp caps chunk extensions too.
        if length > DEFAULT_MAX_HEADER_SIZE:
            raise _bad("chunk size line too long", "HPE_INVALID_CHUNK_SIZE")

    def _line(self, line: bytes) -> None:
        if self._state == self._SIZE:
            size_text = line.split(b";", 1)[0].rstrip(b" \t")
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
