"""The ASGI vocabulary shared by the cycles: message types, callables and errors.

ASGI 3.0 (asgiref's specification, spec version 2.4): an application is
``async def app(scope, receive, send)``; ``scope`` says what the connection
is, ``receive()`` returns the next event from the client, ``send(message)``
answers. Messages and scopes are plain dicts, as the specification says
("the scope and events are dicts"), so the aliases below are
``dict[str, Any]`` rather than TypedDicts: asgiref's ``asgiref.typing``
TypedDicts were rejected because they would make asgiref a dependency for
annotations alone, and apps pass all sorts of mappings anyway.

The errors are what the *app* sees when it misuses the protocol or talks to
a client that left; both are the app's business, not the server's bugs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .._errors import TrionetError

__all__ = [
    "ASGI_VERSION",
    "ASGIApp",
    "ASGIProtocolError",
    "ClientDisconnected",
    "LifespanFailure",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "asgi_info",
]

#: A scope or a message: a dict with a ``"type"`` key (asgiref: "dicts").
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: An ASGI 3 application (Starlette, FastAPI, Quart-Trio...).
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: ``scope["asgi"]["version"]``: the ASGI interface version (3.0: one callable).
ASGI_VERSION = "3.0"
#: ``scope["asgi"]["spec_version"]`` of http and websocket scopes. 2.4 (asgiref
#: spec, "HTTP & WebSocket" page) says that ``send()`` raises an ``OSError``
#: once the client is gone, which Starlette >= 0.37 relies on instead of
#: listening for ``http.disconnect`` in a second task.
SPEC_VERSION = "2.4"
#: The lifespan specification's version (asgiref's "Lifespan" page: 2.0).
LIFESPAN_SPEC_VERSION = "2.0"


def asgi_info(spec_version: str = SPEC_VERSION) -> dict[str, str]:
    """A fresh ``scope["asgi"]`` dict (fresh: an app may write into its scope)."""
    return {"version": ASGI_VERSION, "spec_version": spec_version}


class ASGIProtocolError(TrionetError, RuntimeError):
    """The app broke the ASGI protocol: two ``http.response.start``, a body
    before the start, a send after the response or the close, an unknown
    message type, or returning without answering.

    Raised inside the app (from ``send()``) when the misuse happens there,
    so the traceback points at the app's line; a ``RuntimeError``, as
    uvicorn's and hypercorn's equivalents are.
    """


class ClientDisconnected(TrionetError, OSError):
    """``send()`` after the client went away (ASGI spec 2.4: "a subclass of OSError").

    Starlette turns it into its ``ClientDisconnect``; trionet logs an app
    that fails with it at DEBUG, never ERROR: a client leaving is ordinary.
    """


class LifespanFailure(TrionetError):
    """The app's lifespan startup failed (``lifespan.startup.failed``, or it
    raised with ``lifespan="on"``): the server does not start.

    ``str(exc)`` is the app's message; ``trionet serve`` prints it and exits 3,
    as uvicorn does.
    """
