"""Preparing a client request: URL or Node's options, headers and body framing, no I/O.

Everything about a request that a retry on a new connection does not change
is computed once, here, into a :class:`_Prepared`; requests without headers or
body are cached by URL (h11 events are immutable, so one serves every repeat).
Kept apart from the exchange code (:mod:`trionet.http._client`) so that each
module stays readable on its own.
"""

from __future__ import annotations

import base64
import functools
import ssl
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit

import h11

from ._client_conn import Origin

if TYPE_CHECKING:
    from ..agent import Agent

__all__ = [
    "BODY_METHODS",
    "DEFAULT_PORTS",
    "IDEMPOTENT_METHODS",
    "Body",
    "HeadersArg",
]

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
