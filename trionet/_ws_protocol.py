"""The sans-IO half of trionet.ws: what wsproto leaves to its caller.

wsproto parses and builds RFC 6455 frames and checks most of the framing
rules (masking, reserved bits, opcodes, control frame size and fragmentation,
UTF-8 of text and close reasons, close codes). It leaves these to us, and they
live here, without any I/O, so they can be read and tested on their own:

* message size limits, checked against each frame's *declared* length before
  its payload is buffered (wsproto has none: python-hyper/wsproto#86);
* a bound on the fragments of one message (fragment floods);
* inflation bounded while it happens, so a deflate bomb never allocates more
  than the limit (websockets/ws#1720), with close reasons that say what was
  wrong, and quoted parameter values in the deflate negotiation;
* the close codes registered after RFC 6455 (1012-1014), which wsproto refuses
  (the codes themselves, and the other close-code rules, are in :mod:`trionet._ws_state`);
* the server's checks on the opening handshake that wsproto skips or answers
  with the wrong status (method, key format, version, Upgrade);
* the bytes of a refusal response.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from wsproto.connection import ConnectionState as WireState
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import (
    CloseReason,
    Frame,
    FrameDecoder,
    FrameProtocol,
    Opcode,
    ParseFailed,
    RsvBits,
)
from wsproto.utilities import LocalProtocolError

from ._ws_state import REGISTERED_CLOSE_CODES

__all__ = [
    "COMPRESSION_THRESHOLD",
    "MAX_FRAGMENTS",
    "BoundedPerMessageDeflate",
    "FrameGuard",
    "Rejection",
    "Wire",
    "check_handshake",
    "new_connection",
    "pick_subprotocol",
    "violation_reason",
]

#: Fragments one message may have. ws caps them too (``maxFragments``, 16384 in
#: ws 8); a peer that splits a message into more is flooding us with headers.
MAX_FRAGMENTS = 16384

#: Messages shorter than this go out uncompressed, as in ws (its
#: ``perMessageDeflate.threshold``, 1024): deflating a short message costs a
#: zlib call on each side and saves a few bytes, or adds some.
COMPRESSION_THRESHOLD = 1024

#: The only WebSocket version there is (RFC 6455 section 4.1, "MUST be 13").
WEBSOCKET_VERSION = "13"

#: Length of the decoded Sec-WebSocket-Key nonce (RFC 6455 section 4.1: "a
#: randomly selected 16-byte value that has been base64-encoded").
KEY_LENGTH = 16

_NO_RSV = RsvBits(False, False, False)

_Proto = FrameDecoder | FrameProtocol


class FrameGuard(Extension):
    """Refuse oversized messages and fragment floods from the frame headers.

    wsproto calls every extension with each frame's header *before* it reads
    the payload; that is the one place where a frame can be refused by its
    declared length, so this guard is written as an extension that is never
    negotiated, only passed with the connection's. :class:`Wire` has wsproto
    call its header hook at that place (see :class:`_GuardedDecoder`) but
    keeps it off the list of extensions, whose other hooks it does not need.
    A 2^62-byte length field is refused with 1009 without a byte of it being buffered.

    Each frame is counted once, however TCP splits it: when a header arrives
    without its whole mask key, wsproto's ``parse_header`` has already called
    this hook, rolls the buffer back and calls it again for the same frame
    once more bytes came. So a frame counts at its first call and the next
    one is not counted until wsproto reports the frame complete. (Counting at
    ``frame_inbound_complete`` instead would refuse a huge frame only after
    its payload went through; undoing the count on rollback is impossible,
    wsproto says nothing about it.)

    Compressed messages are not counted here (their wire size says nothing of
    their real size); :class:`BoundedPerMessageDeflate` counts them as it
    inflates them.
    """

    name = "trionet-frame-guard"

    def __init__(self, max_message_size: int) -> None:
        self.max_message_size = max_message_size
        #: Why the last frame was refused (wsproto only reports "error in extension").
        self.problem = ""
        self._size = 0
        self._fragments = 0
        self._compressed = False
        #: The current data frame's header was counted; wsproto may show it
        #: again. Reset when the frame is complete (frame_inbound_complete).
        self.counted = False

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool:
        return False

    def frame_inbound_header(
        self, proto: _Proto, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        # opcode & 0x8: a control frame (RFC 6455 section 5.5); iscontrol() is a call.
        if opcode & 0x8 or self.counted:
            return _NO_RSV
        self.counted = True
        if opcode is not Opcode.CONTINUATION:
            self._size = self._fragments = 0
            self._compressed = rsv.rsv1
        self._fragments += 1
        if self._fragments > MAX_FRAGMENTS:
            self.problem = f"message in more than {MAX_FRAGMENTS} fragments"
            return CloseReason.MESSAGE_TOO_BIG
        if not self._compressed:
            self._size += payload_length
            if self._size > self.max_message_size:
                self.problem = f"message over {self.max_message_size} bytes"
                return CloseReason.MESSAGE_TOO_BIG
        return _NO_RSV

    def frame_inbound_complete(self, proto: _Proto, fin: bool) -> None:
        # Frames come one after another: a control frame can only start
        # after this data frame completed, so resetting here for it is harmless.
        self.counted = False


class BoundedPerMessageDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate, inflating at most ``max_message_size`` per message.

    wsproto inflates each chunk of a frame with an unbounded ``decompress()``,
    so a few KiB on the wire can become gigabytes in memory. Here every
    ``decompress()`` is told how much output the message may still have
    (``max_length``); input left unconsumed means the message is too big, and
    the connection is closed with 1009 before anything more is inflated.

    wsproto reports every refusal of an extension as "error in extension";
    ``problem`` keeps our words for it, which become the Close frame's reason.
    """

    def __init__(self, max_message_size: int, **options: bool | int | None) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.max_message_size = max_message_size
        self._inflated = 0
        #: Why the last frame was refused, for the Close frame's reason.
        self.problem = ""

    def accept(self, offer: str) -> bool | str | None:
        """Accept the client's first acceptable offer only (RFC 7692 section 5.1).

        wsproto calls this once per offer and would merge the parameters of
        several offers into one object. An offer with an invalid parameter
        value is declined (section 5.1: the server "MUST decline"), so the
        next offer, or none, is used, instead of failing the handshake.
        """
        if self.enabled():
            return None
        takeover = (self.client_no_context_takeover, self.server_no_context_takeover)
        try:
            agreed = super().accept(unquote_parameters(offer))
        except ValueError:  # wsproto's int() of a parameter that is no number
            agreed = None
        if agreed is None:  # wsproto set flags from the declined offer: undo them
            self.client_no_context_takeover, self.server_no_context_takeover = takeover
        return agreed

    def finalize(self, offer: str) -> None:
        """The client's side: take the server's answer, quoted values too."""
        super().finalize(unquote_parameters(offer))

    def frame_inbound_header(
        self, proto: _Proto, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        result = super().frame_inbound_header(proto, opcode, rsv, payload_length)
        if isinstance(result, CloseReason):
            # RFC 7692 section 6: only a message's first data frame may set RSV1.
            kind = "a control frame" if opcode.iscontrol() else "a continuation frame"
            self.problem = f"permessage-deflate: RSV1 set on {kind}"
        return result

    def frame_outbound(
        self, proto: _Proto, opcode: Opcode, rsv: RsvBits, data: bytes, fin: bool
    ) -> tuple[RsvBits, bytes]:
        """Deflate a message unless it is one frame under COMPRESSION_THRESHOLD bytes.

        RFC 7692 lets the sender choose per message (RSV1 on its first frame
        says which); a message sent plain never touches the compressor, so the
        peer's inflater stays in step.
        """
        if fin and opcode is not Opcode.CONTINUATION and len(data) < COMPRESSION_THRESHOLD:
            return rsv, data
        return super().frame_outbound(proto, opcode, rsv, data, fin)

    def frame_inbound_payload_data(self, proto: _Proto, data: bytes) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        return self._inflate(data)

    def frame_inbound_complete(self, proto: _Proto, fin: bool) -> bytes | CloseReason | None:
        if not (fin and self._inbound_compressed and self._inbound_is_compressible):
            return super().frame_inbound_complete(proto, fin)
        # RFC 7692 section 7.2.2: append 0x00 0x00 0xff 0xff before inflating the tail.
        tail = self._inflate(b"\x00\x00\xff\xff")
        self._inflated = 0
        if isinstance(tail, CloseReason):
            return tail
        if proto.client:
            takeover_off = self.server_no_context_takeover
        else:
            takeover_off = self.client_no_context_takeover
        if takeover_off:
            self._decompressor = None
        self._inbound_compressed = None
        return tail

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        assert self._decompressor is not None
        budget = self.max_message_size - self._inflated
        try:
            out = self._decompressor.decompress(data, budget + 1)
        except zlib.error as exc:
            self.problem = f"permessage-deflate: invalid compressed data ({exc})"
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > self.max_message_size or self._decompressor.unconsumed_tail:
            self.problem = f"message over {self.max_message_size} bytes once inflated"
            return CloseReason.MESSAGE_TOO_BIG
        return out


def unquote_parameters(offer: str) -> str:
    """An extension offer or answer with its quoted parameter values unquoted.

    RFC 6455 section 9.1 lets a parameter value be a quoted-string, "after
    quoted-string unescaping" a token; RFC 7692 section 7.1.2.1 repeats it for
    ``client_max_window_bits``, so ``server_max_window_bits="10"`` means 10.
    wsproto calls ``int()`` on the raw value and fails on the quotes.
    """
    name, *parameters = (part.strip() for part in offer.split(";"))
    unquoted = [name]
    for parameter in parameters:
        key, equals, value = parameter.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
        unquoted.append(f"{key.strip()}={value}" if equals else key.strip())
    return "; ".join(unquoted)


#: A quoted-pair inside a quoted-string (RFC 9110 section 5.6.4): backslash, then the character.
_QUOTED_PAIR = re.compile(r"\\(.)")


def violation_reason(extensions: Iterable[Extension], default: str) -> str:
    """Our words for the frame an extension refused (wsproto says "error in extension")."""
    for extension in extensions:
        problem = getattr(extension, "problem", "")
        if problem:
            return str(problem)
    return default


# -- close codes ---------------------------------------------------------------------

#: The registered close codes (see :mod:`trionet._ws_state`, their home) that wsproto refuses.
_UNKNOWN_TO_WSPROTO = REGISTERED_CLOSE_CODES - {int(code) for code in CloseReason}


class _FrameProtocol(FrameProtocol):
    """wsproto's frame protocol, accepting every registered close code."""

    def _process_close(self, frame: Frame) -> Frame:
        payload = frame.payload
        if not isinstance(payload, (bytes, bytearray)) or len(payload) < 2:
            return super()._process_close(frame)
        (code,) = struct.unpack("!H", payload[:2])
        if code not in _UNKNOWN_TO_WSPROTO:
            return super()._process_close(frame)
        try:
            reason = bytes(payload[2:]).decode("utf-8")
        except UnicodeDecodeError as exc:  # as wsproto: 1007 (RFC 6455 section 8.1)
            raise ParseFailed(
                f"Error decoding CLOSE reason: {exc}", CloseReason.INVALID_FRAME_PAYLOAD_DATA
            ) from None
        return Frame(frame.opcode, (code, reason), frame.frame_finished, frame.message_finished)


class _GuardedDecoder(FrameDecoder):
    """wsproto's frame decoder, asking the :class:`FrameGuard` about each header first.

    Where wsproto's ``parse_header`` calls the extensions' header hooks
    (before any payload is buffered), the guard's comes first, then
    wsproto's own loop over the negotiated extensions and its check of the
    reserved bits. The guard is kept off wsproto's list of extensions: there
    every frame received also paid two hooks the guard has no use for (the
    payload's and the completion's, the latter reported by
    :meth:`Wire.next_frame` instead) and two copies of its payload
    (``bytes()`` and ``bytearray()`` around the payload hook), and every
    frame sent a hook and a copy: about 1 us of a 32-byte echo's ~27.
    """

    def __init__(self, client: bool, extensions: list[Extension], guard: FrameGuard) -> None:
        super().__init__(client, extensions)
        self.extensions = extensions  # the protocol's list, not a copy
        self.guard = guard

    def extension_processing(self, opcode: Opcode, rsv: RsvBits, payload_len: int) -> None:
        verdict = self.guard.frame_inbound_header(self, opcode, rsv, payload_len)
        if isinstance(verdict, CloseReason):
            raise ParseFailed("error in extension", verdict)
        # With no extension negotiated and no reserved bit set, wsproto's loop
        # has no hook to call and no bit to check: skipped (a set bit is
        # refused by it, as before).
        if self.extensions or rsv.rsv1 or rsv.rsv2 or rsv.rsv3:
            super().extension_processing(opcode, rsv, payload_len)


class Wire:
    """One WebSocket's frames, parsed and built by wsproto's ``FrameProtocol``, and its close state.

    wsproto is two layers: ``FrameProtocol`` parses and builds the frames
    (masking, lengths, opcodes, UTF-8, fragments, close payloads, the
    extensions' hooks), and ``Connection`` above it turns each frame into an
    event object, queues it in a deque and keeps a four-state close
    handshake. trionet drives the lower layer directly: every frame is still
    wsproto's, but a message costs no event object, no queue and no
    isinstance chain on either side, and an idle connection holds no deque.
    The close handshake's four states are wsproto's own ``ConnectionState``
    with ``Connection``'s transitions, so :func:`~trionet._ws_state.is_violation`
    reads them as before.

    Alternatives rejected: keeping ``Connection`` (its ``events()`` was the
    largest single cost of a 32-byte echo, python-hyper/wsproto's generator
    per read plus an event per frame); parsing frames ourselves (the rule is
    that wsproto parses every frame).
    """

    __slots__ = ("_buffer", "_decoder", "_guard", "_messages", "_parsing", "proto", "state")

    def __init__(self, client: bool, extensions: Sequence[Extension]) -> None:
        guards = [e for e in extensions if isinstance(e, FrameGuard)]
        negotiated = [e for e in extensions if not isinstance(e, FrameGuard)]
        self.proto = proto = _FrameProtocol(client, negotiated)
        #: The guard wsproto asks about each header (see _GuardedDecoder).
        self._guard = guards[0] if guards else None
        if self._guard is not None:
            proto._frame_decoder = _GuardedDecoder(client, proto.extensions, self._guard)
        #: OPEN, LOCAL_CLOSING (our Close sent), REMOTE_CLOSING (the peer's read), CLOSED.
        self.state = WireState.OPEN
        #: wsproto's two parsers: frames, then messages (fragments, UTF-8).
        self._decoder = proto._frame_decoder
        self._messages = proto._message_decoder
        # FrameProtocol's own loop over them (_parse_more_gen, what its
        # received_frames() wraps) is not used (see next_frame()): its
        # generator, made in FrameProtocol's __init__ and never started,
        # is closed so that it holds no frame.
        proto._parse_more.close()
        #: The bytes received and not parsed yet: wsproto's buffer, fed in place.
        self._buffer = self._decoder.buffer.buffer
        #: False once parsing has ended: the peer's Close, or a violation.
        self._parsing = True

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; nothing more is parsed once its Close (or a violation) was read.

        Appended to wsproto's buffer in place, as its ``Buffer.feed`` does.
        """
        if self._parsing:
            self._buffer += data

    def next_frame(self) -> Frame | None:
        """The next frame the data received so far completes, as wsproto's ``Connection`` sees it;
        None when wsproto needs more bytes.

        Data frames come with the message's opcode (TEXT or BINARY, also for
        continuations) and ``message_finished``; a partial frame comes as
        soon as part of its payload is in (wsproto's streaming). A CLOSE
        frame's payload is ``(code, reason)``. A protocol violation comes as
        a CLOSE frame with the code to fail the connection with (1002, 1007,
        1009) and wsproto's words, *without* a state change: that is how
        the caller tells the two apart (``is_violation``). Nothing is parsed
        after either.

        The three wsproto calls of ``FrameProtocol._parse_more_gen``, made
        here one frame at a time: the frame decoder, then the message
        decoder for data frames or the Close parser for a Close. Driving
        them directly, not through that generator (and the one
        ``received_frames()`` wraps it in), saves two generator resumptions
        per frame, and a final parse attempt per read: with no byte left
        (checked first, for free) no frame can complete, as wsproto parses
        a header and the payload it has in one call; the generator finds
        that out by parsing a header that is not there. It also keeps no
        frame alive between calls (the generator held the last one, and
        its message, while the connection idled).
        """
        if not self._buffer or not self._parsing:
            return None
        try:
            frame = self._decoder.process_buffer()
            if frame is None:
                return None
            if frame.frame_finished and self._guard is not None:
                self._guard.counted = False  # its frame_inbound_complete, inline
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONTINUATION:
                return self._messages.process_frame(frame)
            if opcode is Opcode.CLOSE:
                frame = self.proto._process_close(frame)
                self._parsing = False
                local = self.state is WireState.LOCAL_CLOSING
                self.state = WireState.CLOSED if local else WireState.REMOTE_CLOSING
            return frame
        except ParseFailed as exc:
            self._parsing = False
            return Frame(Opcode.CLOSE, (exc.code, str(exc)), True, True)

    def frames(self) -> Iterator[Frame]:
        """Every frame :meth:`next_frame` has for the data received so far."""
        while (frame := self.next_frame()) is not None:
            yield frame

    def send_data(self, data: str | bytes | bytearray, fin: bool = True) -> bytearray:
        """A data frame (text for ``str``); ``fin=False`` leaves the message open.

        A whole message outside a fragmented one (nearly every message) is
        built by wsproto's ``_serialize_frame``, as its ``send_data`` would
        build it, without the opcode bookkeeping a fragment needs.
        """
        if self.state is not WireState.OPEN:
            raise LocalProtocolError(f"cannot send data in state {self.state}")
        proto = self.proto
        if fin and proto._outbound_opcode is None:
            if isinstance(data, str):
                return proto._serialize_frame(Opcode.TEXT, data.encode(), True)
            return proto._serialize_frame(Opcode.BINARY, data, True)
        return proto.send_data(data, fin)

    def ping(self, payload: bytes) -> bytearray:
        if self.state is not WireState.OPEN:
            raise LocalProtocolError(f"cannot send a ping in state {self.state}")
        return self.proto.ping(payload)

    def pong(self, payload: bytes) -> bytearray:
        if self.state is not WireState.OPEN:
            raise LocalProtocolError(f"cannot send a pong in state {self.state}")
        return self.proto.pong(payload)

    def close(self, code: int | None, reason: str | None = None) -> bytearray:
        """Our Close frame: first (LOCAL_CLOSING) or in answer to the peer's (CLOSED).

        RFC 6455 section 5.5.1: the answer echoes the peer's code; wsproto
        sends no code at all for 1005 (no status received).
        """
        if self.state is WireState.OPEN:
            self.state = WireState.LOCAL_CLOSING
        elif self.state is WireState.REMOTE_CLOSING:
            self.state = WireState.CLOSED
        else:
            raise LocalProtocolError(f"cannot send a Close in state {self.state}")
        return self.proto.close(code, reason)


def new_connection(client: bool, extensions: Sequence[Extension]) -> Wire:
    """The frame layer of an established WebSocket, with our close-code rules.

    (Rejected: patching wsproto's module-level tables to accept 1012-1014,
    which would change every wsproto user in the process.)
    """
    return Wire(client, extensions)


# -- the opening handshake, server side ----------------------------------------------


@dataclass(frozen=True)
class Rejection:
    """An HTTP response that refuses a WebSocket handshake.

    Fields:
      status: the HTTP status code.
      headers: extra response headers.
      body: the response body (a short explanation for a human).
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def check_handshake(method: str, raw_headers: Sequence[tuple[bytes, bytes]]) -> Rejection | None:
    """Check a client's opening handshake (RFC 6455 section 4.2.1); None when it is valid.

    wsproto checks some of this too, but answers a bad version with 400 and
    does not look at the key at all; these checks come first so that every
    malformed handshake gets its proper status and never a 101.
    """
    if method != "GET":
        # Section 4.1: "The method of the request MUST be GET".
        return Rejection(405, [("Allow", "GET")], b"WebSocket handshakes use GET\n")
    values = _header_values(raw_headers)
    if [v.lower() for v in values.get("upgrade", [])] != ["websocket"]:
        return Rejection(400, [], b"Upgrade header must be 'websocket'\n")
    tokens = {t.strip().lower() for v in values.get("connection", []) for t in v.split(",")}
    if "upgrade" not in tokens:
        return Rejection(400, [], b"Connection header must include 'Upgrade'\n")
    if values.get("sec-websocket-version") != [WEBSOCKET_VERSION]:
        # Section 4.4: answer an unknown version with 426 and the versions we speak.
        status = 426 if values.get("sec-websocket-version") else 400
        headers = [("Sec-WebSocket-Version", WEBSOCKET_VERSION)]
        return Rejection(status, headers, b"WebSocket version must be 13\n")
    keys = values.get("sec-websocket-key", [])
    if len(keys) != 1 or not _valid_key(keys[0]):
        return Rejection(400, [], b"Sec-WebSocket-Key must be the base64 of 16 bytes\n")
    return None


def _header_values(raw_headers: Sequence[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for name, value in raw_headers:
        key = name.decode("latin-1").lower()
        values.setdefault(key, []).append(value.decode("latin-1").strip())
    return values


def _valid_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key.encode("ascii"), validate=True)) == KEY_LENGTH
    except (binascii.Error, UnicodeEncodeError):
        return False


def pick_subprotocol(offered: Iterable[str], supported: Sequence[str]) -> str | None:
    """The first of the server's ``supported`` subprotocols that the client offered.

    The server's order wins, as in the ``websockets`` package; None when
    there is no common one (the handshake then goes on without a subprotocol,
    as RFC 6455 section 4.2.2 allows).
    """
    offered = set(offered)
    return next((p for p in supported if p in offered), None)
