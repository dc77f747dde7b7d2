"""trionet.asgi: ASGI 3 apps (Starlette, FastAPI, Quart-Trio) on trionet's HTTP and WebSocket.

    import trionet.asgi
    from starlette.applications import Starlette

    app = Starlette(...)
    server = await nursery.start(trionet.asgi.serve, app, 8000)

or from the command line, with uvicorn's flag names: ``trionet serve main:app``.

Why: on Trio, hypercorn was the only ASGI server, and it measured several
times slower than trionet's own HTTP server on the same machine. Serving
ASGI over trionet's HTTP driver (:mod:`trionet.http`) and its public
WebSocket handshake step (:func:`trionet.ws.server_handshake`) gives ASGI
apps the limits, timeouts and hostile-input handling those already have:
a malformed request gets its 400/413/431 before the app is called.

What is where: ``_scope`` builds the scopes (asgiref's spec 2.4), ``_http``
is one request's ``receive``/``send``, ``_websocket`` one WebSocket's,
``_lifespan`` the startup/shutdown conversation, ``_handler`` the bridge to
``http.serve``'s ``app`` and ``on_upgrade``, ``_serve`` the options,
``_command`` the ``trionet serve`` command line.

Extensions offered: ``http.response.pathsend`` (Starlette's FileResponse
uses it; the file goes out by ``sendfile`` through ``Response.send_file``),
``http.response.trailers`` (``Response.add_trailers`` after a chunked body)
and ``websocket.http.response`` (a custom denial instead of 403).

Apps run in the connection's task on Trio; Starlette and FastAPI find Trio
through anyio (their sync endpoints run in anyio's worker threads).
"""

from __future__ import annotations

from ._handler import ASGIHandler as ASGIHandler
from ._serve import handler as handler
from ._serve import serve as serve
from ._types import ASGIApp as ASGIApp
from ._types import ASGIProtocolError as ASGIProtocolError
from ._types import ClientDisconnected as ClientDisconnected
from ._types import LifespanFailure as LifespanFailure
from ._types import Message as Message
from ._types import Receive as Receive
from ._types import Scope as Scope
from ._types import Send as Send

__all__ = [
    "ASGIApp",
    "ASGIHandler",
    "ASGIProtocolError",
    "ClientDisconnected",
    "LifespanFailure",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "handler",
    "serve",
]

# Show the public names as trionet.asgi.X in reprs, tracebacks and docs.
for _public in (ASGIHandler, ASGIProtocolError, ClientDisconnected, LifespanFailure):
    _public.__module__ = __name__
