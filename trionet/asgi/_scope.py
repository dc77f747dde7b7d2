"""Scopes: what an ASGI app is told about one request or WebSocket, built from trionet's Request.

Pure functions of a :class:`trionet.http.Request` and the server's options;
no I/O of their own. The websocket scope reads the request's public
attributes; the http scope, built for every request, reads the h11 event
under it (see :func:`http_scope`). The keys follow asgiref's specification
("HTTP & WebSocket ASGI Message Format", spec version 2.4):

- ``path`` is the target without its query, percent-decoded and read as
  UTF-8; ``raw_path`` the same bytes undecoded. Both start with
  ``root_path``, as uvicorn's do since 0.26 and as Starlette's
  ``get_route_path`` expects (it strips ``root_path`` from ``path``):
  ``--root-path /api`` behind a proxy that strips ``/api`` gives the app
  ``path="/api/items"``, ``root_path="/api"``. Rejected: leaving ``path``
  without the prefix (the older reading), which makes Starlette's mounted
  apps and ``url_for`` disagree with uvicorn's behaviour for the same app.
- ``headers`` are the received pairs with names lower-cased (asgiref: "header
  names should be lowercased"), values untouched, duplicates kept in order.
- ``client`` and ``server`` are ``(host, port)`` tuples; over a Unix socket
  ``client`` is None and ``server`` is ``(path, None)`` (asgiref: "for Unix
  sockets, (path, None)").
- Behind a trusted proxy (``proxy_headers``, ``req.forwarded``), ``client``
  is the forwarded client, ``scheme`` the forwarded one (``https`` makes a
  WebSocket's ``wss``, as uvicorn's ProxyHeadersMiddleware does), and a
  forwarded host replaces the ``host`` header, as hypercorn's
  ProxyFixMiddleware does: frameworks build URLs from that header (Starlette
  reads ``server`` only without one), so ``server`` stays the socket's own
  address. A PROXY protocol header has already set the socket's peer.
- ``state`` is a shallow copy of the lifespan state (asgiref "Lifespan State":
  "a copy of the namespace passed into the lifespan").

The scope dict is the one allocation per request the specification forces;
nothing here copies the headers twice or parses what the app may not read.
A target's split (``path``, ``raw_path``, ``query_string``) is cached, by the target's bytes:
clients ask for the same few targets again and again, and the parts are
immutable, so scopes may share them (measured: a quarter of the scope's cost).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from ..tls import TLSSocket
from ._types import ASGI_VERSION, SPEC_VERSION, Scope, asgi_info

__all__ = ["PATHSEND", "TRAILERS", "WS_DENIAL", "http_scope", "split_target", "websocket_scope"]

#: The ``http`` scope's extensions: ``http.response.pathsend`` (asgiref "Path
#: Send": a file sent by ``sendfile``) and ``http.response.trailers``
#: (asgiref "HTTP Trailers": a trailer section after a chunked body). Each
#: scope gets a fresh ``extensions`` dict: a middleware may write into it.
PATHSEND = "http.response.pathsend"
TRAILERS = "http.response.trailers"
#: The ``websocket`` scope's: the denial response (asgiref "WebSocket Denial Response").
WS_DENIAL = "websocket.http.response"


def split_target(target: str, root_path: str) -> tuple[str, bytes, bytes]:
    """``(path, raw_path, query_string)`` of a request target (as received, latin-1 text).

    The origin form (``/a%20b?x=1``) is the usual case; the absolute form
    (``http://host/a?x=1``, RFC 9112 section 3.2.2) gives its path; the
    asterisk form (``*``, OPTIONS) stays ``*``.
    """
    raw, _, query = target.partition("?")
    if raw[:1] != "/" and "://" in raw:
        raw = "/" + raw.split("://", 1)[1].partition("/")[2]
    raw_bytes = raw.encode("latin-1")
    if "%" in raw or not raw.isascii():
        path = unquote(raw_bytes.decode("utf-8", "surrogateescape"), errors="surrogateescape")
    else:
        path = raw
    if root_path:
        path = root_path + path
        raw_bytes = root_path.encode("utf-8") + raw_bytes
    return path, raw_bytes, query.encode("latin-1")


#: Targets whose split is kept (a few hundred distinct paths cover most apps).
_SPLIT_CACHE_SIZE = 1024


@lru_cache(maxsize=_SPLIT_CACHE_SIZE)
def _split_bytes(target: bytes, root_path: str) -> tuple[str, bytes, bytes]:
    """:func:`split_target` of a target as received (bytes), cached."""
    return split_target(target.decode("latin-1"), root_path)


def _addresses(req: Any) -> tuple[Any, Any, bool]:
    """``(client, server, tls)`` of the request's connection, in ASGI's shape."""
    sock = req.socket
    remote, local = sock.remote_address, sock.local_address
    if isinstance(local, str):  # a Unix socket: its path (a PROXY header may name a client)
        return (remote if isinstance(remote, tuple) else None), (local, None), False
    return remote, local, isinstance(sock, TLSSocket)


def _lower_headers(req: Any) -> list[tuple[bytes, bytes]]:
    """The request's headers with lower-case names, as h11 already keeps them.

    ``Request.raw_headers`` keeps the received case, which would be copied
    and lowered again: h11 keeps (received name, lower-case name, value)
    per line; this is the per-request hot path of every ASGI app.
    """
    try:
        return [(name, value) for _, name, value in req._event.headers._full_items]
    except AttributeError:  # pragma: no cover - an h11 that changed its Headers
        return [(name.lower(), value) for name, value in req.raw_headers]


def _forwarded(req: Any) -> tuple[Any, Any, bool, list[tuple[bytes, bytes]]]:
    """``(client, server, tls, headers)``, with what a trusted proxy forwarded;
    a forwarded host replaces the Host line."""
    client, server, tls = _addresses(req)
    headers = _lower_headers(req)
    forwarded = req.forwarded
    if forwarded is None:  # proxy_headers off, or an untrusted peer
        return client, server, tls, headers
    if forwarded.client is not None:
        client = forwarded.client
    if forwarded.scheme is not None:
        tls = forwarded.scheme == "https"
    if forwarded.host is not None:
        headers = [(name, value) for name, value in headers if name != b"host"]
        headers.append((b"host", forwarded.host.encode("latin-1")))
    return client, server, tls, headers


#: A request's method and version as text, from their bytes (decoding each
#: request's costs more than the lookup; anything else is decoded).
_TEXT = {
    name.encode(): name
    for name in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "1.1", "1.0")
}


def http_scope(req: Any, root_path: str, state: dict[str, Any]) -> Scope:
    """The ``http`` scope of ``req`` (a :class:`trionet.http.Request`).

    Read from the request's h11 event directly (``req._event``), the way the
    server parsed it: its method, target and version as bytes. The
    properties' decoding and caching cost a fifth of the scope.
    """
    event = req._event
    path, raw_path, query = _split_bytes(event.target, root_path)
    client, server, tls, headers = _forwarded(req)
    method = event.method
    version = event.http_version
    return {
        "type": "http",
        "asgi": {"version": ASGI_VERSION, "spec_version": SPEC_VERSION},
        "http_version": _TEXT.get(version) or version.decode("ascii"),
        "method": _TEXT.get(method) or method.decode("ascii"),
        "scheme": "https" if tls else "http",
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": root_path,
        "headers": headers,
        "client": client,
        "server": server,
        "state": state.copy(),
        "extensions": {PATHSEND: {}, TRAILERS: {}},
    }


def websocket_scope(
    req: Any, subprotocols: list[str], root_path: str, state: dict[str, Any]
) -> Scope:
    """The ``websocket`` scope of an upgrade request and the subprotocols it offered."""
    path, raw_path, query = split_target(req.url, root_path)
    client, server, tls, headers = _forwarded(req)
    return {
        "type": "websocket",
        "asgi": asgi_info(),
        "http_version": req.http_version,
        "scheme": "wss" if tls else "ws",
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": root_path,
        "headers": headers,
        "client": client,
        "server": server,
        "subprotocols": subprotocols,
        "state": state.copy(),
        "extensions": {WS_DENIAL: {}},
    }
