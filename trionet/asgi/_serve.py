"""``trionet.asgi.serve`` and ``handler``: options in, an HTTP(S) server with lifespan out.

:func:`serve` is :func:`trionet.http.serve` (or :func:`trionet.https.serve`
when given TLS options) with an :class:`~._handler.ASGIHandler` as both its
app and its ``on_upgrade`` hook, wrapped in the app's lifespan: startup
before the port opens (a request never reaches an app that has not
started; a failed startup means no server), shutdown after it closes. The
HTTP limits and timeouts default to None, meaning "``http.serve``'s own
default", so they are defined once, there; only the ones given are passed
on. Rejected: ``**http_options`` passed through blindly (the signature would
not say what the server takes, and a typo would surface only at start).
"""

from __future__ import annotations

import os
import ssl
import sys
from collections.abc import Sequence
from typing import Any

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup  # Trio's dependency before 3.11

from .. import http, https
from .._server import Server
from ..tls import TLSConfig
from ..ws import CLOSE_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE
from ._handler import ASGIHandler
from ._lifespan import SHUTDOWN_TIMEOUT, Lifespan
from ._types import ASGIApp
from ._websocket import WebSocketOptions

__all__ = ["handler", "serve"]

PemInput = bytes | str | os.PathLike[str]


def handler(
    app: ASGIApp,
    *,
    root_path: str = "",
    state: dict[str, Any] | None = None,
    access_log: bool = False,
    ws_max_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ws_ping_interval: float | None = None,
    ws_ping_timeout: float | None = None,
    ws_per_message_deflate: bool = False,
) -> ASGIHandler:
    """An ASGI app as a :func:`trionet.http.serve` app plus its ``on_upgrade`` hook.

        h = trionet.asgi.handler(app)
        await nursery.start(partial(trionet.http.serve, h, 8000, on_upgrade=h.on_upgrade))

    It runs no lifespan protocol (:func:`serve` does); ``state`` is copied
    into every scope as a lifespan would have left it. The ``ws_*`` options
    are :func:`trionet.ws.handler`'s ``max_message_size``, ``ping_interval``,
    ``ping_timeout`` and ``compression``, under uvicorn's names.
    """
    options = WebSocketOptions(
        max_message_size=ws_max_size,
        ping_interval=ws_ping_interval,
        ping_timeout=ws_ping_timeout,
        compression=ws_per_message_deflate,
        close_timeout=CLOSE_TIMEOUT,
    )
    return ASGIHandler(
        app, root_path=root_path, state=state, access_log=access_log, ws_options=options
    )


