"""trionet.net: TCP and Unix domain sockets, as Node's ``net`` module.

    async def handler(sock: trionet.net.Socket) -> None:
        await sock.send(b"hello\\n")
        await trionet.net.pipe(sock, sock)          # echo until the peer ends

    server = await nursery.start(trionet.net.serve, handler, 8124)
    sock = await trionet.net.connect(8124, "127.0.0.1")
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket as _stdlib_socket
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import trio

from ._errors import ConnectError, TimeoutError
from ._fdio import DEFAULT_RECEIVE_SIZE
from ._forwarded import TrustedProxies
from ._listen import open_listener
from ._server import Server, serve_listeners
from ._stream import Socket, SocketBrokenError, SocketClosedError

__all__ = [
    "Handler",
    "Server",
    "Socket",
    "SocketBrokenError",
    "SocketClosedError",
    "connect",
    "pipe",
    "serve",
]

logger = logging.getLogger("trionet.net")

#: How much ``pipe`` reads at a time (Node's default highWaterMark for sockets).
PIPE_CHUNK = DEFAULT_RECEIVE_SIZE

#: The handler ``serve`` runs, in its own task, for each connection.
Handler = Callable[[Socket], Awaitable[None]]


async def serve(
    handler: Handler,
    port: int | None = None,
    *,
    host: str | None = None,
    path: str | os.PathLike[str] | None = None,
    backlog: int | None = None,
    reuse_port: bool = False,
    mode: int | None = None,
    max_connections: int | None = None,
    idle_timeout: float | None = None,
    allow_half_open: bool = False,
    proxy_protocol: bool = False,
    forwarded_allow_ips: str | Sequence[str] | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` on a TCP port or a Unix socket ``path`` (Node's ``net.createServer``).

    Start it with ``server = await nursery.start(trionet.net.serve, handler, port)``.
    Each connection runs ``handler(sock)`` in its own task and is closed when
    the handler returns; a handler's exception is logged and ends that
    connection only.

    Args:
      port: TCP port; 0 picks a free one (read it from ``server.port``).
      host: address to listen on; None listens on all interfaces, as in Node.
      path: listen on this Unix socket instead (a stale file is replaced, and
        the file is removed on close).
      mode: the Unix socket file's permission bits, e.g. ``0o660``.
      max_connections: connections over this many are closed at once (Node's 'drop').
      idle_timeout: close a connection after this many seconds with no traffic.
      allow_half_open: when False (Node's default), the peer's EOF ends our
        side too; when True the handler may keep sending after it.
      proxy_protocol: every connection starts with a PROXY protocol header
        (HAProxy's ``send-proxy`` or ``send-proxy-v2``); ``sock.remote_address``
        is the client it names. A connection without a valid header within
        30 s, or from a peer not in ``forwarded_allow_ips``, is closed (one
        INFO line); the handler never sees it.
      forwarded_allow_ips: the proxies trusted to send that header: IP
        addresses and networks (``"10.0.0.0/8"``), ``"unix"`` for Unix-socket
        peers, ``"*"`` for all; a list or a comma-separated string. None: the
        ``FORWARDED_ALLOW_IPS`` environment variable, else ``"127.0.0.1,::1,unix"``.
    """
    if idle_timeout is not None and idle_timeout <= 0:
        raise ValueError(f"idle_timeout must be positive, not {idle_timeout}")
    trusted = TrustedProxies(forwarded_allow_ips) if proxy_protocol else None
    unix_path = os.fspath(path) if path is not None else None
    listener = await open_listener(port, host, unix_path, backlog, reuse_port, mode)

    async def watched(sock: Socket) -> None:
        assert idle_timeout is not None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_close_when_idle, sock, idle_timeout, nursery.cancel_scope)
            await handler(sock)
            nursery.cancel_scope.cancel()

    await serve_listeners(
        handler if idle_timeout is None else watched,
        [listener],
        make_socket=partial(Socket, allow_half_open=allow_half_open),
        max_connections=max_connections,
        unix_path=unix_path,
        proxy_protocol=trusted,
        task_status=task_status,
    )


# How many times per idle_timeout the watcher looks at a connection: it closes
# one idle for between idle_timeout and (1 + 1/IDLE_CHECKS) * idle_timeout.
IDLE_CHECKS = 4


