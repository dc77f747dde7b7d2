"""The sans-IO half of trionet.ws, without sockets: handshake checks, limits, frames."""

from __future__ import annotations

import zlib

import pytest
from _ws_raw import BINARY, CLOSE, CONT, PING, PONG, TEXT, frame
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, TextMessage
from wsproto.extensions import Extension
from wsproto.frame_protocol import Opcode

from trionet._ws_protocol import (
    MAX_FRAGMENTS,
    BoundedPerMessageDeflate,
    CommonFrames,
    FrameGuard,
    check_handshake,
    encode_message,
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


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 100_000])
@pytest.mark.parametrize("mask", [False, True], ids=["server", "client"])
def test_encode_message_matches_wsproto(size: int, mask: bool) -> None:
    """Our frames parse back through wsproto to the same message."""
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    data = encode_message(Opcode.BINARY, payload, mask=mask)
    peer = Connection(ConnectionType.SERVER if mask else ConnectionType.CLIENT)
    peer.receive_data(data)
    assert b"".join(e.data for e in peer.events() if isinstance(e, BytesMessage)) == payload


# -- CommonFrames: the fast parser in front of wsproto -------------------------------


def events_of(items: list[object]) -> list[tuple[str, object]]:
    """Events as (kind, data); CommonFrames' bare str and bytes are whole messages."""
    named = {str: "TextMessage", bytes: "BytesMessage"}
    return [
        (named[type(e)], e) if type(e) in named
        else (type(e).__name__, getattr(e, "data", getattr(e, "payload", None)))
        for e in items
    ]


def test_common_frames_parse_like_wsproto() -> None:
    data = (
        frame(TEXT, "héllo") + frame(BINARY, b"\x00" * 70_000) + frame(PING, b"p")
        + frame(PONG, b"q") + frame(TEXT, "x" * 200)
    )
    fast = CommonFrames(client=False, max_message_size=1 << 20)
    events, rest = fast.feed(data)
    assert rest is None
    reference = Connection(ConnectionType.SERVER)
    reference.receive_data(data)
    assert events_of(events) == events_of(list(reference.events()))


def test_common_frames_wait_for_frames_split_across_reads() -> None:
    data = frame(BINARY, bytes(range(256)) * 1000) + frame(TEXT, "tail")
    fast = CommonFrames(client=False, max_message_size=1 << 20)
    got = []
    for i in range(0, len(data), 997):
        events, rest = fast.feed(data[i : i + 997])
        assert rest is None
        got += events
    assert events_of(got) == [
        ("BytesMessage", bytes(range(256)) * 1000), ("TextMessage", "tail")
    ]


@pytest.mark.parametrize(
    "uncommon",
    [
        frame(TEXT, "frag", fin=False),
        frame(CLOSE, b"\x03\xe8"),
        frame(TEXT, "rsv", rsv=1),
        frame(TEXT, "no mask", mask=False),
        frame(BINARY, b"", length=2000),  # over the limit: wsproto's guard says 1009
        frame(TEXT, b"\xff"),
        frame(11, b"reserved opcode"),
    ],
    ids=["fragment", "close", "rsv", "unmasked", "too long", "bad utf-8", "opcode 11"],
)
def test_anything_else_is_handed_to_wsproto_from_that_frame_on(uncommon: bytes) -> None:
    fast = CommonFrames(client=False, max_message_size=1000)
    before, after = frame(TEXT, "before"), frame(TEXT, "after")
    events, rest = fast.feed(before + uncommon + after)
    assert events_of(events) == [("TextMessage", "before")]
    assert rest == uncommon + after


def test_the_client_side_expects_unmasked_frames() -> None:
    fast = CommonFrames(client=True, max_message_size=1000)
    events, rest = fast.feed(frame(TEXT, "from server", mask=False))
    assert rest is None and events_of(events) == [("TextMessage", "from server")]
    _, rest = fast.feed(frame(TEXT, "masked by a server"))
    assert rest is not None


common_frame = st.one_of(
    st.text(max_size=300).map(lambda t: frame(TEXT, t)),
    st.binary(max_size=3000).map(lambda b: frame(BINARY, b)),
    st.binary(max_size=125).map(lambda b: frame(PING, b)),
    st.binary(max_size=125).map(lambda b: frame(PONG, b)),
)
any_frame = st.one_of(
    common_frame,
    st.just(frame(TEXT, "a", fin=False) + frame(CONT, "b")),
    st.just(frame(TEXT, b"\xc3")),
    st.just(frame(BINARY, b"x", rsv=2)),
    st.just(frame(BINARY, b"", length=5000)),
)


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(any_frame, max_size=12), cuts=st.lists(st.integers(1, 4000), max_size=8))
def test_common_frames_then_wsproto_see_what_wsproto_alone_sees(
    frames: list[bytes], cuts: list[int]
) -> None:
    """Differential: the same bytes, cut anywhere, give the same events as wsproto alone."""
    data = b"".join(frames)
    reference, _ = server(4096)
    reference.receive_data(data)
    expected = list(reference.events())

    conn, _ = server(4096)
    fast: CommonFrames | None = CommonFrames(client=False, max_message_size=4096)
    got: list[object] = []
    pieces, start = [], 0
    for cut in sorted(set(cuts)):
        pieces.append(data[start:cut])
        start = max(start, cut)
    pieces.append(data[start:])
    for piece in pieces:
        if fast is not None:
            events, rest = fast.feed(piece)
            got += events
            if rest is None:
                continue
            fast, piece = None, rest
        conn.receive_data(piece)
        got += list(conn.events())
    assert merge_partials(got) == merge_partials(expected)


def merge_partials(events: list[object]) -> list[tuple[str, object]]:
    """Join wsproto's partial message events (where reads were cut changes them)."""
    merged: list[tuple[str, object]] = []
    open_message = False
    for event in events:
        ((name, data),) = events_of([event])
        if open_message and name == merged[-1][0]:
            merged[-1] = (name, merged[-1][1] + data)  # type: ignore[operator]
        else:
            merged.append((name, data))
        open_message = not getattr(event, "message_finished", True)
    return merged
