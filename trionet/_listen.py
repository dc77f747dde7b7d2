"""Listening sockets: the one place a trionet server binds and listens.

``net``, ``http``, ``tls`` (and everything built on them) get their
listeners here, so a listening socket's options (Node's dual-stack default,
``SO_REUSEADDR``, ``reuse_port``, the backlog, a stale Unix socket file)
are decided once. Rejected: ``trio.open_tcp_listeners`` (it opens one socket
per address family, so ``port=0`` would give two ports, unlike Node).

In a :mod:`trionet.cluster` worker the socket is not bound here but asked of
the primary, which binds it once and passes the descriptor to every worker
(Node's cluster does the same: ``cluster._getServer`` in lib/internal/cluster/
child.js). The worker installs a :data:`ListenerProvider` with
:func:`set_listener_provider`; this module imports nothing of the cluster's,
so it stays at the bottom layer. A Unix socket file bound by the primary is
the primary's to remove: :func:`is_inherited` tells a worker's ``Server``.
"""

from __future__ import annotations

import errno
import os
import socket as _stdlib_socket
import stat
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

__all__ = [
    "DEFAULT_BACKLOG",
    "ListenSpec",
    "ListenerProvider",
    "is_inherited",
    "open_listener",
    "open_tcp_listener",
    "open_unix_listener",
    "set_listener_provider",
]

#: Node's default listen() backlog.
DEFAULT_BACKLOG = 511


@dataclass(frozen=True)
class ListenSpec:
    """What a server asked to listen on: a TCP ``host:port`` or a Unix ``path``."""

    host: str | None = None
    port: int | None = None
    path: str | None = None
    backlog: int | None = None
    #: The Unix socket file's permission bits (e.g. ``0o660``); None: the umask's.
    mode: int | None = None
    reuse_port: bool = False


#: Gives the listening socket for a spec instead of binding one here (a cluster worker's).
ListenerProvider = Callable[[ListenSpec], Awaitable[trio.socket.SocketType]]

_provider: ListenerProvider | None = None
# Sockets that came from the provider: another process owns their address.
_inherited: weakref.WeakSet[trio.socket.SocketType] = weakref.WeakSet()


def set_listener_provider(provider: ListenerProvider | None) -> None:
    """Route every listener opened in this process through ``provider`` (None: bind here)."""
    global _provider
    _provider = provider


def is_inherited(sock: trio.socket.SocketType) -> bool:
    """True for a listening socket another process bound (its Unix file is not ours to remove)."""
    return sock in _inherited


async def _provided(spec: ListenSpec) -> trio.SocketListener | None:
    if _provider is None:
        return None
    sock = await _provider(spec)
    _inherited.add(sock)
    return trio.SocketListener(sock)


async def open_tcp_listener(
    port: int | None,
    host: str | None,
    *,
    backlog: int | None = None,
    reuse_port: bool = False,
    bind_here: bool = False,
) -> trio.SocketListener:
    """Listen on one TCP address, as Node's ``server.listen(port, host)`` does.

    ``host=None`` listens on all interfaces through one dual-stack IPv6 socket
    (falling back to IPv4 only), so ``port=0`` yields one port, as in Node.
    ``bind_here`` skips the listener provider (the cluster primary binds so).
    """
    port = 0 if port is None else port
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535, not {port}")
    if not bind_here:
        spec = ListenSpec(host=host, port=port, backlog=backlog, reuse_port=reuse_port)
        provided = await _provided(spec)
        if provided is not None:
            return provided
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


async def open_unix_listener(
    path: str,
    *,
    backlog: int | None = None,
    mode: int | None = None,
    bind_here: bool = False,
) -> trio.SocketListener:
    """Listen on a Unix socket at ``path``, replacing a stale file left by a dead process.

    A path where another server still answers raises ``EADDRINUSE``, as in Node.
    ``mode`` sets the file's permission bits (``0o660`` lets the group connect:
    nginx's worker user, Node's ``readableAll``/``writableAll``). It is a
    ``chmod`` of the path after ``bind``: connecting needs write permission on
    the file, and ``fchmod`` on the socket's descriptor does not change it.
    """
    if not bind_here:
        provided = await _provided(ListenSpec(path=path, backlog=backlog, mode=mode))
        if provided is not None:
            return provided
    if os.path.exists(path):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise OSError(errno.EEXIST, f"listen EEXIST: {path} exists and is not a socket")
        if await _unix_socket_answers(path):
            raise OSError(errno.EADDRINUSE, f"listen EADDRINUSE: address already in use {path}")
        os.unlink(path)
    sock = trio.socket.socket(_stdlib_socket.AF_UNIX, _stdlib_socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        if mode is not None:
            os.chmod(path, mode)
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
    mode: int | None = None,
) -> trio.SocketListener:
    """A TCP listener on ``host:port``, or a Unix one when ``path`` is given."""
    if path is not None:
        if port is not None:
            raise ValueError("give either port or path, not both")
        return await open_unix_listener(os.fspath(path), backlog=backlog, mode=mode)
    if mode is not None:
        raise ValueError("mode is for Unix sockets (path=...), not TCP ports")
    return await open_tcp_listener(port, host, backlog=backlog, reuse_port=reuse_port)