async def serve(
    app: ASGIApp,
    port: int | None = None,
    *,
    host: str | None = None,
    path: str | os.PathLike[str] | None = None,
    root_path: str = "",
    lifespan: str = "auto",
    access_log: bool = False,
    ws_max_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ws_ping_interval: float | None = None,
    ws_ping_timeout: float | None = None,
    ws_per_message_deflate: bool = False,
    headers_timeout: float | None = None,
    request_timeout: float | None = None,
    keep_alive_timeout: float | None = None,
    max_header_size: int | None = None,
    max_body_size: int | None = None,
    max_requests_per_socket: int | None = None,
    max_connections: int | None = None,
    backlog: int | None = None,
    reuse_port: bool = False,
    proxy_headers: bool = False,
    forwarded_allow_ips: str | Sequence[str] | None = None,
    proxy_protocol: bool = False,
    mode: int | None = None,
    key: PemInput | None = None,
    cert: PemInput | None = None,
    ca: PemInput | Sequence[PemInput] | None = None,
    request_cert: bool = False,
    reject_unauthorized: bool = True,
    ssl_context: TLSConfig | ssl.SSLContext | None = None,
    startup_timeout: float | None = None,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve an ASGI 3 app (Starlette, FastAPI, Quart-Trio) over HTTP/1.1 and WebSocket.

    Start it with ``server = await nursery.start(trionet.asgi.serve, app, 8000)``;
    the result is the same ``Server`` as :func:`trionet.http.serve`'s. The
    app's lifespan startup runs first (a failure raises
    :class:`~trionet.asgi.LifespanFailure` from ``nursery.start`` and nothing
    listens); cancelling the nursery or ``server.aclose()`` runs its shutdown.

    Args:
      path: a Unix socket to listen on instead of a port (uvicorn's ``--uds``).
      root_path: the prefix the app is mounted under behind a proxy; it starts
        every scope's ``path`` and is the scope's ``root_path``.
      lifespan: ``"auto"`` (run it if the app supports it), ``"on"`` or ``"off"``.
      access_log: one INFO line per response on the ``trionet.access`` logger
        (the common log format).
      ws_max_size: bigger WebSocket messages close the connection with 1009.
      ws_ping_interval: seconds between WebSocket pings (None: no heartbeat).
      ws_ping_timeout: seconds a pong may take before the connection fails.
      ws_per_message_deflate: negotiate permessage-deflate (off, as trionet.ws).
      startup_timeout: seconds for the app's startup (None: no bound).
      shutdown_timeout: seconds for the app's lifespan shutdown.
      proxy_headers: believe ``X-Forwarded-For``/``-Proto``/``-Host`` and
        ``Forwarded`` from ``forwarded_allow_ips``: the scope's ``client`` and
        ``scheme`` (``https``/``wss``) and its ``host`` header are the ones the
        proxy saw (uvicorn's ``--proxy-headers``, here off by default).
      forwarded_allow_ips: the trusted proxies (uvicorn's name and default,
        plus Unix-socket peers: see :func:`trionet.http.serve`).
      proxy_protocol: each connection starts with a PROXY protocol header.

    ``headers_timeout``, ``request_timeout``, ``keep_alive_timeout``,
    ``max_header_size``, ``max_body_size``, ``max_requests_per_socket``,
    ``max_connections``, ``backlog``, ``reuse_port`` and ``mode`` are as in
    :func:`trionet.http.serve` (None: its default); ``key``, ``cert``, ``ca``,
    ``request_cert``, ``reject_unauthorized`` and ``ssl_context`` serve HTTPS
    and WSS, as in :func:`trionet.https.serve`.

    Raises:
      LifespanFailure: the app's startup failed (its message).
      OSError: the address could not be listened on.
    """
    state: dict[str, Any] = {}
    asgi = handler(
        app,
        root_path=root_path,
        state=state,
        access_log=access_log,
        ws_max_size=ws_max_size,
        ws_ping_interval=ws_ping_interval,
        ws_ping_timeout=ws_ping_timeout,
        ws_per_message_deflate=ws_per_message_deflate,
    )
    options: dict[str, Any] = {
        name: value
        for name, value in (
            ("headers_timeout", headers_timeout),
            ("request_timeout", request_timeout),
            ("keep_alive_timeout", keep_alive_timeout),
            ("max_header_size", max_header_size),
            ("max_body_size", max_body_size),
            ("max_requests_per_socket", max_requests_per_socket),
            ("max_connections", max_connections),
            ("backlog", backlog),
            ("forwarded_allow_ips", forwarded_allow_ips),
            ("mode", mode),
        )
        if value is not None
    }
    options["proxy_headers"] = proxy_headers
    options["proxy_protocol"] = proxy_protocol
    tls: dict[str, Any] | None = None
    if key is not None or cert is not None or ssl_context is not None:
        tls = {"key": key, "cert": cert, "ca": ca, "request_cert": request_cert,
               "reject_unauthorized": reject_unauthorized, "ssl_context": ssl_context}  # fmt: skip
    life = Lifespan(app, lifespan, state)
    try:
        await _run(asgi, life, port, host, path, reuse_port, options, tls, startup_timeout,
                   shutdown_timeout, task_status)  # fmt: skip
    except BaseExceptionGroup as group:
        # The server's one failure (a failed startup, an address in use) comes
        # out as itself, not inside the group of this function's own nursery.
        if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
            raise group.exceptions[0] from None
        raise


async def _run(
    asgi: ASGIHandler,
    life: Lifespan,
    port: int | None,
    host: str | None,
    path: str | os.PathLike[str] | None,
    reuse_port: bool,
    options: dict[str, Any],
    tls: dict[str, Any] | None,
    startup_timeout: float | None,
    shutdown_timeout: float,
    task_status: trio.TaskStatus[Server],
) -> None:
    """Startup, serve until cancelled or closed, shutdown (shielded)."""
    async with trio.open_nursery() as nursery:
        await life.startup(nursery, startup_timeout)
        try:
            if tls is not None:
                await https.serve(
                    asgi, port, host=host, path=path, reuse_port=reuse_port,
                    on_upgrade=asgi.on_upgrade, task_status=task_status, **tls, **options,
                )  # fmt: skip
            else:
                await http.serve(
                    asgi, port, host=host, path=path, reuse_port=reuse_port,
                    on_upgrade=asgi.on_upgrade, task_status=task_status, **options,
                )  # fmt: skip
        finally:
            with trio.CancelScope(shield=True):
                await life.shutdown(shutdown_timeout)
