"""Protocol violations sent as hand-built frames: each closes with its code.

RFC 6455 says how an endpoint fails a connection whose peer broke the
protocol (section 7.1.7) and with which code (section 7.4.1). Each test sends
the offending bytes over a raw socket, asserts the code of the server's Close,
and then checks that the server still serves a well-behaved client.
"""

from __future__ import annotations

import functools
import logging
import struct
import zlib
from typing import Any

import pytest
import trio
from _ws_raw import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    RawClient,
    accept_token,
    close_frame,
    frame,
    read_handshake_key,
)

import trionet
from trionet import ws


async def echo(sock: ws.WebSocket) -> None:
    async for message in sock:
        await sock.send(message)


@pytest.fixture
async def server(nursery: trio.Nursery) -> Any:
    serve = functools.partial(ws.serve, echo, 0, host="127.0.0.1", max_message_size=1 << 20)
    return await nursery.start(serve)


async def assert_closes_with(server: Any, code: int, *data: bytes) -> None:
    """Send ``data`` on a fresh connection; the server closes with ``code``, then serves on."""
    with trio.fail_after(5):
        raw = await RawClient.connect(server.port)
        await raw.send(*data)
        assert await raw.close_code() == code
        assert await raw.next_frame() is None  # and then it closes TCP
        await raw.aclose()
        async with ws.connect(f"ws://127.0.0.1:{server.port}/") as client:
            await client.send("still serving")
            assert await client.receive() == "still serving"


async def test_unmasked_client_frame_closes_1002(server: Any) -> None:
    await assert_closes_with(server, 1002, frame(TEXT, "no mask", mask=False))


async def test_invalid_utf8_text_closes_1007(server: Any) -> None:
    surrogate = "κόσμε".encode() + b"\xed\xa0\x80"  # an encoded UTF-16 surrogate
    await assert_closes_with(server, 1007, frame(TEXT, surrogate))


async def test_invalid_utf8_split_across_fragments_closes_1007(server: Any) -> None:
    await assert_closes_with(
        server, 1007, frame(TEXT, b"ok \xf0\x90", fin=False), frame(CONT, b"\x28 bad")
    )


async def test_invalid_utf8_close_reason_closes_1007(server: Any) -> None:
    await assert_closes_with(server, 1007, close_frame(1000, b"\xff\xfe"))


@pytest.mark.parametrize("rsv", [1, 2, 4, 3, 7])
async def test_reserved_bits_without_an_extension_close_1002(server: Any, rsv: int) -> None:
    await assert_closes_with(server, 1002, frame(TEXT, "rsv", rsv=rsv))


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
async def test_unknown_opcodes_close_1002(server: Any, opcode: int) -> None:
    await assert_closes_with(server, 1002, frame(opcode, "?"))


async def test_fragmented_ping_closes_1002(server: Any) -> None:
    await assert_closes_with(server, 1002, frame(PING, "half", fin=False), frame(CONT, "half"))


async def test_control_frame_over_125_bytes_closes_1002(server: Any) -> None:
    await assert_closes_with(server, 1002, frame(PING, b"x" * 126))


async def test_close_with_a_one_byte_payload_closes_1002(server: Any) -> None:
    await assert_closes_with(server, 1002, frame(CLOSE, b"\x03"))


async def test_continuation_without_a_message_closes_1002(server: Any) -> None:
    await assert_closes_with(server, 1002, frame(CONT, "orphan"))


async def test_new_message_inside_a_fragmented_one_closes_1002(server: Any) -> None:
    await assert_closes_with(server, 1002, frame(TEXT, "a", fin=False), frame(TEXT, "b"))


async def test_length_with_the_most_significant_bit_set_closes_1002(server: Any) -> None:
    """A 2^63 length field: refused from the header alone, nothing allocated."""
    await assert_closes_with(server, 1002, frame(BINARY, b"", length=1 << 63))


async def test_huge_length_field_closes_1009_before_any_payload(server: Any) -> None:
    """2^62 bytes announced and none sent: the declared length alone is refused."""
    await assert_closes_with(server, 1009, frame(BINARY, b"", length=1 << 62))


async def test_length_just_over_the_limit_closes_1009(server: Any) -> None:
    await assert_closes_with(server, 1009, frame(BINARY, b"", length=(1 << 20) + 1))


