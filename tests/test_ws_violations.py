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
        r.name == "trionet" and "protocol violation" in r.getMessage() for r in caplog.records
    )


# -- the client side -----------------------------------------------------------------


async def fake_server(
    nursery: trio.Nursery, send_after_handshake: bytes
) -> tuple[Any, list[bytes]]:
    """A TCP server that accepts the handshake, sends raw bytes, and records what it got."""
    received: list[bytes] = []

    async def handle(sock: trionet.net.Socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += await sock.receive()
        key = next(
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
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
