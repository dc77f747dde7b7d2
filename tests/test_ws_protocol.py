"""The sans-IO half of trionet.ws, without sockets: handshake checks, limits, frames."""

from __future__ import annotations

import zlib

import pytest
from _ws_raw import BINARY, CONT, TEXT, frame
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, TextMessage
from wsproto.extensions import Extension

from trionet._ws_protocol import (
    MAX_FRAGMENTS,
    BoundedPerMessageDeflate,
    FrameGuard,
    check_handshake,
    format_response,
    pick_subprotocol,
)

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


def test_format_response_closes_and_counts_the_body() -> None:
    data = format_response(418, {"X-Why": "tea"}, "short")
    assert data.startswith(b"HTTP/1.1 418 ")
    assert b"\r\nConnection: close\r\n" in data
    assert b"\r\nContent-Length: 5\r\n" in data
    assert data.endswith(b"\r\n\r\nshort")
    with pytest.raises(ValueError):
        format_response(400, {"X": "a\r\nSet-Cookie: evil"})


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
