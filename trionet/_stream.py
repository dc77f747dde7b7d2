"""Socket: Node's ``net.Socket`` as a Trio stream.

A :class:`Socket` wraps any Trio stream (a TCP or Unix :class:`trio.SocketStream`,
or a :class:`trio.SSLStream` over one) and adds what a Node user expects from a
socket: byte counters, addresses, ``set_nodelay``/``set_keepalive``, iteration over
incoming chunks and Node's ``allowHalfOpen`` rule. It is itself a
:class:`trio.abc.HalfCloseableStream`, so anything written for Trio streams accepts it.
"""

from __future__ import annotations

import contextlib
import socket as _stdlib_socket
from collections.abc import AsyncIterator
from typing import Any

import trio

from ._errors import TimeoutError

__all__ = ["Address", "Socket", "format_address", "handshake", "raw_socket"]

#: A TCP address ``(host, port)`` or the path of a Unix socket.
Address = tuple[str, int] | str

#: How much one ``receive()`` asks the kernel for by default, as Node's highWaterMark.
DEFAULT_RECEIVE_SIZE = 65536

# Node's socket.setKeepAlive() sets these besides the idle delay (net.md).
KEEPALIVE_COUNT = 10
KEEPALIVE_INTERVAL = 1


def raw_socket(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    """The OS socket under ``stream`` (looking through TLS), or None for other streams."""
    while True:
        if isinstance(stream, trio.SocketStream):
            return stream.socket
        inner = getattr(stream, "transport_stream", None)
        if inner is None:
            return None
        stream = inner


def format_address(address: Any) -> Address:
    """A socket address in trionet's form: ``(host, port)`` for IP, the path for Unix."""
    if isinstance(address, tuple):
        return (str(address[0]), int(address[1]))
    if isinstance(address, bytes):
        return address.decode(errors="replace")
    return str(address)


class Socket(trio.abc.HalfCloseableStream):
    """A connected byte stream with Node's ``net.Socket`` conveniences.

    Args:
      stream: the Trio stream to wrap.
      allow_half_open: when False (Node's default), the end of the peer's data
        ends our side too, so a handler that only reads still closes cleanly.
        If another task is sending at that moment, our side ends when that
        send is done; any later send raises :class:`trio.ClosedResourceError`,
        as Node's writes fail once the peer has ended the connection.
    """

    def __init__(self, stream: trio.abc.Stream, *, allow_half_open: bool = True) -> None:
        self.stream = stream
        self.allow_half_open = allow_half_open
        self.bytes_read = 0
        self.bytes_written = 0
        self._eof_sent = False
        # A task is inside send(): an automatic end (allow_half_open=False) must
        # wait for it, since a Trio stream takes one sender at a time.
        self._sending = False
        self._end_after_send = False
        self._ended_by_peer = False
        sock = raw_socket(stream)
        self._sock = sock
        self.remote_address: Address | None = None
        self.local_address: Address | None = None
        if sock is not None:
            with contextlib.suppress(OSError):
                self.remote_address = format_address(sock.getpeername())
            self.local_address = format_address(sock.getsockname())

    def __repr__(self) -> str:
        return f"<trionet.net.Socket {self.local_address!r} -> {self.remote_address!r}>"

    @property
    def remote_port(self) -> int | None:
        """The peer's port, or None for a Unix socket."""
        return self.remote_address[1] if isinstance(self.remote_address, tuple) else None

    # -- sending ---------------------------------------------------------------
    async def send(self, data: bytes | bytearray | memoryview | str) -> None:
        """Send all of ``data``; returns once the kernel took it (Node's ``drain``)."""
        if self._eof_sent or self._end_after_send:
            await trio.lowlevel.checkpoint()
            raise trio.ClosedResourceError(self._why_ended())
        if isinstance(data, str):
            data = data.encode()
        self._sending = True
        try:
            await self.stream.send_all(data)
        finally:
            self._sending = False
        self.bytes_written += len(data)
        if self._end_after_send:
            await self._end_quietly()

    def _why_ended(self) -> str:
        if self._ended_by_peer:
            return "cannot send: the peer ended the connection (allow_half_open=False)"
        return "cannot send after send_eof() (Node: write after end)"

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Trio's name for :meth:`send`."""
        await self.send(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        """Half-close: tell the peer we are done sending (Node's ``end()``).

        Sending EOF twice is a no-op, as ``end()`` is in Node; sending data
        after it raises :class:`trio.ClosedResourceError` (Node's "write after end").
        """
        if self._eof_sent:
            await trio.lowlevel.checkpoint()
            return
        self._eof_sent = True
        if isinstance(self.stream, trio.abc.HalfCloseableStream):
            await self.stream.send_eof()
        elif self._sock is not None:
            # TLS has no half-close in Trio (trio#823): shut the TCP write side.
            await trio.lowlevel.checkpoint()
            self._sock.shutdown(_stdlib_socket.SHUT_WR)
        else:
            await trio.lowlevel.checkpoint()

    # -- receiving -------------------------------------------------------------
    async def receive(self, max_bytes: int = DEFAULT_RECEIVE_SIZE) -> bytes:
        """Receive up to ``max_bytes``; ``b""`` means the peer ended its side."""
        data = await self.stream.receive_some(max_bytes)
        if data:
            self.bytes_read += len(data)
        elif not self.allow_half_open and not self._eof_sent:
            self._ended_by_peer = True
            if self._sending:
                self._end_after_send = True  # that send ends our side when it is done
            else:
                await self._end_quietly()
        return bytes(data)

    async def _end_quietly(self) -> None:
        """End our side for the peer that ended its own (Node's allowHalfOpen=false)."""
        self._end_after_send = False
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Trio's name for :meth:`receive`."""
        return await self.receive(DEFAULT_RECEIVE_SIZE if max_bytes is None else max_bytes)

    async def __aiter__(self) -> AsyncIterator[bytes]:  # type: ignore[override]
        """Yield chunks as they arrive, until the peer ends its side."""
        while data := await self.receive():
            yield data

    # -- closing ---------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the socket (Node's ``destroy()``)."""
        await self.stream.aclose()

    # -- options ---------------------------------------------------------------
    def set_nodelay(self, enable: bool = True) -> None:
        """Turn Nagle's algorithm off (True) or on (False) for a TCP socket."""
        if self._is_tcp():
            assert self._sock is not None
            self._sock.setsockopt(
                _stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_NODELAY, int(enable)
            )

    def set_keepalive(self, enable: bool = False, idle: float | None = None) -> None:
        """Enable TCP keep-alive probes after ``idle`` seconds without traffic.

        Like Node, enabling it also sets 10 probes one second apart.
        """
        if not self._is_tcp():
            return
        sock = self._sock
        assert sock is not None
        sock.setsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_KEEPALIVE, int(enable))
        if not enable:
            return
        tcp = _stdlib_socket.IPPROTO_TCP
        if idle is not None and hasattr(_stdlib_socket, "TCP_KEEPIDLE"):
            sock.setsockopt(tcp, _stdlib_socket.TCP_KEEPIDLE, max(1, int(idle)))
        if hasattr(_stdlib_socket, "TCP_KEEPCNT"):
            sock.setsockopt(tcp, _stdlib_socket.TCP_KEEPCNT, KEEPALIVE_COUNT)
            sock.setsockopt(tcp, _stdlib_socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)

    def _is_tcp(self) -> bool:
        return self._sock is not None and self._sock.family in (
            _stdlib_socket.AF_INET,
            _stdlib_socket.AF_INET6,
        )


@contextlib.asynccontextmanager
async def handshake(
    resource: trio.abc.AsyncResource, timeout: float | None, what: str
) -> AsyncIterator[None]:
    """Run the block (a protocol handshake over ``resource``) within ``timeout`` seconds.

    On any failure the resource is closed before the error goes on, so a
    failed or abandoned handshake never leaks a socket; running out of time
    raises :class:`trionet.TimeoutError` ("``what`` timed out after N s").
    """
    try:
        with trio.fail_after(timeout if timeout is not None else float("inf")):
            yield
    except BaseException as exc:
        await trio.aclose_forcefully(resource)
        if isinstance(exc, trio.TooSlowError):
            raise TimeoutError(f"{what} timed out after {timeout}s") from None
        raise
