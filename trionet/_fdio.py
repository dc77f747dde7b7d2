"""Direct reads and writes on a plain socket's descriptor: the hot paths' I/O.

Why this exists: Trio's ``SocketStream.send_all`` and ``receive_some`` pass
through the scheduler on every call, even when the kernel completed the
operation at once (a conflict detector, a cancel point and a trip through the
run queue per call). On the request/response and echo paths that cost is a
large share of trionet's CPU time, as profiling showed in each protocol:

- HTTP server: ``send_all`` cost a scheduler pass per response.
- WebSocket: ``send_all`` was about a fifth of a small message's CPU in the
  echo benchmark.
- HTTP client: with the direct path, one exchange is 1.0 ``write`` + 1.1
  ``read`` + 0.4 ``epoll_wait`` system calls a request (strace over 5,000
  requests, 100 tasks on 5 connections), and user CPU per request fell from
  ~105 to ~90 us.

So :class:`DirectIO`, on a plain TCP or Unix ``trio.SocketStream``, calls
``os.read`` / ``os.write`` / ``os.writev`` on the descriptor and waits
(``trio.lowlevel.wait_readable`` / ``wait_writable``) only when the kernel says
it would block, as Node's libuv does. Any other stream (TLS, in-memory, a
wrapper) goes through its own ``send_all`` / ``receive_some``.

It is the engine under :class:`trionet.net.Socket`, and only there: every
protocol driver (HTTP server and client, WebSocket) holds one Socket and
calls its methods, so byte counts, ``allow_half_open`` and the error types are
the same whichever driver runs. (Before, each driver wrapped the stream in a
DirectIO of its own and the WebSocket reader, going around the Socket,
ignored ``allow_half_open`` on ws:// while wss:// honoured it.)

Platforms. ``os.read`` and ``os.write`` take a socket's descriptor on Linux
and macOS (a socket is a file there), but not on Windows, where a socket is
a ``SOCKET`` handle that the C runtime's ``read``/``write`` do not accept, and
``os.writev`` does not exist. Trio runs on Windows, so there
(:data:`DIRECT_IO` False) every stream takes Trio's own path. Rejected:
``socket.send``/``recv`` on the Python socket object on every platform: a
method lookup and an argument parse more per call, and on Windows Trio's
IOCP-based waiting is the only supported one anyway.

Safety rules, kept here so no caller has to remember them:

1. The descriptor is checked just before each system call, with no ``await``
   in between: the socket's ``fileno()`` must still be the number captured at
   construction. A socket closed by another task (``req.socket.close()``, the
   agent dropping a connection) reports -1, and its old number may already
   name a newer connection; writing there would answer the wrong peer. Such a
   call raises ``trio.ClosedResourceError`` instead, and a task waiting on the
   descriptor when the socket is closed gets the same from Trio.
2. ``OSError`` from the kernel (reset, broken pipe) becomes
   ``trio.BrokenResourceError``, as from Trio's own streams.
3. Fairness: Trio yields on every I/O call so that no busy task starves the
   others; we yield once every :data:`MAX_UNYIELDED_IO` operations that
   completed without waiting. The yield is a full checkpoint taken *before*
   the operation, so a cancellation there loses no bytes already read and
   never cuts a write in half.
4. One task sends and one receives at a time, as on any Trio stream (the
   Socket's send turn sees to the sending side; a second task *waiting* to
   receive gets ``trio.BusyResourceError`` from ``wait_readable``).
"""

from __future__ import annotations

import os
import sys
from typing import Protocol

import trio

#: How much one read asks the kernel for by default, as Node's socket highWaterMark
#: (https://nodejs.org/docs/latest-v20.x/api/stream.html#buffering): 64 KiB.
DEFAULT_RECEIVE_SIZE = 65536

__all__ = ["DIRECT_IO", "JOIN_LIMIT", "MAX_UNYIELDED_IO", "DirectIO"]