async def _close_when_idle(sock: Socket, idle_timeout: float, scope: trio.CancelScope) -> None:
    """Cancel the connection's handler once ``sock`` has moved no bytes for ``idle_timeout``.

    The watcher compares byte counters a few times per timeout instead of the
    socket stamping the time on every send and receive, which would tax every
    connection's hot path for the sake of the few that set a timeout.
    """
    interval = idle_timeout / IDLE_CHECKS
    moved = -1
    last_move = trio.current_time()
    while True:
        now = trio.current_time()
        if sock.bytes_read + sock.bytes_written != moved:
            moved = sock.bytes_read + sock.bytes_written
            last_move = now
        elif now - last_move >= idle_timeout:
            logger.debug("closing %r: idle for %ss", sock, idle_timeout)
            scope.cancel()
            return
        await trio.sleep(interval)


async def connect(
    port: int | None = None,
    host: str = "localhost",
    *,
    path: str | os.PathLike[str] | None = None,
    local_address: str | None = None,
    timeout: float | None = None,
    allow_half_open: bool = False,
) -> Socket:
    """Open a TCP connection to ``host:port``, or to the Unix socket ``path``.

    Both address families of ``host`` are tried (happy eyeballs, as Node's
    ``autoSelectFamily``).

    Raises:
      ConnectError: the peer refused or could not be reached; names the address.
      TimeoutError: ``timeout`` seconds passed first.
    """
    if path is not None:
        target = os.fspath(path)
    elif port is None:
        raise ValueError("connect() needs a port or a path")
    else:
        target = f"{host}:{port}"
    opening = _open_stream(target, host, port, local_address, unix=path is not None)
    try:
        if timeout is None:  # no cancel scope at all: connecting is a hot path
            stream = await opening
        else:
            with trio.fail_after(timeout):
                stream = await opening
    except trio.TooSlowError:
        raise TimeoutError(f"connect timed out after {timeout}s: {target}") from None
    except OSError as exc:
        raise _connect_error(exc, target) from exc
    sock = Socket(stream, allow_half_open=allow_half_open)
    # Both named now, as Node's client socket has them from 'connect' on: a
    # reset makes the kernel forget the peer, and errors say whom they lost
    # ("read ECONNRESET 127.0.0.1:8124"); a closed socket has no name left.
    _ = sock.remote_address, sock.local_address
    return sock


async def _open_stream(
    target: str, host: str, port: int | None, local_address: str | None, *, unix: bool
) -> trio.abc.Stream:
    if unix:
        return await trio.open_unix_socket(target)
    assert port is not None
    return await trio.open_tcp_stream(host, port, local_address=local_address)


def _connect_error(exc: OSError, target: str) -> ConnectError:
    """Node's message for a failed connect: ``connect ECONNREFUSED 127.0.0.1:8124``.

    ``trio.open_tcp_stream`` reports a failure of every address it tried as one
    OSError without an errno, the real errors being in its ``__cause__``; the
    first of those is what the user needs (refused, unreachable, ...).
    """
    cause = _first_errno(exc) or exc
    if isinstance(cause, _stdlib_socket.gaierror):
        code_name = "ENOTFOUND"
    else:
        code_name = errno.errorcode.get(cause.errno or 0, "failed")
    if cause.errno is not None and cause.errno > 0:
        reason = os.strerror(cause.errno)
    else:
        reason = cause.strerror or str(cause)
    return ConnectError(cause.errno, f"connect {code_name} {target} ({reason})")


def _first_errno(exc: BaseException) -> OSError | None:
    """The first OSError with an errno in ``exc``, its cause, or the groups within."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc
    for inner in [*getattr(exc, "exceptions", ()), exc.__cause__]:
        if inner is not None and (found := _first_errno(inner)) is not None:
            return found
    return None


async def pipe(
    src: trio.abc.ReceiveStream, dst: trio.abc.SendStream, *, end: bool = True
) -> int:
    """Copy ``src`` into ``dst`` until ``src`` ends; returns the bytes copied.

    Each chunk is sent before the next is read, so a slow ``dst`` slows the
    reading (backpressure). With ``end=True`` (Node's default) ``dst`` is
    half-closed afterwards. ``pipe(sock, sock)`` is an echo server.
    """
    # Socket's own methods skip a layer of Trio-name aliases per chunk.
    receive = src.receive if isinstance(src, Socket) else src.receive_some
    send = dst.send if isinstance(dst, Socket) else dst.send_all
    total = 0
    while chunk := await receive(PIPE_CHUNK):
        await send(chunk)
        total += len(chunk)
    if end and isinstance(dst, trio.abc.HalfCloseableStream):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await dst.send_eof()
    return total