async def test_fragments_adding_up_over_the_limit_close_1009(server: Any) -> None:
    chunk = b"z" * (1 << 19)
    await assert_closes_with(
        server,
        1009,
        frame(BINARY, chunk, fin=False),
        frame(CONT, chunk, fin=False),
        frame(CONT, b"!", fin=True),
    )


async def test_fragment_flood_closes_1009(server: Any) -> None:
    """Empty fragments cost nothing to send; more than MAX_FRAGMENTS end the connection."""
    empties = frame(CONT, b"", fin=False) * 16384
    await assert_closes_with(server, 1009, frame(TEXT, b"", fin=False), empties)


async def test_ping_flood_is_answered_without_unbounded_buffering(server: Any) -> None:
    """20,000 pings in one burst: pongs go out one read at a time, then a Close works."""
    with trio.fail_after(10):
        raw = await RawClient.connect(server.port)
        await raw.send(frame(PING, b"p") * 20_000)
        pongs = 0
        while pongs < 20_000:
            f = await raw.next_frame()
            assert f is not None and f.opcode == PONG
            pongs += 1
        await raw.send(close_frame(1000))
        assert await raw.close_code() == 1000
        await raw.aclose()


async def test_violations_are_logged_on_the_trionet_logger(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="trionet"):
        await assert_closes_with(server, 1002, frame(TEXT, "no mask", mask=False))
    assert any(
        r.name.startswith("trionet") and "protocol violation" in r.getMessage()
        for r in caplog.records
    )


# -- the client side -----------------------------------------------------------------


async def fake_server(
    nursery: trio.Nursery, send_after_handshake: bytes
) -> tuple[Any, list[bytes]]:
    """A TCP server that accepts the handshake, sends raw bytes, and records what it got."""
    received: list[bytes] = []

    async def handle(sock: trionet.net.Socket) -> None:
        key = await read_handshake_key(sock)
        await sock.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept_token(key)}\r\n\r\n".encode()
            + send_after_handshake
        )
        while data := await sock.receive():
            received.append(data)

    server = await nursery.start(functools.partial(trionet.net.serve, handle, 0, host="127.0.0.1"))
    return server, received


async def test_client_closes_1002_on_a_masked_server_frame(nursery: trio.Nursery) -> None:
    server, received = await fake_server(nursery, frame(TEXT, "masked!", mask=True))
    with trio.fail_after(5):
        async with ws.connect(f"ws://127.0.0.1:{server.port}/") as client:
            with pytest.raises(ws.ConnectionClosed) as closed:
                await client.receive()
        while not received:
            await trio.sleep(0.01)
    assert closed.value.code == 1002
    # The client's own Close frame (masked) says 1002 too.
    sent = received[0]
    assert sent[0] == 0x88
    key = sent[2:6]
    code = bytes(b ^ key[i % 4] for i, b in enumerate(sent[6:8]))
    assert struct.unpack("!H", code)[0] == 1002


async def test_client_closes_1007_on_invalid_utf8_from_the_server(nursery: trio.Nursery) -> None:
    server, _ = await fake_server(nursery, frame(TEXT, b"\xff", mask=False))
    with trio.fail_after(5):
        async with ws.connect(f"ws://127.0.0.1:{server.port}/") as client:
            with pytest.raises(ws.ConnectionClosed) as closed:
                await client.receive()
    assert closed.value.code == 1007


# -- legal input that used to be refused ------------------------------------------------


@pytest.mark.parametrize("code", [1012, 1013, 1014])
async def test_registered_close_codes_from_a_client_are_echoed(server: Any, code: int) -> None:
    """1012-1014 are in IANA's registry (ws accepts them): a normal close, not a 1002."""
    with trio.fail_after(5):
        raw = await RawClient.connect(server.port)
        await raw.send(close_frame(code, "bad gateway"))
        assert await raw.close_code() == code
        await raw.aclose()


async def test_a_1014_close_from_the_server_reaches_the_client(nursery: trio.Nursery) -> None:
    server, received = await fake_server(nursery, close_frame(1014, "upstream", mask=False))
    with trio.fail_after(5):
        async with ws.connect(f"ws://127.0.0.1:{server.port}/") as client:
            with pytest.raises(ws.ConnectionClosed) as closed:
                await client.receive()
        while not received:
            await trio.sleep(0.01)
    assert (closed.value.code, closed.value.reason) == (1014, "upstream")
    assert received[0][0] == 0x88  # the client echoed a Close
    assert client.close_code == 1014


