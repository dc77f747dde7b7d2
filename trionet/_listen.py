"""Listening sockets: the one place a trionet server binds and listens.

``net``, ``http``, ``tls`` (and everything built on them) get their
listeners here, so a listening socket's options (Node's dual-stack default,
``SO_REUSEADDR``, ``reuse_port``, the backlog, a stale Unix socket file)
are decided once. Rejected: ``trio.open_tcp_listeners`` (it opens one socket
per address family, so ``port=0`` would give two ports, unlike Node).
"""

from __future__ import annotations

import errno
import os
import socket as _stdlib_socket
import stat

import trio

__all__ = ["DEFAULT_BACKLOG", "open_listener", "open_tcp_listener", "open_unix_listener"]

#: Node's default listen() backlog.
DEFAULT_BACKLOG = 511


async def open_tcp_listener(
    port: int | None,
    host: str | None,
    *,
    backlog: int | None = None,
    reuse_port: bool = False,
) -> trio.SocketListener:
    """Listen on one TCP address, as Node's ``server.listen(port, host)`` does.

    ``host=None`` listens on all interfaces through one dual-stack IPv6 socket
    (falling back to IPv4 only), so ``port=0`` yields one port, as in Node.
    """
    port = 0 if port is None else port
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535, not {port}")
    family = 0
    if host is None:
        host, family = ("::", _stdlib_socket.AF_INET6) if _has_ipv6() else ("0.0.0.0", 0)
    infos = await trio.socket.getaddrinfo(
        host, port, family=family, type=_stdlib_socket.SOCK_STREAM,
        flags=_stdlib_socket.AI_PASSIVE,
    )
    af, socktype, proto, _, sockaddr = infos[0]
    sock = trio.socket.socket(af, socktype, proto)
    try:
        sock.setsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_REUSEPORT, 1)
        if af == _stdlib_socket.AF_INET6:
            # Node listens dual-stack on '::' unless told ipv6Only.
            sock.setsockopt(_stdlib_socket.IPPROTO_IPV6, _stdlib_socket.IPV6_V6ONLY, 0)
        try:
            await sock.bind(sockaddr)
        except OSError as exc:
            # Node's words: "listen EADDRINUSE: address already in use 127.0.0.1:8124".
            code = errno.errorcode.get(exc.errno or 0, "failed")
            reason = (exc.strerror or str(exc)).lower()
            raise OSError(exc.errno, f"listen {code}: {reason} {host}:{port}") from None
        sock.listen(DEFAULT_BACKLOG if backlog is None else backlog)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def open_unix_listener(path: str, *, backlog: int | None = None) -> trio.SocketListener:
    """Listen on a Unix socket at ``path``, replacing a stale file left by a dead process.

    A path where another server still answers raises ``EADDRINUSE``, as in Node.
    """
    if os.path.exists(path):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise OSError(errno.EEXIST, f"listen EEXIST: {path} exists and is not a socket")
        if await _unix_socket_answers(path):
            raise OSError(errno.EADDRINUSE, f"listen EADDRINUSE: address already in use {path}")
        os.unlink(path)
    sock = trio.socket.socket(_stdlib_socket.AF_UNIX, _stdlib_socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        sock.listen(DEFAULT_BACKLOG if backlog is None else backlog)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def _unix_socket_answers(path: str) -> bool:
    probe = trio.socket.socket(_stdlib_socket.AF_UNIX, _stdlib_socket.SOCK_STREAM)
    with probe:
        try:
            await probe.connect(path)
        except OSError:
            return False
    return True


def _has_ipv6() -> bool:
    if not _stdlib_socket.has_ipv6:
        return False
    try:
        with _stdlib_socket.socket(_stdlib_socket.AF_INET6, _stdlib_socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True




async def open_listener(
    port: int | None,
    host: str | None,
    path: str | None,
    backlog: int | None = None,
    reuse_port: bool = False,
) -> trio.SocketListener:
    """A TCP listener on ``host:port``, or a Unix one when ``path`` is given."""
    if path is not None:
        if port is not None:
            raise ValueError("give either port or path, not both")
        return await open_unix_listener(os.fspath(path), backlog=backlog)
    return await open_tcp_listener(port, host, backlog=backlog, reuse_port=reuse_port)
