"""trionet.https: HTTP over TLS, as Node's ``https`` module.

    server = await nursery.start(functools.partial(
        trionet.https.serve, app, 8443, key="server.key", cert="server.pem"))
    res = await trionet.https.request("https://localhost:8443/", ca="ca.pem")

This module is thin on purpose: :func:`serve` is :func:`trionet.http.serve`
with a TLS layer under it (the HTTP driver never knows), and :func:`request` /
:func:`stream` are the HTTP client's with a TLS context built from Node's
options (``ca``, ``cert``, ``key``, ``reject_unauthorized``). Requests go
through :data:`global_agent` (Node's ``https.globalAgent``: its own pool,
five sockets per host) unless given another :class:`Agent`. The agent's pool
key includes the TLS context, so a connection made with one client
certificate is never handed to a request made with another.

On the server, ``req.socket.stream`` is the TLS stream; with ``request_cert``
its ``authorized``, ``authorization_error`` and ``peer_certificate`` say who
the client is (Node's ``req.socket.authorized``).
"""

from __future__ import annotations

import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._server import Server
from ._tls_context import (
    CAInput,
    PemInput,
    SNIContexts,
    TLSConfig,
    TLSOptions,
    client_ssl_context_from,
    server_tls,
)
from .agent import Agent
from .http import ClientResponse
from .http import Request as Request
from .http import Response as Response
from .http import request as http_request
from .http import serve as http_serve
from .http import stream as http_stream
from .http._client_request import Body, HeadersArg

__all__ = [
    "Agent",
    "ClientResponse",
    "Request",
    "Response",
    "create_agent",
    "global_agent",
    "request",
    "serve",
    "ssl_context",
    "stream",
]

#: Node's ``https.globalAgent``: a pool of its own, apart from
#: ``trionet.http.global_agent``, with five sockets per host as the seed text says.
global_agent = Agent(max_sockets=5)

App = Callable[[Request, Response], Awaitable[None]]


async def serve(
    app: App,
    port: int | None = None,
    *,
    key: PemInput | None = None,
    cert: PemInput | None = None,
    ca: CAInput | None = None,
    request_cert: bool = False,
    reject_unauthorized: bool = True,
    ssl_context: TLSConfig | ssl.SSLContext | None = None,
    alpn_protocols: Sequence[str] | None = ("http/1.1",),
    sni_contexts: SNIContexts | None = None,
    handshake_timeout: float | None = None,
    mode: int | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    **http_options: Any,
) -> None:
    """Serve ``app`` over HTTPS (Node's ``https.createServer(options, app)``).

    Takes :func:`trionet.tls.serve`'s TLS options and every option of
    :func:`trionet.http.serve` (``host``, ``path``, ``mode``, timeouts, limits, hooks). A failed or
    stalled handshake is logged and closed; the server keeps serving.
    """
    options = TLSOptions(
        key=key, cert=cert, ca=ca, request_cert=request_cert,
        reject_unauthorized=reject_unauthorized, alpn_protocols=alpn_protocols,
        sni_contexts=sni_contexts, handshake_timeout=handshake_timeout,
    )  # fmt: skip
    tls = server_tls(options, ssl_context)
    await http_serve(
        app, port, ssl_context=tls, mode=mode, task_status=task_status, **http_options
    )


# -- client ------------------------------------------------------------------------------
# Contexts built from Node's options, keyed by the PEM content, so that equal
# options give the same context object and therefore share the agent's pool.
_CONTEXT_CACHE_SIZE = 64
_contexts: OrderedDict[tuple[Any, ...], ssl.SSLContext] = OrderedDict()


def ssl_context(
    *,
    ca: CAInput | None = None,
    cert: PemInput | None = None,
    key: PemInput | None = None,
    reject_unauthorized: bool = True,
) -> ssl.SSLContext:
    """The client context for Node's TLS options (one shared object per distinct set).

    ``ca`` replaces the system's CAs (Node: "Optionally override the trusted
    CA certificates"); ``cert``/``key`` present a client certificate;
    ``reject_unauthorized=False`` accepts any server certificate.
    """
    return _client_context(
        TLSOptions(ca=ca, cert=cert, key=key, reject_unauthorized=reject_unauthorized)
    )


