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
together) and, for a small response, one read fed whole to h11.

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
- :mod:`trionet.ws`: ``res, sock, leftover = await upgrade(url, headers=...,
  timeout=None, ssl_context=None)`` (``ws://``/``wss://`` URLs accepted): the
  101 response, the raw :class:`trionet.net.Socket` and the bytes already
  read past the 101 head; on a refusal ``(response with body, None, b"")``.

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
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json as _json
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit

import h11
import trio

from .._errors import ConnectError, ConnectionLost, MessageSizeError, ProtocolError, TimeoutError
from .._pool import Slot
from .._stream import Socket
from ..agent import Agent
from ._client_conn import END as _END
from ._client_conn import HTTPConnection, Origin, check_framing, open_connection

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

#: Methods a request may be repeated with (RFC 9110 §9.2.2), so a request that
#: met a stale keep-alive connection is sent again on a new one.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})

#: Methods that carry a body by convention; sent without one they get
#: ``Content-Length: 0`` so servers don't wait for one.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

DEFAULT_PORTS = {"http": 80, "https": 443}

#: A request body: bytes or str sent with Content-Length, or an async iterable
#: of chunks sent with Transfer-Encoding: chunked.
Body = bytes | bytearray | memoryview | str | AsyncIterable[bytes | str] | None

#: Request headers: a mapping or pairs; a list value sends the header repeatedly.
HeadersArg = Mapping[str, Any] | Iterable[tuple[str | bytes, Any]] | None

#: ``agent=``: an Agent, None for :data:`global_agent`, False for no pool.
AgentArg = Agent | None | bool


class Headers(dict[str, str]):
    """Response headers as Node's ``res.headers``: lower-case keys, any-case lookup.

    Repeated headers are joined with ``", "`` (``set-cookie`` with ``"\\n"``;
    :attr:`ClientResponse.raw_headers` keeps every line).
    """

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


class ClientResponse:
    """A response: status line and headers, and the body once read.

    From :func:`request` the body is already read into :attr:`body`. From
    :func:`stream` it is not: ``await res.read()`` or ``async for chunk in res``.
    """

    __slots__ = (
        "_agent",
        "_complete",
        "_conn",
        "_headers",
        "_raw",
        "_read_timeout",
        "_slot",
        "body",
        "http_version",
        "method",
        "reason",
        "reused_socket",
        "status",
    )

    def __init__(
        self,
        event: h11.Response | h11.InformationalResponse,
        conn: HTTPConnection | None,
        agent: Agent | None,
        slot: Slot | None,
        method: str,
    ) -> None:
        #: The status code, e.g. 200 (Node's ``statusCode``).
        self.status: int = event.status_code
        #: The reason phrase, e.g. ``"OK"`` (Node's ``statusMessage``).
        self.reason: str = event.reason.decode("latin-1")
        #: ``"1.1"`` or ``"1.0"``.
        self.http_version: str = event.http_version.decode("ascii")
        #: The body; ``b""`` until read when streaming.
        self.body = b""
        self.method = method
        #: True when the request went over a kept-alive connection (Node's ``reusedSocket``).
        self.reused_socket = slot.reused if slot is not None else False
        self._raw = event.headers
        self._headers: Headers | None = None
        self._conn = conn
        self._agent = agent
        self._slot = slot
        self._complete = conn is None
        self._read_timeout: float | None = None

    def __repr__(self) -> str:
        return f"<ClientResponse {self.status} {self.reason}>"

    # -- headers -------------------------------------------------------------------
    @property
    def headers(self) -> Headers:
        """Lower-case names to values, as Node's ``res.headers``."""
        if self._headers is None:
            headers = Headers()
            for name, value in self._raw:
                key = name.decode("latin-1")
                text = value.decode("latin-1")
                if key in headers:
                    sep = "\n" if key == "set-cookie" else ", "
                    text = dict.__getitem__(headers, key) + sep + text
                dict.__setitem__(headers, key, text)
            self._headers = headers
        return self._headers

    @property
    def headers_distinct(self) -> dict[str, list[str]]:
        """Lower-case names to every value, one per header line (Node's ``headersDistinct``)."""
        result: dict[str, list[str]] = {}
        for name, value in self._raw:
            result.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
        return result

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """Every header line as sent, name case kept (Node's ``rawHeaders``, paired)."""
        return [(bytes(name), bytes(value)) for name, value in self._raw.raw_items()]

    # -- body ------------------------------------------------------------------------
    def text(self, encoding: str | None = None) -> str:
        """The body decoded with ``encoding``, else the Content-Type charset, else UTF-8."""
        if encoding is None:
            encoding = "utf-8"
            for param in self.headers.get("content-type", "").split(";")[1:]:
                name, _, value = param.strip().partition("=")
                if name.lower() == "charset" and value:
                    encoding = value.strip('"')
        return self.body.decode(encoding, errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return _json.loads(self.body)

    async def read(self) -> bytes:
        """Read the rest of the body, store it in :attr:`body` and return it."""
        if self._complete:
            return self.body
        chunks = []
        while (chunk := await self._next_chunk()) is not None:
            chunks.append(chunk)
        self.body = b"".join(chunks)
        return self.body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """Yield the body in chunks as they arrive."""
        while (chunk := await self._next_chunk()) is not None:
            yield chunk

    async def aclose(self) -> None:
        """Stop reading: an unfinished response closes its connection."""
        self._abandon()
        await trio.lowlevel.checkpoint()

    async def _next_chunk(self) -> bytes | None:
        """The next piece of the body, or None at its end (which frees the connection)."""
        if self._complete:
            return None
        conn = self._conn
        assert conn is not None
        try:
            if self._read_timeout is None:
                event = await conn.next_event()
            else:
                with trio.move_on_after(self._read_timeout) as scope:
                    event = await conn.next_event()
                if scope.cancelled_caught:
                    raise TimeoutError(
                        f"no data from {conn.origin.name} for {self._read_timeout}s"
                    )
            while True:
                kind = type(event)
                if kind is h11.Data:
                    return bytes(event.data)
                if kind is h11.EndOfMessage:
                    self._finish()
                    return None
                event = await conn.next_event()
        except BaseException:
            self._abandon()
            raise

    async def _read_all(self, max_body_size: int | None = None) -> None:
        """Read the whole body (the :func:`request` path: no per-chunk bytes copies).

        Over ``max_body_size``: :class:`MessageSizeError`, raised before the
        body is read when Content-Length declares it, else as soon as the
        bytes received pass the limit; the connection is closed either way.
        """
        conn = self._conn
        assert conn is not None
        chunks = []
        try:
            if max_body_size is None:
                while True:
                    event = await conn.next_event()
                    kind = type(event)
                    if kind is h11.Data:
                        chunks.append(event.data)
                    elif kind is h11.EndOfMessage:
                        break
            else:
                declared = self._declared_length()
                if declared is not None and declared > max_body_size:
                    raise self._too_large(max_body_size, f"declares {declared} bytes")
                received = 0
                while True:
                    event = await conn.next_event()
                    kind = type(event)
                    if kind is h11.Data:
                        received += len(event.data)
                        if received > max_body_size:
                            raise self._too_large(max_body_size, f"passed {received} bytes")
                        chunks.append(event.data)
                    elif kind is h11.EndOfMessage:
                        break
        except BaseException:
            self._abandon()
            raise
        self.body = b"".join(chunks)
        self._finish()

    def _declared_length(self) -> int | None:
        """The body length Content-Length declares, when the response has a body."""
        if self.method == "HEAD" or self.status in (204, 304):
            return None
        value = self._raw_header(b"content-length")
        return int(value) if value is not None else None  # h11 checked it is digits

    def _too_large(self, limit: int, how: str) -> MessageSizeError:
        conn = self._conn
        name = conn.origin.name if conn is not None else "the server"
        return MessageSizeError(
            f"response body from {name} {how}, over max_body_size={limit}; "
            "read large bodies in pieces with trionet.http.stream()"
        )

    # -- the connection's fate ---------------------------------------------------------
    def _finish(self) -> None:
        """The body ended: give the connection back if it can carry another exchange."""
        self._complete = True
        conn = self._conn
        assert conn is not None
        h = conn.h11
        extra = h.trailing_data[0]
        if extra:
            self._drop()
            raise ProtocolError(
                f"response from {conn.origin.name} is longer than it declared: "
                f"{len(extra)} bytes after its end"
            )
        if h.our_state is not h11.DONE or h.their_state is not h11.DONE:
            self._drop()
            return
        if conn.requests == 1:
            # The server's idle timeout is per server, not per response: read
            # its Keep-Alive hint once per connection.
            hint = self._raw_header(b"keep-alive")
            if hint is not None:
                conn.keep_alive_hint = _keep_alive_timeout(hint)
        if self._agent is None or self._slot is None:
            self._drop()
        else:
            self._agent.release(self._slot)
        self._conn = None

    def _abandon(self) -> None:
        """The body was not read to the end: the connection cannot be reused."""
        if not self._complete:
            self._complete = True
            self._drop()

    def _drop(self) -> None:
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        if self._agent is not None and self._slot is not None:
            self._agent.discard(self._slot)
        else:
            conn.close()

    def _raw_header(self, name: bytes) -> bytes | None:
        for key, value in self._raw:
            if key == name:
                return bytes(value)
        return None


def _keep_alive_timeout(value: bytes) -> float | None:
    """The ``timeout=N`` of a ``Keep-Alive`` header, in seconds."""
    for part in value.split(b","):
        name, _, number = part.strip().partition(b"=")
        if name.strip().lower() == b"timeout":
            try:
                return float(number.strip())
            except ValueError:
                return None
    return None


# -- preparing a request -------------------------------------------------------------------
class _Target(NamedTuple):
    scheme: str
    host: str
    port: int
    socket_path: str | None
    path: bytes
    host_header: bytes
    authorization: bytes | None


@functools.lru_cache(maxsize=512)
def _parse_url(url: str) -> _Target:
    """Split an ``http``/``https`` URL into what a request needs (cached: URLs repeat)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} in {url!r} (http or https)")
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in URL {url!r}")
    port = parts.port or DEFAULT_PORTS[scheme]
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    auth = None
    if parts.username is not None:
        auth = _basic_auth(f"{unquote(parts.username)}:{unquote(parts.password or '')}")
    return _Target(
        scheme, host, port, None, _encode_path(path), _host_header(host, port, scheme), auth
    )


def _target_from_options(options: Mapping[str, Any]) -> _Target:
    """Node's ``http.request(options)`` dict: hostname, port, path, auth, socket_path."""
    protocol = str(options.get("protocol", "http:")).rstrip(":").lower()
    if protocol not in DEFAULT_PORTS:
        raise ValueError(f"unsupported protocol {options.get('protocol')!r}")
    host = str(options.get("hostname") or options.get("host") or "localhost")
    port = int(options.get("port") or DEFAULT_PORTS[protocol])
    socket_path = options.get("socket_path", options.get("socketPath"))
    auth = options.get("auth")
    return _Target(
        protocol,
        host,
        port,
        str(socket_path) if socket_path is not None else None,
        _encode_path(str(options.get("path") or "/")),
        _host_header(host, port, protocol),
        _basic_auth(str(auth)) if auth is not None else None,
    )


def _encode_path(path: str) -> bytes:
    """The request target as bytes; non-ASCII characters are percent-encoded (UTF-8)."""
    if path.isascii():
        return path.encode("ascii")
    return quote(path, safe="!#$%&'()*+,/:;=?@[]~").encode("ascii")


def _host_header(host: str, port: int, scheme: str) -> bytes:
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    if port == DEFAULT_PORTS[scheme]:
        return host.encode("idna")
    return f"{host}:{port}".encode("idna")


def _basic_auth(credentials: str) -> bytes:
    return b"Basic " + base64.b64encode(credentials.encode())


def _header_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("latin-1")


def _header_list(headers: HeadersArg) -> list[tuple[bytes, bytes]]:
    if headers is None:
        return []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    result: list[tuple[bytes, bytes]] = []
    for name, value in pairs:
        raw_name = name if isinstance(name, bytes) else name.encode("ascii")
        if isinstance(value, list | tuple):
            result.extend((raw_name, _header_bytes(v)) for v in value)
        else:
            result.append((raw_name, _header_bytes(value)))
    return result


_default_context: ssl.SSLContext | None = None


def _default_ssl_context() -> ssl.SSLContext:
    global _default_context
    if _default_context is None:
        _default_context = ssl.create_default_context()
    return _default_context


class _Prepared:
    """Everything about one request that does not change on a retry."""

    __slots__ = ("body", "body_iter", "event", "method", "origin")

    def __init__(
        self,
        url: str | Mapping[str, Any],
        method: str,
        headers: HeadersArg,
        body: Body,
        agent: Agent | None,
        keep_alive: bool,
        expect_continue: bool,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        if isinstance(url, str):
            target = _parse_url(url)
            extra: HeadersArg = None
        else:
            target = _target_from_options(url)
            method = str(url.get("method", method)) if method == "GET" else method
            extra = url.get("headers")
        method = method.upper()
        self.method = method
        context = None
        if target.scheme == "https":
            context = ssl_context or (agent.ssl_context if agent is not None else None)
            context = context or _default_ssl_context()
        self.origin = Origin(target.scheme, target.host, target.port, target.socket_path, context)

        header_list = _header_list(extra) + _header_list(headers)
        names = {name.lower() for name, _ in header_list} if header_list else set()
        if b"host" not in names:
            header_list.insert(0, (b"host", target.host_header))
        if b"connection" not in names:
            header_list.append((b"connection", b"keep-alive" if keep_alive else b"close"))
        if target.authorization is not None and b"authorization" not in names:
            header_list.append((b"authorization", target.authorization))
        if expect_continue:
            header_list.append((b"expect", b"100-continue"))

        self.body: bytes | None = None
        self.body_iter: AsyncIterable[bytes | str] | None = None
        if body is None:
            self.body = b""
            if method in BODY_METHODS and b"content-length" not in names:
                header_list.append((b"content-length", b"0"))
        elif isinstance(body, bytes | bytearray | memoryview | str):
            self.body = body.encode() if isinstance(body, str) else bytes(body)
            if b"content-length" not in names:
                header_list.append((b"content-length", str(len(self.body)).encode()))
        else:
            self.body_iter = body
            if b"transfer-encoding" not in names and b"content-length" not in names:
                header_list.append((b"transfer-encoding", b"chunked"))
        try:
            self.event = h11.Request(method=method, target=target.path, headers=header_list)
        except h11.LocalProtocolError as exc:
            # A header value with CR/LF, a target with spaces, ...: h11 refuses
            # to send it (no header injection), and so do we, as Node does.
            raise ValueError(f"invalid request: {exc}") from None

    @property
    def retryable(self) -> bool:
        return self.method in IDEMPOTENT_METHODS and self.body_iter is None


#: Requests without headers or body, by URL and options: h11 events are
#: immutable, so one serves every repeat (building it costs ~10 us).
_plain_cache: dict[tuple[object, ...], _Prepared] = {}
_PLAIN_CACHE_SIZE = 512


def _prepared_plain(
    url: str,
    method: str,
    agent: Agent | None,
    keep_alive: bool,
    expect_continue: bool,
    ssl_context: ssl.SSLContext | None,
) -> _Prepared:
    agent_context = agent.ssl_context if agent is not None else None
    key = (url, method, keep_alive, expect_continue, ssl_context, agent_context)
    prepared = _plain_cache.get(key)
    if prepared is None:
        if len(_plain_cache) >= _PLAIN_CACHE_SIZE:
            _plain_cache.clear()
        prepared = _Prepared(
            url, method, None, None, agent, keep_alive, expect_continue, ssl_context
        )
        _plain_cache[key] = prepared
    return prepared


# -- the exchange --------------------------------------------------------------------------
async def _send_and_receive_head(
    conn: HTTPConnection, prepared: _Prepared, expect_continue: bool
) -> h11.Response:
    """Send the request and read the final response head (see ``HTTPConnection.exchange``)."""
    return await conn.exchange(
        prepared.event, prepared.body, prepared.body_iter, expect_continue
    )


def _resolve_agent(agent: AgentArg) -> Agent | None:
    if agent is None or agent is True:
        return global_agent
    if agent is False:
        return None
    assert isinstance(agent, Agent)
    return agent


async def _open(
    url: str | Mapping[str, Any],
    method: str,
    headers: HeadersArg,
    body: Body,
    agent: AgentArg,
    expect_continue: bool,
    ssl_context: ssl.SSLContext | None,
) -> ClientResponse:
    """Send one request and read its response head, retrying a stale connection once."""
    pool = _resolve_agent(agent)
    keep_alive = pool is not None and pool.keep_alive
    if headers is None and body is None and isinstance(url, str):
        prepared = _prepared_plain(url, method, pool, keep_alive, expect_continue, ssl_context)
    else:
        prepared = _Prepared(
            url, method, headers, body, pool, keep_alive, expect_continue, ssl_context
        )
    fresh = False
    while True:
        slot: Slot | None = None
        if pool is None:
            conn = await open_connection(prepared.origin)
        else:
            slot = await pool.acquire(prepared.origin, fresh=fresh)
            conn = slot.conn
        try:
            head = await _send_and_receive_head(conn, prepared, expect_continue)
        except ConnectionLost as exc:
            _drop(pool, slot, conn)
            if slot is None or not slot.reused:
                raise
            if not prepared.retryable:
                raise ConnectError(
                    f"{prepared.origin.name} closed a kept-alive connection as "
                    f"{prepared.method} was sent; not retried (not idempotent)"
                ) from exc
            if fresh:
                raise
            fresh = True
            continue
        except BaseException:
            _drop(pool, slot, conn)
            raise
        return ClientResponse(head, conn, pool, slot, prepared.method)


def _drop(pool: Agent | None, slot: Slot | None, conn: HTTPConnection) -> None:
    if pool is not None and slot is not None:
        pool.discard(slot)
    else:
        conn.close()


def _timed_out(what: str, timeout: float | None) -> TimeoutError:
    return TimeoutError(f"{what} timed out after {timeout}s")


# -- the public calls ------------------------------------------------------------------------
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
    if timeout is None:
        res = await _open(url, method, headers, body, agent, expect_continue, ssl_context)
        await res._read_all(max_body_size)
        return res
    with trio.move_on_after(timeout):
        res = await _open(url, method, headers, body, agent, expect_continue, ssl_context)
        await res._read_all(max_body_size)
        return res
    raise _timed_out(f"{method} {_describe(url)}", timeout)


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
      ConnectError, ConnectionLost, TLSError, ProtocolError, TimeoutError,
      PoolTimeout, ValueError: as :func:`request`, while getting the head;
      ProtocolError and TimeoutError also while reading the body.
    """
    if timeout is None:
        res = await _open(url, method, headers, body, agent, expect_continue, ssl_context)
    else:
        with trio.move_on_after(timeout) as scope:
            res = await _open(url, method, headers, body, agent, expect_continue, ssl_context)
        if scope.cancelled_caught:
            raise _timed_out(f"{method} {_describe(url)}", timeout)
        res._read_timeout = timeout
    try:
        yield res
    finally:
        res._abandon()


def _describe(url: str | Mapping[str, Any]) -> str:
    if isinstance(url, str):
        return url
    return f"{url.get('hostname') or url.get('host')}:{url.get('port')}{url.get('path', '/')}"


async def upgrade(
    url: str | Mapping[str, Any],
    *,
    headers: HeadersArg,
    method: str = "GET",
    timeout: float | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[ClientResponse, Socket | None, bytes]:
    """Send an upgrade request on a new connection; the WebSocket client's way in.

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
    - on any other status: the response with its body read, ``None`` and
      ``b""`` (the connection is closed).

    Raises ConnectError, TLSError, ProtocolError, TimeoutError as :func:`request`.
    """
    with trio.move_on_after(float("inf") if timeout is None else timeout):
        return await _switch_protocols(_http_url(url), method, headers, ssl_context)
    raise _timed_out(f"upgrade {_describe(url)}", timeout)


def _http_url(url: str | Mapping[str, Any]) -> str | Mapping[str, Any]:
    """``ws://`` and ``wss://`` URLs name the same origins as ``http://`` and ``https://``."""
    if isinstance(url, str):
        lowered = url[:6].lower()
        if lowered.startswith("ws://"):
            return "http://" + url[5:]
        if lowered.startswith("wss://"):
            return "https://" + url[6:]
    return url


async def _switch_protocols(
    url: str | Mapping[str, Any],
    method: str,
    headers: HeadersArg,
    ssl_context: ssl.SSLContext | None,
) -> tuple[ClientResponse, Socket | None, bytes]:
    """Send a request that asks to switch protocols; return the raw connection if it did."""
    prepared = _Prepared(url, method, headers, None, None, True, False, ssl_context)
    conn = await open_connection(prepared.origin)
    try:
        h = conn.h11
        await conn.send(h.send(prepared.event) + h.send(_END))
        event = await conn.next_event()
        while type(event) is h11.InformationalResponse and event.status_code != 101:
            event = await conn.next_event()
        if h.their_state is h11.SWITCHED_PROTOCOL:
            res = ClientResponse(event, None, None, None, prepared.method)
            leftover = bytes(h.trailing_data[0])
            return res, Socket(conn.stream, allow_half_open=False), leftover
        if type(event) is not h11.Response:
            raise ProtocolError(f"unexpected {event!r} from {conn.origin.name}")
        check_framing(event, conn.origin)
        res = ClientResponse(event, conn, None, None, prepared.method)
        res._complete = False
        await res._read_all()
        return res, None, b""
    except BaseException:
        conn.close()
        raise


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
    base = _parse_url(proxy_url) if isinstance(proxy_url, str) else _target_from_options(proxy_url)
    header_list = [(b"host", target.encode("idna")), *_header_list(headers)]
    if base.authorization is not None:
        header_list.append((b"proxy-authorization", base.authorization))
    context = (ssl_context or _default_ssl_context()) if base.scheme == "https" else None
    origin = Origin(base.scheme, base.host, base.port, base.socket_path, context)
    event = h11.Request(method="CONNECT", target=target, headers=header_list)
    with trio.move_on_after(float("inf") if timeout is None else timeout):
        conn = await open_connection(origin)
        try:
            h = conn.h11
            await conn.send(h.send(event) + h.send(_END))
            response = await conn.next_event()
            while type(response) is h11.InformationalResponse:
                response = await conn.next_event()
        except BaseException:
            conn.close()
            raise
        if h.their_state is not h11.SWITCHED_PROTOCOL:
            conn.close()
            raise ConnectError(
                f"proxy {origin.name} refused CONNECT {target}: "
                f"{response.status_code} {response.reason.decode('latin-1')}"
            )
        leftover = bytes(h.trailing_data[0])
        tunnel: trio.abc.Stream = conn.stream
        if leftover:
            tunnel = _Replay(tunnel, leftover)
        return Socket(tunnel, allow_half_open=False)
    raise _timed_out(f"CONNECT {target} via {origin.name}", timeout)


class _Replay(trio.abc.HalfCloseableStream):
    """A stream that first returns bytes already read from it, then reads on."""

    def __init__(self, transport_stream: trio.abc.Stream, buffered: bytes) -> None:
        #: Named as trio.SSLStream's, so ``raw_socket()`` finds the OS socket.
        self.transport_stream = transport_stream
        self._buffered = buffered

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._buffered:
            size = len(self._buffered) if max_bytes is None else max_bytes
            data, self._buffered = self._buffered[:size], self._buffered[size:]
            await trio.lowlevel.checkpoint()
            return bytes(data)
        return bytes(await self.transport_stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        if isinstance(self.transport_stream, trio.abc.HalfCloseableStream):
            await self.transport_stream.send_eof()

    async def aclose(self) -> None:
        await self.transport_stream.aclose()
