"""The sans-IO half of trionet.ws, without sockets: handshake checks, limits, frames."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from _ws_raw import BINARY, CONT, PING, TEXT, close_frame, frame
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, TextMessage
from wsproto.extensions import Extension
from wsproto.frame_protocol import Opcode

from trionet._ws_protocol import (
    MAX_FRAGMENTS,
    BoundedPerMessageDeflate,
    FrameGuard,
    check_handshake,
    new_connection,
    pick_subprotocol,
    unquote_parameters,
    violation_reason,
)
from trionet._ws_state import REGISTERED_CLOSE_CODES

GOOD = [
    (b"Host", b"example.com"),
    (b"Upgrade", b"websocket"),
    (b"Connection", b"keep-alive, Upgrade"),
    (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    (b"Sec-WebSocket-Version", b"13"),
]


def replaced(name: bytes, value: bytes | None) -> list[tuple[bytes, bytes]]:
    headers = [(n, v) for n, v in GOOD if n.lower() != name.lower()]
    return headers if value is None else [*headers, (name, value)]


def test_a_valid_handshake_passes() -> None:
    assert check_handshake("GET", GOOD) is None


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        ("POST", GOOD, 405),
        ("GET", replaced(b"Sec-WebSocket-Version", b"8"), 426),
        ("GET", replaced(b"Sec-WebSocket-Version", None), 400),
        ("GET", replaced(b"Sec-WebSocket-Key", None), 400),
        ("GET", replaced(b"Sec-WebSocket-Key", b"c2hvcnQ="), 400),
        ("GET", replaced(b"Sec-WebSocket-Key", b"!!!!"), 400),
        ("GET", [*GOOD, (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ==")], 400),
        ("GET", replaced(b"Upgrade", b"h2c"), 400),
        ("GET", replaced(b"Connection", b"close"), 400),
    ],
)
def test_malformed_handshakes_get_their_status(
    method: str, headers: list[tuple[bytes, bytes]], status: int
) -> None:
    rejection = check_handshake(method, headers)
    assert rejection is not None and rejection.status == status
    if status == 426:
        assert ("Sec-WebSocket-Version", "13") in rejection.headers


def test_subprotocol_follows_the_servers_preference() -> None:
    assert pick_subprotocol(["a", "b"], ["b", "a"]) == "b"
    assert pick_subprotocol(["a"], ["c"]) is None
    assert pick_subprotocol([], []) is None


def server(max_size: int = 1000, *extensions: Extension) -> tuple[Connection, FrameGuard]:
    guard = FrameGuard(max_size)
    return Connection(ConnectionType.SERVER, [*extensions, guard]), guard


def test_guard_refuses_a_frame_by_its_declared_length() -> None:
    conn, guard = server(1000)
    conn.receive_data(frame(BINARY, b"", length=1 << 40)[:14])  # the header alone
    events = list(conn.events())
    assert isinstance(events[0], CloseConnection) and events[0].code == 1009
    assert "over 1000 bytes" in guard.problem


def test_guard_counts_fragments_of_one_message() -> None:
    conn, _ = server(1000)
    conn.receive_data(frame(TEXT, "a" * 600, fin=False) + frame(CONT, "b" * 401))
    events = list(conn.events())
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1009


def test_guard_resets_between_messages() -> None:
    conn, _ = server(1000)
    conn.receive_data(frame(TEXT, "a" * 1000) + frame(TEXT, "b" * 1000))
    assert [len(e.data) for e in conn.events() if isinstance(e, TextMessage)] == [1000, 1000]


def test_guard_bounds_the_number_of_fragments() -> None:
    conn, guard = server(1 << 20)
    conn.receive_data(frame(TEXT, fin=False) + frame(CONT, fin=False) * MAX_FRAGMENTS)
    events = list(conn.events())
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1009
    assert "fragments" in guard.problem


def deflate_server(max_size: int) -> Connection:
    pmd = BoundedPerMessageDeflate(max_size)
    assert pmd.accept("permessage-deflate") is not None
    return server(max_size, pmd)[0]


def compressed(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


def test_inflation_stops_at_the_limit() -> None:
    conn = deflate_server(1 << 20)
    conn.receive_data(frame(BINARY, compressed(b"\0" * (64 << 20)), rsv=4))
    events = list(conn.events())
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1009


def test_inflation_within_the_limit_delivers_the_message() -> None:
    conn = deflate_server(1 << 20)
    conn.receive_data(frame(BINARY, compressed(b"\1" * (1 << 20)), rsv=4))
    data = b"".join(e.data for e in conn.events() if isinstance(e, BytesMessage))
    assert data == b"\1" * (1 << 20)


def test_only_the_first_deflate_offer_is_accepted() -> None:
    pmd = BoundedPerMessageDeflate(1000)
    assert pmd.accept("permessage-deflate; server_no_context_takeover") is not None
    assert pmd.accept("permessage-deflate") is None


# -- a frame counts once, however TCP splits it ----------------------------------------


def header_length(data: bytes) -> int:
    """Bytes of a client frame's header: 2, the extended length, the 4-byte mask key."""
    short = data[1] & 0x7F
    return 2 + {126: 2, 127: 8}.get(short, 0) + 4


def feed_headers_bytewise(conn: Connection, frames: list[bytes]) -> list[Any]:
    """Feed each frame's header one byte at a time, then its payload whole; all events."""
    events: list[Any] = []
    for data in frames:
        split = header_length(data)
        for i in range(split):
            conn.receive_data(data[i : i + 1])
            events += conn.events()
        conn.receive_data(data[split:])
        events += conn.events()
    return events