def _client_context(options: TLSOptions) -> ssl.SSLContext:
    """The shared context for ``options``: built once per distinct set, kept in an LRU cache."""
    cache_key = options.client_key()
    context = _contexts.get(cache_key)
    if context is None:
        context = client_ssl_context_from(options)
        _contexts[cache_key] = context
        while len(_contexts) > _CONTEXT_CACHE_SIZE:
            _contexts.popitem(last=False)
    _contexts.move_to_end(cache_key)
    return context


def create_agent(
    max_sockets: int = 5,
    *,
    ca: CAInput | None = None,
    cert: PemInput | None = None,
    key: PemInput | None = None,
    reject_unauthorized: bool = True,
    **agent_options: Any,
) -> Agent:
    """An :class:`Agent` for HTTPS with Node's TLS options (``new https.Agent({...})``).

    Every request through it that brings no TLS options of its own uses
    this identity, e.g. a client certificate for mutual TLS.
    """
    context = ssl_context(ca=ca, cert=cert, key=key, reject_unauthorized=reject_unauthorized)
    return Agent(max_sockets, ssl_context=context, **agent_options)


def _request_context(options: TLSOptions, given: ssl.SSLContext | None) -> ssl.SSLContext | None:
    """The per-request context: the one given, one from Node's options, or the agent's (None)."""
    if given is not None:
        return given
    if options == _NO_OPTIONS:
        return None  # no TLS options of its own: the agent's context
    return _client_context(options)


#: What a request that brings no TLS options of its own carries.
_NO_OPTIONS = TLSOptions()


async def request(
    url: str | dict[str, Any],
    *,
    method: str = "GET",
    headers: HeadersArg = None,
    body: Body = None,
    timeout: float | None = None,
    expect_continue: bool = False,
    max_body_size: int | None = None,
    ca: CAInput | None = None,
    cert: PemInput | None = None,
    key: PemInput | None = None,
    reject_unauthorized: bool = True,
    ssl_context: ssl.SSLContext | None = None,
    agent: Agent | bool | None = None,
) -> ClientResponse:
    """Send an HTTPS request and read the response (Node's ``https.request``).

    Takes :func:`trionet.http.request`'s arguments (the same meaning, the
    same early-response and ``max_body_size`` behaviour) plus Node's TLS
    options; ``agent=None`` uses :data:`global_agent`.

    Raises:
      TLSError: the handshake failed, saying why (unknown CA, hostname
        mismatch, expired certificate).
      ConnectError: as :func:`trionet.http.request`, and so do ConnectionLost,
        ProtocolError, MessageSizeError, TimeoutError, PoolTimeout and
        ValueError.
    """
    options = TLSOptions(ca=ca, cert=cert, key=key, reject_unauthorized=reject_unauthorized)
    context = _request_context(options, ssl_context)
    return await http_request(
        url,
        method=method,
        headers=headers,
        body=body,
        agent=global_agent if agent is None else agent,
        timeout=timeout,
        expect_continue=expect_continue,
        ssl_context=context,
        max_body_size=max_body_size,
    )


@asynccontextmanager
async def stream(
    url: str | dict[str, Any],
    *,
    method: str = "GET",
    headers: HeadersArg = None,
    body: Body = None,
    timeout: float | None = None,
    expect_continue: bool = False,
    ca: CAInput | None = None,
    cert: PemInput | None = None,
    key: PemInput | None = None,
    reject_unauthorized: bool = True,
    ssl_context: ssl.SSLContext | None = None,
    agent: Agent | bool | None = None,
) -> AsyncIterator[ClientResponse]:
    """:func:`trionet.http.stream` over TLS: the response with its body unread.

    Raises what :func:`trionet.http.stream` raises, and :class:`trionet.TLSError`.
    """
    options = TLSOptions(ca=ca, cert=cert, key=key, reject_unauthorized=reject_unauthorized)
    context = _request_context(options, ssl_context)
    async with http_stream(
        url,
        method=method,
        headers=headers,
        body=body,
        agent=global_agent if agent is None else agent,
        timeout=timeout,
        expect_continue=expect_continue,
        ssl_context=context,
    ) as res:
        yield res
