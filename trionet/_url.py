"""Where a client request goes: a URL or Node's options dict, parsed once, without I/O.

    target = parse_url("https://user:pw@Bücher.example:8443/bücher?q=1")
    target.host           # "xn--bcher-kva.example"   (the IDNA step)
    target.port           # 8443
    target.path           # b"/b%C3%BCcher?q=1"        (the request target, ASCII)
    target.host_header    # b"xn--bcher-kva.example:8443"
    target.authorization  # b"Basic dXNlcjpwdw=="

One parser for every client: the HTTP client (``http``/``https``), its upgrade
path and the WebSocket client (``ws``/``wss``, RFC 6455 §3: "ws" defaults to
port 80 and "wss" to 443, the same origins as "http" and "https"). Each caller
says which schemes it accepts, so ``trionet.http.request("ws://...")`` is still
refused and ``ws.connect("http://...")`` too. Pure: no sockets, no Trio, no
trionet imports, so it sits below every layer that needs it.

What a URL becomes, and why:

- the host is lower-cased (:func:`urllib.parse.urlsplit` does it) and
  converted to its ASCII form with Python's ``idna`` codec, once, here: the
  DNS lookup, the TLS server name, the ``Host`` header and the pool key all
  see the same name, as with Node, whose WHATWG ``URL`` turns ``bücher.example``
  into ``xn--bcher-kva.example`` (https://url.spec.whatwg.org/#concept-host-parser,
  "domain to ASCII"). Rejected: the third-party ``idna`` package (IDNA 2008,
  UTS #46): one more dependency for the rare non-ASCII host; the standard
  codec (IDNA 2003) is what ``socket.getaddrinfo`` itself applies to a
  ``str`` host.
- an IPv6 literal loses its brackets for connecting and gets them back in the
  ``Host`` header (RFC 9110 §7.2, ``uri-host`` is RFC 3986's ``IP-literal``);
- the default port of the scheme is left out of the ``Host`` header (RFC 9110
  §7.2: "the port ... MAY be omitted if it is the default"; curl and Node omit
  it too);
- a path with non-ASCII characters is percent-encoded as UTF-8 (RFC 3986
  §2.5), as Node's WHATWG ``URL`` does; ASCII is sent as given, so a space or
  a control character is refused later by h11 (no request smuggling), as
  Node refuses it in ``options.path`` (``ERR_UNESCAPED_CHARACTERS``);
- user information becomes ``Authorization: Basic`` (RFC 7617), percent-
  decoded first, as Node sends ``url.username``/``url.password``; the
  fragment is dropped (RFC 9110 §4.2.4, never sent);
- a WebSocket URL with a fragment is refused: RFC 6455 §3, "Fragment
  identifiers are meaningless in the context of WebSocket URIs and MUST NOT
  be used on these URIs" (a ``#`` in it is written ``%23``). Node's ws throws
  ``SyntaxError: The URL contains a fragment identifier``; an empty one
  (``ws://h/#``) passes, as there, since WHATWG's ``url.hash`` is then empty.

Rejected: a parser of our own. ``urlsplit`` is the standard library's, fast
enough behind a cache (URLs repeat), and the rules above are the few places
where HTTP wants more than it gives.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "ANY_SCHEMES",
    "DEFAULT_PORTS",
    "HTTP_SCHEMES",
    "SECURE_SCHEMES",
    "WS_SCHEMES",
    "Target",
    "basic_auth",
    "describe",
    "encode_path",
    "parse_options",
    "parse_target",
    "parse_url",
]

#: Default ports: RFC 9110 §4.2.1 (http, 80) and §4.2.2 (https, 443); RFC 6455
#: §3 (ws, 80; wss, 443).
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

#: Schemes whose connection is TLS.
SECURE_SCHEMES = frozenset({"https", "wss"})

#: What the HTTP client's ``request`` and ``stream`` accept.
HTTP_SCHEMES = frozenset({"http", "https"})

#: What the WebSocket client accepts.
WS_SCHEMES = frozenset({"ws", "wss"})

#: What the upgrade path accepts: a WebSocket URL names an HTTP origin.
ANY_SCHEMES = HTTP_SCHEMES | WS_SCHEMES

#: Characters a non-ASCII path keeps as they are when it is percent-encoded:
#: RFC 3986's reserved and unreserved ones, and ``%`` (already-encoded bytes).
_PATH_SAFE = "!#$%&'()*+,/:;=?@[]~"


class Target(NamedTuple):
    """One request's destination, as the wire needs it."""

    #: Lower-case, one of :data:`DEFAULT_PORTS`.
    scheme: str
    #: The ASCII host to connect to (IDNA-encoded, IPv6 without brackets).
    host: str
    port: int
    #: A Unix socket to connect to instead of ``host:port`` (Node's ``socketPath``).
    socket_path: str | None
    #: The request target: path and query, ASCII.
    path: bytes
    #: The ``Host`` header's value: ``host``, bracketed if IPv6, ``:port`` unless default.
    host_header: bytes
    #: ``Basic ...`` from the URL's user information or Node's ``auth``, else None.
    authorization: bytes | None

    @property
    def secure(self) -> bool:
        """True for ``https`` and ``wss``: the connection is TLS."""
        return self.scheme in SECURE_SCHEMES