def test_a_600_kib_message_in_two_fragments_passes_a_1_mib_limit_fed_bytewise() -> None:
    """wsproto re-reads a header whose mask key is late: the guard still counts it once."""
    conn, _ = server(1 << 20)
    first, second = b"1" * (100 << 10), b"2" * (500 << 10)
    events = feed_headers_bytewise(conn, [frame(BINARY, first, fin=False), frame(CONT, second)])
    assert not [e for e in events if isinstance(e, CloseConnection)]
    assert b"".join(e.data for e in events if isinstance(e, BytesMessage)) == first + second


def test_a_message_of_max_fragments_passes_fed_one_byte_at_a_time() -> None:
    conn, _ = server(1 << 20)
    stream = frame(TEXT, "a", fin=False) + frame(CONT, "b", fin=False) * (MAX_FRAGMENTS - 2)
    stream += frame(CONT, "c")
    events: list[Any] = []
    for i in range(len(stream)):
        conn.receive_data(stream[i : i + 1])
        events += conn.events()
    assert not [e for e in events if isinstance(e, CloseConnection)]
    text = "".join(e.data for e in events if isinstance(e, TextMessage))
    assert text == "a" + "b" * (MAX_FRAGMENTS - 2) + "c"


def test_one_fragment_over_max_fragments_is_still_refused_fed_bytewise() -> None:
    conn, guard = server(1 << 20)
    frames = [frame(TEXT, "a", fin=False)] + [frame(CONT, "b", fin=False)] * MAX_FRAGMENTS
    events = feed_headers_bytewise(conn, frames)
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1009
    assert "fragments" in guard.problem


# -- close codes -----------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(REGISTERED_CLOSE_CODES))
def test_close_codes_registered_after_rfc_6455_are_accepted(code: int) -> None:
    wire = new_connection(False, [FrameGuard(1000)])
    wire.receive_data(close_frame(code, "restarting"))
    [close] = wire.frames()
    assert close.opcode is Opcode.CLOSE and close.payload == (code, "restarting")
    assert wire.state is ConnectionState.REMOTE_CLOSING  # a real Close, not a violation


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_unregistered_and_local_only_close_codes_are_still_protocol_errors(code: int) -> None:
    wire = new_connection(False, [FrameGuard(1000)])
    wire.receive_data(close_frame(code))
    [close] = wire.frames()
    assert close.opcode is Opcode.CLOSE and close.payload[0] == 1002
    assert wire.state is ConnectionState.OPEN  # a violation: the caller fails the connection


def test_a_1014_close_reason_must_be_utf8() -> None:
    wire = new_connection(False, [FrameGuard(1000)])
    wire.receive_data(close_frame(1014, b"\xff"))
    [close] = wire.frames()
    assert close.opcode is Opcode.CLOSE and close.payload[0] == 1007


# -- permessage-deflate: quoted parameters, reasons ----------------------------------------


def test_a_quoted_window_bits_value_is_accepted() -> None:
    """RFC 7692 section 7.1.2.1 allows server_max_window_bits="10"; wsproto's int() did not."""
    pmd = BoundedPerMessageDeflate(1000)
    assert pmd.accept('permessage-deflate; server_max_window_bits="10"') == (
        "server_max_window_bits=10"
    )
    assert pmd.server_max_window_bits == 10


def test_the_client_takes_a_quoted_answer() -> None:
    pmd = BoundedPerMessageDeflate(1000)
    pmd.finalize('permessage-deflate; client_max_window_bits="9"; server_no_context_takeover')
    assert pmd.enabled() and pmd.client_max_window_bits == 9
    assert pmd.server_no_context_takeover


def test_an_offer_with_an_invalid_value_is_declined_and_the_next_one_taken() -> None:
    """RFC 7692 section 5.1: decline the offer, don't fail the handshake."""
    pmd = BoundedPerMessageDeflate(1000)
    invalid = "permessage-deflate; client_no_context_takeover; server_max_window_bits=x"
    assert pmd.accept(invalid) is None
    assert pmd.accept("permessage-deflate; server_max_window_bits=20") is None
    assert pmd.accept("permessage-deflate") == ""
    assert not pmd.client_no_context_takeover  # nothing left over from the declined offers


def test_unquote_parameters() -> None:
    assert unquote_parameters('permessage-deflate;a="1" ; b ; c = "x\\"y"') == (
        'permessage-deflate; a=1; b; c=x"y'
    )


def deflate_violation(data: bytes) -> tuple[int, str]:
    """Feed ``data`` to a deflating server connection: the close code and our reason for it."""
    pmd = BoundedPerMessageDeflate(1 << 20)
    assert pmd.accept("permessage-deflate") is not None
    guard = FrameGuard(1 << 20)
    wire = new_connection(False, [pmd, guard])
    wire.receive_data(data)
    close = list(wire.frames())[-1]
    assert close.opcode is Opcode.CLOSE
    code, reason = close.payload
    return code, violation_reason([guard, pmd], reason)


def test_deflate_violations_say_what_was_wrong() -> None:
    assert deflate_violation(frame(BINARY, b"\xff\xff\xff\xff", rsv=4)) == (
        1007,
        "permessage-deflate: invalid compressed data "
        "(Error -3 while decompressing data: invalid block type)",
    )
    assert deflate_violation(frame(TEXT, "a", fin=False) + frame(CONT, "b", rsv=4)) == (
        1002, "permessage-deflate: RSV1 set on a continuation frame"
    )
    assert deflate_violation(frame(PING, "p", rsv=4)) == (
        1002, "permessage-deflate: RSV1 set on a control frame"
    )
    bomb = compressed(b"\0" * (8 << 20))
    assert deflate_violation(frame(BINARY, bomb, rsv=4)) == (
        1009, "message over 1048576 bytes once inflated"
    )
