"""``trionet.http.serve``: an HTTP/1.1 server on trionet's listeners.

:func:`serve` checks the options into a :class:`._config.ServerConfig`,
opens the listener and hands each accepted connection to a
:class:`._connection.Connection` (the request loop); :func:`serve_http` is
that over listeners that are already open (``https.serve`` builds on it).
The stop's order (listen queue served, idle connections closed unless a
request waits on one) is :mod:`trionet._server`'s and :mod:`._config`'s.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Sequence
from functools import partial

import trio

from .._accepted import TLSContext
from .._forwarded import TrustedProxies
from .._listen import open_listener
from .._server import ConnectionHandler, Server, serve_listeners
from .._stream import Socket
from ..tls import socket_for
from ._config import App, ClientErrorHook, ServerConfig, SocketHook
from ._connection import Connection
from ._limits import (
    DEFAULT_HEADERS_TIMEOUT,
    DEFAULT_KEEP_ALIVE_TIMEOUT,
    DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_REQUEST_TIMEOUT,
    ClientError,
)
from ._messages import Request, Response

__all__ = ["ClientError", "Request", "Response", "ServerConfig", "serve", "serve_http"]


def connection_handler(config: ServerConfig) -> ConnectionHandler:
    """Drive each accepted connection with ``config`` (for ``serve_listeners``).

    The handler is a plain function returning the driver's coroutine: one
    frame less for every live connection to hold.
    """

    def handle(sock: Socket) -> Awaitable[None]:
        return Connection(sock, config).run()

    return handle


async def serve_http(
    config: ServerConfig,
    listeners: Sequence[trio.SocketListener],
    *,
    max_connections: int | None = None,
    unix_path: str | None = None,
    ssl_context: TLSContext | None = None,
    proxy_protocol: TrustedProxies | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve HTTP with ``config`` on ready listeners (``https.serve`` builds on this)."""
    async with trio.open_nursery() as nursery:
        start = partial(
            serve_listeners,
            connection_handler(config),
            listeners,
            make_socket=socket_for,
            max_connections=max_connections,
            unix_path=unix_path,
            ssl_context=ssl_context,
            proxy_protocol=proxy_protocol,
        )
        server: Server = await nursery.start(start)
        server.on_close(config.close_idle)
        nursery.start_soon(config.supervise, server)
        task_status.started(server)


async def serve(
    app: App,
    port: int | None = None,
    *,
    host: str | None = None,
    path: str | os.PathLike[str] | None = None,
    backlog: int | None = None,
    reuse_port: bool = False,
    mode: int | None = None,
    on_upgrade: SocketHook | None = None,
    on_connect: SocketHook | None = None,
    on_check_continue: App | None = None,
    on_client_error: ClientErrorHook | None = None,
    headers_timeout: float = DEFAULT_HEADERS_TIMEOUT,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT,
    max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
    max_body_size: int | None = None,
    max_requests_per_socket: int | None = None,
    max_connections: int | None = None,
    ssl_context: TLSContext | None = None,
    proxy_protocol: bool = False,
    proxy_headers: bool = False,
    forwarded_allow_ips: str | Sequence[str] | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` over HTTP/1.1 (Node's ``http.createServer(app).listen(port)``).

    Start it with ``server = await nursery.start(trionet.http.serve, app, port)``.
    ``app(req, res)`` runs in the connection's task for each request; it
    reads the body from ``req`` and answers through ``res``.

    Args:
      on_upgrade: ``(req, sock, head)`` for requests asking for a protocol
        switch; gets the raw socket and the bytes read past the head, and
        the connection closes when it returns. Without it the app answers.
      on_connect: ``(req, sock, head)`` for CONNECT; without it: 405 and close.
      on_check_continue: runs instead of ``app`` for ``Expect: 100-continue``
        requests; it calls ``res.write_continue()`` to let the body come.
        Without it, 100 Continue is sent when the app first reads the body.
      on_client_error: ``(exc, sock)`` for malformed or over-limit requests
        (``exc.status`` is the suggested status); default: answer it and close.
      headers_timeout: seconds for a complete head, from accept (408).
      request_timeout: seconds for the whole request to arrive (408).
      keep_alive_timeout: seconds an idle connection is kept between requests.
      max_header_size: bytes of request line plus headers (431 above); a
        chunked body's trailer section gets the same budget.
      max_body_size: bytes of request body (413 above); None: no limit.
      max_requests_per_socket: then ``Connection: close``; pipelined extras get 503.
      max_connections: connections over this many are closed at once.
      mode: a Unix socket's (``path``) permission bits, e.g. ``0o660``.
      ssl_context: serve HTTPS over this context.
      proxy_protocol: each connection starts with a PROXY protocol header
        (v1 or v2) naming the client (as :func:`trionet.net.serve`).
      proxy_headers: believe ``X-Forwarded-For``/``-Proto``/``-Host`` and
        ``Forwarded`` from trusted peers: ``req.remote_address``,
        ``req.scheme`` and ``req.host`` then say what the proxy saw
        (uvicorn's ``--proxy-headers``; off by default, as in Node).
      forwarded_allow_ips: the trusted proxies, for both: IP addresses and
        networks, ``"unix"`` for Unix-socket peers, ``"*"`` for all. None:
        ``$FORWARDED_ALLOW_IPS``, else ``"127.0.0.1,::1,unix"``.
    """
    config = ServerConfig(
        app,
        on_upgrade=on_upgrade,
        on_connect=on_connect,
        on_check_continue=on_check_continue,
        on_client_error=on_client_error,
        headers_timeout=headers_timeout,
        request_timeout=request_timeout,
        keep_alive_timeout=keep_alive_timeout,
        max_header_size=max_header_size,
        max_body_size=max_body_size,
        max_requests_per_socket=max_requests_per_socket,
        trusted_proxies=TrustedProxies(forwarded_allow_ips) if proxy_headers else None,
    )
    trusted = TrustedProxies(forwarded_allow_ips) if proxy_protocol else None
    unix_path = os.fspath(path) if path is not None else None
    listener = await open_listener(port, host, unix_path, backlog, reuse_port, mode)
    await serve_http(
        config,
        [listener],
        max_connections=max_connections,
        unix_path=unix_path,
        ssl_context=ssl_context,
        proxy_protocol=trusted,
        task_status=task_status,
    )

