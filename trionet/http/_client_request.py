"""Preparing a client request: headers, body framing and the h11 event, no I/O.

Everything about a request that a retry on a new connection does not change
is computed once, here, into a :class:`_Prepared`; requests without headers or
body are cached by URL (h11 events are immutable, so one serves every repeat).
Where the request goes (URL or Node's options) is :mod:`trionet._url`'s job,
shared with the WebSocket client. Sending is :mod:`trionet.http._client_exchange`'s
and :mod:`trionet.http._client_upgrade`'s: kept apart so that each module stays
readable on its own and this one is testable without sockets.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import h11

from .._url import ANY_SCHEMES, HTTP_SCHEMES, parse_options, parse_target, parse_url
from ._client_conn import END, WATCHED_BODY_SIZE, Origin
from ._client_reader import AVAILABLE

if TYPE_CHECKING:
    from ..agent import Agent

__all__ = [
    "BODY_METHODS",
    "IDEMPOTENT_METHODS",
    "Body",
    "HeadersArg",
    "prepare",
    "prepare_tunnel",
    "prepare_upgrade",
]

#: Methods a request may be repeated with (RFC 9110 §9.2.2), so a request that
#: met a stale keep-alive connection is sent again on a new one.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})

#: Methods that carry a body by convention; sent without one they get
#: ``Content-Length: 0`` so servers don't wait for one.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

#: A request body: bytes or str sent with Content-Length, or an async iterable
#: of chunks sent with Transfer-Encoding: chunked.
Body = bytes | bytearray | memoryview | str | AsyncIterable[bytes | str] | None

#: Request headers: a mapping or pairs; a list value sends the header repeatedly.
HeadersArg = Mapping[str, Any] | Iterable[tuple[str | bytes, Any]] | None


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

    __slots__ = (
        "body",
        "body_iter",
        "event",
        "expect_continue",
        "keep_alive",
        "method",
        "origin",
        "wire",
    )

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
        *,
        schemes: frozenset[str] = HTTP_SCHEMES,
    ) -> None:
        if isinstance(url, str):
            target = parse_url(url, schemes)
            extra: HeadersArg = None
        else:
            target = parse_options(url, schemes)
            method = str(url.get("method", method)) if method == "GET" else method
            extra = url.get("headers")
        method = method.upper()
        self.method = method
        #: Send the body only after ``100 Continue`` (``Expect`` is in the head).
        self.expect_continue = expect_continue
        context = None
        if target.secure:
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
        #: The whole request as h11 writes it, when the exchange may read the
        #: response without an h11.Connection (:mod:`._client_reader`); None
        #: for upgrades, CONNECT, 100-continue and bodies sent by a task.
        self.wire: bytes | None = None
        #: h11's verdict: the connection may carry another request after this one.
        self.keep_alive = keep_alive
        if (
            AVAILABLE
            and self.body is not None
            and len(self.body) <= WATCHED_BODY_SIZE
            and not expect_continue
            and method != "CONNECT"
            and b"upgrade" not in names
        ):
            writer = h11.Connection(h11.CLIENT)
            wire = writer.send(self.event) or b""
            if self.body:
                wire += writer.send(h11.Data(data=self.body)) or b""
            self.wire = wire + (writer.send(END) or b"")
            self.keep_alive = writer.our_state is h11.DONE

    @property
    def retryable(self) -> bool:
        return self.method in IDEMPOTENT_METHODS and self.body_iter is None


def prepare(
    url: str | Mapping[str, Any],
    method: str,
    headers: HeadersArg,
    body: Body,
    agent: Agent | None,
    expect_continue: bool,
    ssl_context: ssl.SSLContext | None,
) -> _Prepared:
    """The request for ``request``/``stream``; a plain one comes from the cache.

    Raises:
      ValueError: the URL, a header or the method cannot be sent.
    """
    keep_alive = agent is not None and agent.keep_alive
    if headers is None and body is None and isinstance(url, str):
        return _prepared_plain(url, method, agent, keep_alive, expect_continue, ssl_context)
    return _Prepared(url, method, headers, body, agent, keep_alive, expect_continue, ssl_context)


def prepare_upgrade(
    url: str | Mapping[str, Any],
    method: str,
    headers: HeadersArg,
    ssl_context: ssl.SSLContext | None,
    *,
    schemes: frozenset[str] = ANY_SCHEMES,
) -> _Prepared:
    """A request asking to switch protocols: ``ws``/``wss`` URLs too, no body, no pool.

    A WebSocket URL names the same origin as its ``http``/``https`` twin
    (RFC 6455 §3); ``headers`` carry the upgrade itself. ``schemes``: the
    WebSocket client accepts its own only.

    Raises:
      ValueError: the URL or a header cannot be sent.
    """
    return _Prepared(url, method, headers, None, None, True, False, ssl_context, schemes=schemes)


def prepare_tunnel(
    proxy_url: str | Mapping[str, Any],
    target: str,
    headers: HeadersArg,
    ssl_context: ssl.SSLContext | None,
) -> tuple[Origin, h11.Request]:
    """The proxy to connect to and the ``CONNECT target`` request for it (RFC 9110 §9.3.6).

    Credentials in ``proxy_url`` go as ``Proxy-Authorization`` (RFC 9110 §11.7.2).

    Raises:
      ValueError: the proxy URL cannot be used.
    """
    proxy = parse_target(proxy_url)
    header_list = [(b"host", target.encode("idna")), *_header_list(headers)]
    if proxy.authorization is not None:
        header_list.append((b"proxy-authorization", proxy.authorization))
    context = (ssl_context or _default_ssl_context()) if proxy.secure else None
    origin = Origin(proxy.scheme, proxy.host, proxy.port, proxy.socket_path, context)
    return origin, h11.Request(method="CONNECT", target=target, headers=header_list)


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