#: Whether this platform lets ``os.read``/``os.write`` work on a socket's
#: descriptor (POSIX: Linux, macOS, the BSDs); not on Windows (see above).
DIRECT_IO = sys.platform != "win32"

#: Operations that completed without waiting before the next one yields to the
#: scheduler first. Trio yields on every call; 16 keeps a pipelining client, a
#: streaming app or a WebSocket flood from starving other connections for more
#: than a few dozen microseconds, while the yield's cost, spread over 16
#: operations, is lost in the noise of the benchmarks.
MAX_UNYIELDED_IO = 16

#: ``send(data, more)``: below this size ``more`` is joined to ``data`` (one
#: small copy, one write); above it the two go out with ``writev``, uncopied.
JOIN_LIMIT = 16384

_Buffer = bytes | bytearray | memoryview


class _Fileno(Protocol):
    def fileno(self) -> int: ...


class _NoSocket:
    """The socket of a stream that has none: no descriptor (-1)."""

    def fileno(self) -> int:
        return -1


_NO_SOCKET = _NoSocket()


class DirectIO:
    """Send and receive on ``stream``, straight on its descriptor when it is a socket.

    ``direct`` tells whether the descriptor path is in use; callers that count
    bytes need it when the fallback stream counts them too.
    """

    __slots__ = ("_drained", "_fd", "_sock", "_stream", "_unyielded", "direct")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        # What rule 1 asks for its fileno(): the standard library's socket
        # under Trio's (closed with it), so that the check is one C call, not
        # Trio's Python wrapper as well: three checks per WebSocket message
        # cost ~1 us of its ~28 (tests/test_fdio.py checks the rule).
        sock: _Fileno = _NO_SOCKET
        if isinstance(stream, trio.SocketStream):
            sock = getattr(stream.socket, "_sock", stream.socket)
        self._sock = sock
        #: The descriptor captured now; -1: go through the stream.
        self._fd = sock.fileno() if DIRECT_IO else -1
        self.direct = self._fd >= 0
        #: Operations completed without waiting since the last yield.
        self._unyielded = 0
        #: The last read returned less than asked (the socket was empty) and
        #: nothing here has yielded since, so the peer most likely has not
        #: written again: the next read waits first instead of failing with
        #: EAGAIN (a system call and an exception saved per request).
        self._drained = False

    def _live_fd(self) -> int:
        """The descriptor, checked to still be this socket's (rule 1)."""
        if self._sock.fileno() != self._fd:
            raise trio.ClosedResourceError("the socket was closed")
        return self._fd

    async def checkpoint(self) -> None:
        """Yield to the scheduler unless no operation completed since the last yield.

        For callers that want Trio's rule (every call yields) at a coarser
        grain, e.g. once per request rather than once per system call. A no-op
        on the fallback path, whose every call already yielded.
        """
        if self._unyielded:
            await trio.lowlevel.checkpoint()
            self._unyielded = 0
            self._drained = False

    async def receive(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` bytes; ``b""`` once the peer closed its side."""
        if self._fd < 0:
            got = await self._stream.receive_some(max_bytes)
            # SocketStream and SSLStream return bytes; another stream may not.
            return got if type(got) is bytes else bytes(got)
        if self._unyielded >= MAX_UNYIELDED_IO:
            await self.checkpoint()
        if not self._drained:
            fd = self._live_fd()
            try:
                data = os.read(fd, max_bytes)
            except BlockingIOError:
                pass
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
            else:
                self._unyielded += 1
                self._drained = len(data) < max_bytes
                return data
        # Wait, then read. Inline rather than a helper coroutine: an idle
        # connection waits here for hours, and a frame fewer between its task
        # and the wait is about 250 bytes fewer per connection
        # (benchmarks/ws_idle_memory.py).
        self._unyielded = 0
        while True:
            # Checked before the wait too: never wait on a number that may now
            # be another connection's.
            await trio.lowlevel.wait_readable(self._live_fd())
            fd = self._live_fd()
            try:
                data = os.read(fd, max_bytes)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
            self._drained = len(data) < max_bytes
            return data

    def idle_fd(self) -> int:
        """The descriptor the next :meth:`receive` would wait on first; -1 if it
        would read at once, or on the fallback path.

        For a caller that waits in its own frame (``trio.lowlevel.wait_readable``),
        then calls :meth:`read_now` with ``waited=True``: a WebSocket idle for
        hours then holds two coroutine frames fewer (about 500 bytes) than
        when it waits down here. Checked to be this socket's (rule 1).
        """
        fd = self._fd
        if not self._drained or fd < 0:
            return -1
        if self._sock.fileno() != fd:  # rule 1 (_live_fd, inline: the hot path)
            raise trio.ClosedResourceError("the socket was closed")
        return fd

    def read_now(self, max_bytes: int, *, waited: bool = False) -> bytes | None:
        """What the kernel holds now, up to ``max_bytes``, without waiting or
        yielding; None when :meth:`receive` must be called instead: nothing to
        read (the wait is next), the end of the stream (its handling may
        have to wait), the fallback path, or a yield is due (rule 3).

        For a caller that reads in its own frame, after waiting on
        :meth:`idle_fd` (``waited``: the next read is not skipped, and the
        wait was the yield), or when it returned -1: the WebSocket's per-message path.
        """
        if waited:
            self._drained = False
            self._unyielded = 0
        fd = self._fd
        if fd < 0 or self._drained or self._unyielded >= MAX_UNYIELDED_IO:
            return None
        if self._sock.fileno() != fd:  # rule 1 (_live_fd, inline: the hot path)
            raise trio.ClosedResourceError("the socket was closed")
        try:
            data = os.read(fd, max_bytes)
        except BlockingIOError:
            self._drained = True  # woken for nothing: receive() waits at once
            return None
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        if not data:
            return None  # the end stays readable: receive() reads it again
        self._unyielded += 1
        self._drained = len(data) < max_bytes
        return data

    def write_now(self, data: _Buffer) -> int:
        """Write what the kernel takes of ``data`` now, without waiting or
        yielding: the number of bytes written, 0 when :meth:`send` must be
        called instead (the kernel took nothing, the fallback path, or a
        yield is due, rule 3). After a partial write the caller sends the
        rest with :meth:`send`, which waits.
        """
        fd = self._fd
        if fd < 0 or self._unyielded >= MAX_UNYIELDED_IO:
            return 0
        if self._sock.fileno() != fd:  # rule 1 (_live_fd, inline: the hot path)
            raise trio.ClosedResourceError("the socket was closed")
        try:
            sent = os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        self._unyielded += 1
        return sent

    async def send(self, data: _Buffer, more: _Buffer = b"") -> None:
        """Write ``data`` then ``more``; returns once the kernel took both.

        Two buffers go out in one ``writev`` without being joined, so a large
        body is never copied next to its head; a small ``more`` is joined.
        """
        if more and len(more) < JOIN_LIMIT:
            data, more = bytes(data) + more, b""
        if self._fd < 0:
            await self._stream.send_all(data)
            if more:
                await self._stream.send_all(more)
            return
        if self._unyielded >= MAX_UNYIELDED_IO:
            await self.checkpoint()
        fd = self._live_fd()
        try:
            sent = os.writev(fd, (data, more)) if more else os.write(fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        if sent == len(data) + len(more):
            self._unyielded += 1
            return
        if sent < len(data):
            await self._write_rest(memoryview(data)[sent:])
            sent = len(data)
        if more:
            await self._write_rest(memoryview(more)[sent - len(data) :])

    async def _write_rest(self, rest: memoryview) -> None:
        """Write ``rest`` after the kernel refused part of a write: wait, then write."""
        self._unyielded = 0
        self._drained = False
        while rest:
            await trio.lowlevel.wait_writable(self._live_fd())
            fd = self._live_fd()
            try:
                rest = rest[os.write(fd, rest) :]
            except BlockingIOError:
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
