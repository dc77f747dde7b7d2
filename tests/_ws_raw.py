"""A raw WebSocket client for tests: hand-built frames over a plain TCP socket.

It does the opening handshake by hand and then sends whatever bytes a test
builds with :func:`frame`, so tests can break the protocol on purpose and read
exactly what the server answers.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from dataclasses import dataclass

import trionet

#: Opcodes (RFC 6455 section 5.2).
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

#: A valid Sec-WebSocket-Key and its Sec-WebSocket-Accept (RFC 6455 section 1.3).
SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def accept_token(key: str) -> str:
    """The Sec-WebSocket-Accept for ``key`` (RFC 6455 section 4.2.2)."""
    digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    return base64.b64encode(digest).decode()


async def read_handshake_key(sock: trionet.net.Socket) -> str:
    """Read a client's opening handshake off ``sock``; its Sec-WebSocket-Key."""
    head = b""
    while b"\r\n\r\n" not in head:
        head += await sock.receive()
    return next(
        line.split(b":", 1)[1].strip().decode()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )


def frame(
    opcode: int,
    payload: bytes | str = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    length: int | None = None,
) -> bytes:
    """One frame's bytes; ``length`` overrides the length field (to lie about it)."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_frame(code: int | None = 1000, reason: bytes | str = b"", *, mask: bool = True) -> bytes:
    """A Close frame with ``code`` and ``reason`` (no payload when code is None)."""
    if isinstance(reason, str):
        reason = reason.encode()
    payload = b"" if code is None else struct.pack("!H", code) + reason
    return frame(CLOSE, payload, mask=mask)


@dataclass
class Frame:
    """A frame the server sent."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv: int = 0

    @property
    def close_code(self) -> int | None:
        """The code of a Close frame (None for an empty one)."""
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None


class RawClient:
    """A WebSocket client that sends raw bytes and parses the server's frames."""

    def __init__(self, sock: trionet.net.Socket, buffer: bytes = b"") -> None:
        self.sock = sock
        self.buffer = buffer
        self.eof = False
        #: The headers of the server's handshake response (lower-case names).
        self.response_headers: dict[str, str] = {}

    @classmethod
    async def connect(
        cls, port: int, path: str = "/", *, headers: dict[str, str] | None = None
    ) -> RawClient:
        """Connect and finish a valid handshake (asserting the 101)."""
        sock = await trionet.net.connect(port, "127.0.0.1")
        all_headers = {
            "Host": f"127.0.0.1:{port}",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            "Sec-WebSocket-Version": "13",
            **(headers or {}),
        }
        client = cls(sock)
        status, client.response_headers = await client.request(path, all_headers)
        assert status == 101
        return client

    async def request(
        self, path: str, headers: dict[str, str], method: str = "GET"
    ) -> tuple[int, dict[str, str]]:
        """Send a request head; return the response status and headers."""
        lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
        await self.sock.send(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buffer:
            chunk = await self.sock.receive()
            assert chunk, "connection closed before the response head"
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        fields = dict(line.split(": ", 1) for line in header_lines)
        return int(status_line.split()[1]), {k.lower(): v for k, v in fields.items()}

    async def send(self, *data: bytes, chop: int | None = None) -> None:
        """Send bytes; ``chop`` sends them in pieces of that many bytes."""
        blob = b"".join(data)
        if chop is None:
            await self.sock.send(blob)
            return
        for i in range(0, len(blob), chop):
            await self.sock.send(blob[i : i + chop])

    async def _fill(self, n: int) -> bool:
        while len(self.buffer) < n:
            chunk = await self.sock.receive()
            if not chunk:
                self.eof = True
                return False
            self.buffer += chunk
        return True

    async def next_frame(self) -> Frame | None:
        """The next frame from the server, or None when it closed TCP."""
        if not await self._fill(2):
            return None
        b0, b1 = self.buffer[0], self.buffer[1]
        assert not b1 & 0x80, "the server masked a frame"
        n, offset = b1 & 0x7F, 2
        if n == 126:
            await self._fill(4)
            n, offset = struct.unpack("!H", self.buffer[2:4])[0], 4
        elif n == 127:
            await self._fill(10)
            n, offset = struct.unpack("!Q", self.buffer[2:10])[0], 10
        if not await self._fill(offset + n):
            return None
        payload = self.buffer[offset : offset + n]
        self.buffer = self.buffer[offset + n :]
        return Frame(b0 & 0x0F, payload, bool(b0 & 0x80), (b0 >> 4) & 7)

    async def frames_until_close(self) -> list[Frame]:
        """Every frame up to and including the server's Close, or up to TCP's end."""
        frames = []
        while (f := await self.next_frame()) is not None:
            frames.append(f)
            if f.opcode == CLOSE:
                break
        return frames

    async def close_code(self) -> int | None:
        """Read until the server's Close; its code (None: no Close frame came)."""
        frames = await self.frames_until_close()
        if frames and frames[-1].opcode == CLOSE:
            return frames[-1].close_code
        return None

    async def aclose(self) -> None:
        await self.sock.aclose()