async def send_split_at_the_mask_key(raw: RawClient, data: bytes) -> None:
    """Send a frame in two writes, the header cut between its length and its mask key."""
    cut = 2 + {126: 2, 127: 8}.get(data[1] & 0x7F, 0)
    await raw.send(data[:cut])
    await trio.sleep(0.05)  # so that the server reads the two parts apart
    await raw.send(data[cut:])


async def test_a_600_kib_message_in_two_split_fragments_passes_a_1_mib_limit(
    server: Any,
) -> None:
    """The continuation's header arrives in two reads and still counts once (not 1,100 KiB)."""
    first, second = b"1" * (100 << 10), b"2" * (500 << 10)
    with trio.fail_after(10):
        raw = await RawClient.connect(server.port)
        await send_split_at_the_mask_key(raw, frame(BINARY, first, fin=False))
        await send_split_at_the_mask_key(raw, frame(CONT, second))
        echoed = await raw.next_frame()
        assert echoed is not None
        assert (echoed.opcode, echoed.payload) == (BINARY, first + second)
        await raw.aclose()


# -- permessage-deflate ----------------------------------------------------------------


@pytest.fixture
async def deflating(nursery: trio.Nursery) -> Any:
    serve = functools.partial(ws.serve, echo, 0, host="127.0.0.1", compression=True)
    return await nursery.start(serve)


async def deflate_client(server: Any, offer: str = "permessage-deflate") -> RawClient:
    raw = await RawClient.connect(server.port, headers={"Sec-WebSocket-Extensions": offer})
    assert raw.response_headers["sec-websocket-extensions"].startswith("permessage-deflate")
    return raw


@pytest.mark.parametrize(
    ("data", "code", "reason"),
    [
        (frame(BINARY, b"\xff\xff\xff", rsv=4), 1007, "permessage-deflate: invalid compressed"),
        (frame(TEXT, "a", fin=False) + frame(CONT, "b", rsv=4), 1002, "RSV1 set on a continuation"),
        (frame(PING, "p", rsv=4), 1002, "RSV1 set on a control frame"),
    ],
    ids=["bad-data", "rsv1-continuation", "rsv1-ping"],
)
async def test_deflate_violations_close_with_a_reason_that_says_what_was_wrong(
    deflating: Any, data: bytes, code: int, reason: str
) -> None:
    with trio.fail_after(5):
        raw = await deflate_client(deflating)
        await raw.send(data)
        frames = await raw.frames_until_close()
        await raw.aclose()
    close = frames[-1]
    assert (close.opcode, close.close_code) == (CLOSE, code)
    assert reason in close.payload[2:].decode()


async def test_a_quoted_server_max_window_bits_is_accepted(deflating: Any) -> None:
    """RFC 7692 section 7.1.2.1 allows quoted values: ="10" is 10, not a 400."""
    with trio.fail_after(5):
        raw = await deflate_client(deflating, 'permessage-deflate; server_max_window_bits="10"')
        assert "server_max_window_bits=10" in raw.response_headers["sec-websocket-extensions"]
        message = b"window of 1 KiB " * 500
        await raw.send(frame(BINARY, message))
        echoed = await raw.next_frame()
        assert echoed is not None and echoed.rsv == 4
        inflater = zlib.decompressobj(-10)  # the server may use no more than 2^10 bytes
        assert inflater.decompress(echoed.payload + b"\x00\x00\xff\xff") == message
        await raw.aclose()


async def test_an_offer_with_an_invalid_value_is_declined_not_refused(deflating: Any) -> None:
    with trio.fail_after(5):
        raw = await RawClient.connect(
            deflating.port,
            headers={"Sec-WebSocket-Extensions": "permessage-deflate; server_max_window_bits=x"},
        )
        assert "sec-websocket-extensions" not in raw.response_headers
        await raw.send(frame(TEXT, "plain then"))
        echoed = await raw.next_frame()
        assert echoed is not None and echoed.payload == b"plain then"
        await raw.aclose()