def parse_target(
    url: str | Mapping[str, Any], schemes: frozenset[str] = HTTP_SCHEMES
) -> Target:
    """A URL string (:func:`parse_url`) or Node's options dict (:func:`parse_options`)."""
    if isinstance(url, str):
        return parse_url(url, schemes)
    return parse_options(url, schemes)


@functools.lru_cache(maxsize=512)
def parse_url(url: str, schemes: frozenset[str] = HTTP_SCHEMES) -> Target:
    """Split a URL into what a request needs (cached: a client repeats its URLs).

    Raises:
      ValueError: a scheme not in ``schemes``, no host, a bad port or host, a
        fragment in a WebSocket URL.
    """
    parts = urlsplit(url)
    scheme = parts.scheme  # urlsplit lower-cases it
    if scheme not in schemes:
        raise ValueError(
            f"unsupported URL scheme {parts.scheme!r} in {url!r} ({' or '.join(sorted(schemes))})"
        )
    hostname = parts.hostname
    if not hostname:
        raise ValueError(f"no host in URL {url!r}")
    if parts.fragment and scheme in WS_SCHEMES:
        raise ValueError(f"a WebSocket URL has no fragment (RFC 6455 §3): {url!r}")
    try:
        port = parts.port  # checks the range
    except ValueError as exc:
        raise ValueError(f"bad port in URL {url!r}: {exc}") from None
    if port is None:
        port = DEFAULT_PORTS[scheme]
    host = _ascii_host(hostname, url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    auth = None
    if parts.username is not None:
        auth = basic_auth(f"{unquote(parts.username)}:{unquote(parts.password or '')}")
    header = _host_header(host, port, scheme)
    return Target(scheme, host, port, None, encode_path(path), header, auth)


def parse_options(
    options: Mapping[str, Any], schemes: frozenset[str] = HTTP_SCHEMES
) -> Target:
    """Node's ``http.request(options)`` dict: what it says about the destination.

    Keys, with Node's defaults: ``protocol`` (``"http:"``; ``"ws:"`` where only
    WebSocket schemes are accepted), ``hostname`` or ``host``
    (``"localhost"``), ``port`` (the scheme's), ``path`` (``"/"``), ``auth``
    (``"user:pass"``), ``socket_path`` or ``socketPath``. ``method`` and
    ``headers`` are the request's business, not the destination's.

    Raises:
      ValueError: a protocol not in ``schemes``, a bad host or port.
    """
    protocol = options.get("protocol")
    if protocol is None:
        scheme = "http" if "http" in schemes else "ws"
    else:
        scheme = str(protocol).rstrip(":").lower()
    if scheme not in schemes:
        raise ValueError(
            f"unsupported protocol {protocol!r} ({' or '.join(s + ':' for s in sorted(schemes))})"
        )
    hostname = str(options.get("hostname") or options.get("host") or "localhost")
    if hostname.startswith("[") and hostname.endswith("]"):
        hostname = hostname[1:-1]
    host = _ascii_host(hostname, hostname)
    port = int(options.get("port") or DEFAULT_PORTS[scheme])
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range 0-65535: {port}")
    socket_path = options.get("socket_path", options.get("socketPath"))
    auth = options.get("auth")
    return Target(
        scheme,
        host,
        port,
        str(socket_path) if socket_path is not None else None,
        encode_path(str(options.get("path") or "/")),
        _host_header(host, port, scheme),
        basic_auth(str(auth)) if auth is not None else None,
    )


def encode_path(path: str) -> bytes:
    """The request target as bytes; non-ASCII characters are percent-encoded (UTF-8)."""
    if path.isascii():
        return path.encode("ascii")
    return quote(path, safe=_PATH_SAFE).encode("ascii")


def basic_auth(credentials: str) -> bytes:
    """``Basic`` credentials for ``"user:pass"`` (RFC 7617 §2, UTF-8 as its ``charset``)."""
    return b"Basic " + base64.b64encode(credentials.encode())


def describe(url: str | Mapping[str, Any]) -> str:
    """A URL or options dict as a message names it."""
    if isinstance(url, str):
        return url
    return f"{url.get('hostname') or url.get('host')}:{url.get('port')}{url.get('path', '/')}"


def _ascii_host(host: str, where: str) -> str:
    """The host as DNS and the ``Host`` header take it: IDNA-encoded if it is not ASCII.

    ASCII names go through the codec too: it refuses empty and over-long
    labels (RFC 1035 §2.3.4, 63 octets), as the resolver would later.
    """
    if ":" in host:  # an IPv6 literal
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"bad host {host!r} in {where!r}: {exc}") from None


def _host_header(host: str, port: int, scheme: str) -> bytes:
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    if port == DEFAULT_PORTS[scheme]:
        return host.encode("ascii")
    return f"{host}:{port}".encode("ascii")
