"""Helpers for the HTTP server tests: start a server, speak raw bytes to it.

The raw client is deliberately simple and strict, so the tests see exactly
what went over the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import h11
import trio

import trionet
from trionet.http._server import App

HOST = "127.0.0.1"
#: Every network wait in these tests is bounded by this many seconds.
WAIT = 10.0


async def start(nursery: trio.Nursery, app: App, **options: Any) -> trionet.net.Server:
    """Start ``trionet.http.serve(app)`` on 127.0.0.1, a free port."""
    server: trionet.net.Server = await nursery.start(
        partial(trionet.http.serve, app, 0, host=HOST, **options)
    )
    return server


async def hello(req: trionet.http.Request, res: trionet.http.Response) -> None:
    """The hello-world app: echoes the method and path."""
    res.set_header("Content-Type", "text/plain")
    await res.end(f"hello {req.method} {req.url}".encode())


class Incomplete(Exception):
    """The bytes so far do not hold a whole response."""


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    head: bytes
    header_names: list[str] = field(default_factory=list)


def parse_response(
    data: bytes, pos: int = 0, *, head_only: bool = False
) -> tuple[RawResponse, int]:
    """Parse one response from ``data[pos:]``; returns it and where it ended."""
    end = data.find(b"\r\n\r\n", pos)
    if end < 0:
        raise Incomplete
    head = data[pos : end + 4]
    lines = data[pos:end].decode("latin-1").split("\r\n")
    _, status_text, *reason = lines[0].split(" ", 2)
    status = int(status_text)
    headers: dict[str, str] = {}
    names = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        names.append(name)
        headers[name.lower()] = value.strip()
    pos = end + 4
    if head_only or status < 200 or status in (204, 304):
        body = b""
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if len(data) < pos + length:
            raise Incomplete
        body, pos = data[pos : pos + length], pos + length
    elif headers.get("transfer-encoding") == "chunked":
        body, pos = _parse_chunked(data, pos)
    else:
        body, pos = data[pos:], len(data)
    reason_text = reason[0] if reason else ""
    return RawResponse(status, reason_text, headers, body, head, names), pos


def _parse_chunked(data: bytes, pos: int) -> tuple[bytes, int]:
    parts = []
    while True:
        nl = data.find(b"\r\n", pos)
        if nl < 0:
            raise Incomplete
        size = int(data[pos:nl].split(b";")[0], 16)
        pos = nl + 2
        if size == 0:
            end = data.find(b"\r\n", pos)
            if end < 0:
                raise Incomplete
            return b"".join(parts), end + 2
        if len(data) < pos + size + 2:
            raise Incomplete
        parts.append(data[pos : pos + size])
        pos += size + 2


def parse_all(data: bytes) -> list[RawResponse]:
    """Every response in ``data`` (as read until the server closed)."""
    out = []
    pos = 0
    while pos < len(data):
        response, pos = parse_response(data, pos)
        out.append(response)
    return out


class RawClient:
    """A TCP client that sends raw bytes and reads responses one by one."""

    def __init__(self, sock: trionet.net.Socket) -> None:
        self.sock = sock
        self.buffer = b""

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        with trio.fail_after(WAIT):
            return cls(await trionet.net.connect(port, HOST))

    async def send(self, data: bytes) -> None:
        with trio.fail_after(WAIT):
            await self.sock.send(data)

    async def response(self, *, head_only: bool = False) -> RawResponse:
        """Read the next response; raises EOFError if the server closed first."""
        with trio.fail_after(WAIT):
            while True:
                try:
                    response, end = parse_response(self.buffer, head_only=head_only)
                except Incomplete:
                    pass
                else:
                    self.buffer = self.buffer[end:]
                    return response
                data = await self.sock.receive()
                if not data:
                    if self.buffer:
                        response, end = parse_response(self.buffer + b"", head_only=head_only)
                        self.buffer = b""
                        return response
                    raise EOFError("server closed the connection")
                self.buffer += data

    async def read_until_close(self) -> bytes:
        """Everything until the server closes (bounded by WAIT)."""
        with trio.fail_after(WAIT):
            while data := await self.sock.receive():
                self.buffer += data
        data, self.buffer = self.buffer, b""
        return data

    async def aclose(self) -> None:
        await self.sock.aclose()


async def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection and return all bytes until the server closes."""
    client = await RawClient.connect(port)
    try:
        await client.send(data)
        return await client.read_until_close()
    finally:
        await client.aclose()


def get(path: str = "/", *headers: str, method: str = "GET", version: str = "1.1") -> bytes:
    """A raw request with Host and the given extra header lines."""
    lines = [f"{method} {path} HTTP/{version}", "Host: localhost", *headers, "", ""]
    return "\r\n".join(lines).encode()


async def fetch_with_trailers(port: int, request: bytes) -> tuple[h11.Response, bytes, list[Any]]:
    """One request over a raw socket, the response parsed by h11 as a client:
    its head, body and trailer fields (h11 decodes the chunked framing)."""
    client = h11.Connection(h11.CLIENT)
    sock = await RawClient.connect(port)
    await sock.send(request)
    head: h11.Response | None = None
    body = b""
    with trio.fail_after(WAIT):
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                client.receive_data(await sock.sock.receive())
            elif isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                await sock.aclose()
                assert head is not None
                return head, body, event.headers.raw_items()
