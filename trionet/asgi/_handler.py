"""The bridge: an ASGI app as trionet's HTTP ``app(req, res)`` and ``on_upgrade`` hook.

:class:`ASGIHandler` is both halves at once, so that one object sits on
any :func:`trionet.http.serve` port (``serve(h, port, on_upgrade=h.on_upgrade)``)
and :func:`trionet.asgi.serve` is only that plus lifespan and options.

The request path is lean on purpose (the issue's benchmark target is 5x
hypercorn-trio and 1.5x uvicorn-h11): per request, one scope dict, one
:class:`~._http.HTTPCycle` with slots, and the app's call, in the
connection's own task. The failure rules (which exception the HTTP server
gets, so that it answers 413/500 or aborts) live in :meth:`ASGIHandler.__call__`.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from ..http import Request, Response
from ..net import Socket
from ..ws import server_handshake
from ._http import HTTPCycle
from ._scope import http_scope, websocket_scope
from ._types import ASGIApp, ASGIProtocolError
from ._websocket import WebSocketCycle, WebSocketOptions

__all__ = ["ASGIHandler"]

logger = logging.getLogger("trionet.asgi")


class ASGIHandler:
    """Serves one ASGI app: call it as the HTTP app; :meth:`on_upgrade` takes WebSockets.

    Made by :func:`trionet.asgi.handler`; :func:`trionet.asgi.serve` makes
    one too. It does not run the lifespan protocol: ``state`` is what a
    lifespan startup filled (``trionet.asgi.serve`` passes its own).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        root_path: str = "",
        state: dict[str, Any] | None = None,
        access_log: bool = False,
        ws_options: WebSocketOptions,
    ) -> None:
        if root_path.endswith("/"):
            raise ValueError(f"root_path must not end with '/': {root_path!r}")
        self.app = app
        self.root_path = root_path
        #: The lifespan state copied into every scope.
        self.state: dict[str, Any] = {} if state is None else state
        self.access_log = access_log
        self.ws_options = ws_options

    async def __call__(self, req: Request, res: Response) -> None:
        """Run the app for one HTTP request (the ``app`` of :func:`trionet.http.serve`)."""
        scope = http_scope(req, self.root_path, self.state)
        cycle = HTTPCycle(req, res, self.access_log)
        try:
            await self.app(scope, cycle.receive, cycle.send)
        except Exception as exc:
            if cycle.client_error is not None:
                # The body broke a limit: the server answers with its status (413, 408...).
                raise cycle.client_error from None
            if cycle.disconnected:
                logger.debug("client left during %s %s: %r", req.method, req.url, exc)
                raise trio.BrokenResourceError("the client disconnected") from None
            raise  # the app's failure: the server logs it, then 500 or abort
        if cycle.complete:
            return
        if cycle.client_error is not None:
            raise cycle.client_error
        if cycle.disconnected:
            raise trio.BrokenResourceError("the client disconnected")
        if not cycle.started:
            raise ASGIProtocolError("the ASGI app returned without sending a response")
        raise ASGIProtocolError("the ASGI app returned before its response was complete")

    async def on_upgrade(self, req: Request, sock: Socket, head: bytes) -> None:
        """Run the app for one WebSocket (the ``on_upgrade`` hook of :func:`trionet.http.serve`)."""
        handshake = await server_handshake(req, sock, head)
        if handshake is None:
            return  # not a valid WebSocket handshake: answered already, the app never sees it
        scope = websocket_scope(req, handshake.subprotocols, self.root_path, self.state)
        async with trio.open_nursery() as nursery:
            cycle = WebSocketCycle(handshake, nursery, self.ws_options)
            try:
                await self.app(scope, cycle.receive, cycle.send)
            except Exception as exc:
                await cycle.finish(exc)
            else:
                await cycle.finish(None)
