"""The HTTP/1.1 client: ``request``, ``stream``, ``connect_tunnel`` and the upgrade path.

    res = await trionet.http.request("http://127.0.0.1:8000/hello")
    res.status, res.headers["content-type"], res.text()

    async with trionet.http.stream(url, method="POST", body=chunks()) as res:
        async for chunk in res:
            ...

Every request goes through an :class:`~trionet.agent.Agent` (default:
:data:`global_agent`, five connections per host:port, as in Node), which hands
it a pooled keep-alive connection or opens one; ``agent=False`` opens a fresh
connection, sends ``Connection: close`` and closes it afterwards. A connection
goes back to the pool only once its response was read to the end.

Redirects are not followed (as in Node): a 3xx comes back as it is.

The wire work per request is one ``send_all`` (head and a known body
together) and, for a small response, one read fed whole to h11. A request
sent whole has its bytes written by h11 once (cached with the request for a
plain GET) and its response read by h11's readers without an
``h11.Connection`` (:mod:`._client_reader`).

HTTPS: a URL with ``https`` makes the connection TLS over TCP:
``trio.SSLStream(stream, ctx, server_hostname=host, https_compatible=True)``,
handshake before the first byte of HTTP, failures as :class:`trionet.TLSError`
with the reason. The context is, in order: the ``ssl_context=`` argument of the
request, the agent's ``ssl_context``, ``ssl.create_default_context()``. The
pool key includes the context's identity, so a connection made with one client
certificate is never reused for a request made with another context (and a
new context per request means a new connection per request: build contexts
once per set of options and reuse them).

For the layers built on this module:

- :mod:`trionet.https`: ``await request(url, ..., agent=agent, ssl_context=ctx)``
  and ``stream(url, ..., ssl_context=ctx)``; ``Agent(ssl_context=ctx)`` for an
  agent-wide context.
- protocols that leave HTTP: ``res, sock, leftover = await upgrade(url,
  headers=..., timeout=None, ssl_context=None)`` (``ws://``/``wss://`` URLs
  accepted): the 101 response, the raw :class:`trionet.net.Socket` and the
  bytes already read past the 101 head; on a refusal ``(response with body,
  None, b"")``. :mod:`trionet.ws` takes the same path on a connection it
  opens itself (:func:`._client_upgrade.request_switch`).

Errors, all exported from :mod:`trionet` and :mod:`trionet.http`: refused or
unreachable servers raise :class:`trionet.ConnectError`; a server that closes
or resets the connection without answering, :class:`trionet.ConnectionLost`
(but a response it sent before closing, even mid-upload, is returned); a
malformed, truncated or over-long response, or one with both Content-Length
and Transfer-Encoding, raises :class:`trionet.ProtocolError` saying what was
wrong and closes the connection; a body over ``max_body_size``,
:class:`trionet.MessageSizeError`; ``timeout``, :class:`trionet.TimeoutError`.
A body of any size is read into memory unless ``max_body_size`` says
otherwise: :func:`stream` reads one in pieces.

This module holds the public calls only; each reads top to bottom as
prepare (:mod:`._client_request`, where the request goes: :mod:`trionet._url`),
send and read the head (:mod:`._client_exchange`, or :mod:`._client_upgrade`
for the protocols that leave HTTP), then read the body
(:mod:`._client_response`). Timeouts are set here, around all of it.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any

import trio

from .._errors import TimeoutError
from .._stream import Socket
from .._url import describe
from ..agent import Agent
from ._client_exchange import exchange
from ._client_request import Body, HeadersArg, prepare, prepare_tunnel, prepare_upgrade
from ._client_response import ClientResponse
from ._client_upgrade import open_tunnel, switch_protocols

__all__ = [
    "ClientResponse",
    "connect_tunnel",
    "global_agent",
    "request",
    "stream",
    "upgrade",
]

#: The agent used when a request names none (Node's ``http.globalAgent``).
global_agent = Agent(max_sockets=5)

#: ``agent=``: an Agent, None for :data:`global_agent`, False for no pool.
AgentArg = Agent | None | bool


async def request(
    url: str | Mapping[str, Any],
    *,
    method: str = "GET",
    headers: HeadersArg = None,
    body: Body = None,
    agent: AgentArg = None,
    timeout: float | None = None,
    expect_continue: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    max_body_size: int | None = None,
) -> ClientResponse:
    """Send a request and read the whole response (Node's ``http.request`` plus reading).

    Args:
      url: ``"http://host:port/path?query"`` (``https`` too), or a dict of
        Node's options: ``hostname``, ``port``, ``path``, ``method``,
        ``headers``, ``auth`` (``"user:pass"``, sent as Basic), ``socket_path``
        (HTTP over a Unix socket), ``protocol`` (``"https:"``).
      method: the request method.
      headers: a dict or pairs; ``Host``, ``Connection`` and the body's framing
        are added unless given.
      body: bytes or str (sent with Content-Length), or an async iterable of
        chunks (sent with Transfer-Encoding: chunked).
      agent: an :class:`~trionet.agent.Agent`; None for :data:`global_agent`;
        False for a fresh connection with ``Connection: close``.
      timeout: seconds for the whole exchange, waiting for a connection included.
      expect_continue: send ``Expect: 100-continue`` and the body only after
        the server's ``100 Continue`` (a final response instead means the body
        is never sent).
      ssl_context: the TLS context for an ``https`` URL (see the module docstring).
      max_body_size: the most response body bytes to read into memory; None
        (the default, as in Node, httpx and aiohttp) reads any size, which
        costs about twice the body in memory while it is joined. Read large
        bodies with :func:`stream`.

    Returns:
      The response, body read. A response the server sent before it had read
      the whole request body (a ``413`` for a large upload, say) is returned
      even if the server then closed or reset the connection (RFC 9112 §9.5;
      curl and Node do the same); the rest of the body is not sent.

    Raises:
      ConnectError: the server could not be reached (refused, unreachable,
        unknown name).
      ConnectionLost: the server closed or reset the connection without
        answering (a :class:`ConnectError`); an idempotent request on a reused
        connection is sent once more first.
      TLSError: the TLS handshake of an ``https`` request failed.
      ProtocolError: the response was malformed, cut short, longer than
        declared, or had both Content-Length and Transfer-Encoding; the
        connection is closed, never reused.
      MessageSizeError: the body is over ``max_body_size``; the connection is
        closed.
      TimeoutError: ``timeout`` ran out.
      PoolTimeout: the agent's ``pool_timeout`` ran out (a :class:`TimeoutError`).
      ValueError: the URL or a header cannot be sent (checked before sending).
    """
    pool = _resolve_agent(agent)
    prepared = prepare(url, method, headers, body, pool, expect_continue, ssl_context)
    if timeout is None:
        res = await exchange(prepared, pool)
        await res._read_all(max_body_size)
        return res
    with trio.move_on_after(timeout):
        res = await exchange(prepared, pool)
        await res._read_all(max_body_size)
        return res
    raise _timed_out(f"{method} {describe(url)}", timeout)


@contextlib.asynccontextmanager
async def stream(
    url: str | Mapping[str, Any],
    *,
    method: str = "GET",
    headers: HeadersArg = None,
    body: Body = None,
    agent: AgentArg = None,
    timeout: float | None = None,
    expect_continue: bool = False,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[ClientResponse]:
    """Like :func:`request`, but yield the response before reading its body.

    ``await res.read()`` or ``async for chunk in res`` inside the block. On
    leaving it, a response read to the end has returned its connection to the
    pool; an unfinished one closes it. ``timeout`` bounds getting the response
    head and then each wait for body data. The body is never held whole, so
    there is no ``max_body_size``: this is the way to read large bodies.

    Raises:
      ConnectError: as :func:`request`; so do ConnectionLost, TLSError,
        PoolTimeout and ValueError, all while getting the response head.
      ProtocolError: as :func:`request`, while getting the head or reading
        the body (the connection is closed).
      TimeoutError: ``timeout`` ran out getting the head, or waiting for
        body data.
    """
    pool = _resolve_agent(agent)
    prepared = prepare(url, method, headers, body, pool, expect_continue, ssl_context)
    if timeout is None:
        res = await exchange(prepared, pool)
    else:
        with trio.move_on_after(timeout) as scope:
            res = await exchange(prepared, pool)
        if scope.cancelled_caught:
            raise _timed_out(f"{method} {describe(url)}", timeout)
        res._read_timeout = timeout
    try:
        yield res
    finally:
        res._abandon()


async def upgrade(
    url: str | Mapping[str, Any],
    *,
    headers: HeadersArg,
    method: str = "GET",
    timeout: float | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[ClientResponse, Socket | None, bytes]:
    """Send an upgrade request on a new connection: the way out of HTTP.

    ``url`` may use ``http``/``https`` or ``ws``/``wss``; an ``https``/``wss``
    URL is TLS with ``ssl_context`` (default ``ssl.create_default_context()``).

    ``headers`` must carry the upgrade itself (``Connection: Upgrade``,
    ``Upgrade: websocket``, ``Sec-WebSocket-Key``, ...); ``Host`` is added.
    The connection is never pooled.

    Returns ``(response, sock, leftover)``:

    - on ``101 Switching Protocols``: the 101 response (headers read, no body),
      the connection as a :class:`trionet.net.Socket` now owned by the caller,
      and the bytes the server sent after the 101 head (already the new
      protocol: feed them to it before reading from ``sock``);
    - on any other status: the response with its body read (its first
      64 KiB, for one second at most: it explains the refusal), ``None`` and
      ``b""`` (the connection is closed).

    Raises ConnectError, TLSError, ProtocolError, TimeoutError as :func:`request`.
    """
    prepared = prepare_upgrade(url, method, headers, ssl_context)
    with trio.move_on_after(float("inf") if timeout is None else timeout):
        return await switch_protocols(prepared)
    raise _timed_out(f"upgrade {describe(url)}", timeout)


async def connect_tunnel(
    proxy_url: str | Mapping[str, Any],
    target: str,
    *,
    headers: HeadersArg = None,
    timeout: float | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Socket:
    """Open a tunnel to ``target`` (``"host:port"``) through an HTTP proxy's CONNECT.

    Node's client ``'connect'`` event as one await: returns the tunnel as a
    :class:`trionet.net.Socket` (bytes the proxy sent after its 2xx come
    first). Credentials in ``proxy_url`` go as ``Proxy-Authorization: Basic``.

    Raises:
      ConnectError: the proxy could not be reached or answered other than 2xx
        (the message gives its status line).
    """
    origin, connect = prepare_tunnel(proxy_url, target, headers, ssl_context)
    with trio.move_on_after(float("inf") if timeout is None else timeout):
        return await open_tunnel(origin, connect)
    raise _timed_out(f"CONNECT {target} via {origin.name}", timeout)


def _resolve_agent(agent: AgentArg) -> Agent | None:
    if agent is None or agent is True:
        return global_agent
    if agent is False:
        return None
    assert isinstance(agent, Agent)
    return agent


def _timed_out(what: str, timeout: float | None) -> TimeoutError:
    return TimeoutError(f"{what} timed out after {timeout}s")
