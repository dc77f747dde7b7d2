"""Who may speak for the client, and what they said: the trust list and the forwarding headers.

Behind a reverse proxy the TCP peer is the proxy. The proxy names the real
client in a header (``X-Forwarded-For`` and friends, or RFC 7239
``Forwarded``) or in a PROXY protocol header before the first byte
(:mod:`trionet._proxy_protocol`). Anyone can send those headers, so they
count only from peers on a trust list; this module is that list and the
parsing of the headers, pure (no sockets), so each rule is a unit test.

The trust list follows uvicorn 0.55 (``uvicorn/middleware/proxy_headers.py``
and ``uvicorn/config.py``), whose names trionet takes:
``forwarded_allow_ips`` is a list or a comma-separated string of IP addresses
and CIDR networks, ``"*"`` trusts everyone, and the default is the
``FORWARDED_ALLOW_IPS`` environment variable or ``"127.0.0.1,::1"``. Where
trionet departs from it:

- An entry that is neither an address nor a network raises ``ValueError``;
  uvicorn keeps it as a literal and its source admits "it is not possible
  for the user to know they provided a malformed IP". The one literal is
  ``"unix"``: peers on a Unix socket listener.
- Unix-socket peers are trusted by default (the default list is
  ``"127.0.0.1,::1,unix"``). Only local processes allowed by the socket
  file's permissions can connect there, the same circle the loopback
  default already trusts; it is how nginx usually reaches its upstream.
  uvicorn sees no client address on a Unix socket and so trusts such peers
  only with ``"*"``, which, when the same app also listens on TCP, trusts
  the whole network too. A list without ``"unix"`` (and without ``"*"``)
  does not trust them.
- An IPv4-mapped IPv6 peer (``::ffff:10.0.0.1``, a dual-stack listener) is
  checked as its IPv4 address.

Which client. Each proxy appends the address it got the request from, so the
list is read from the right, skipping trusted proxies; the first untrusted
hop is the client (uvicorn's ``get_trusted_client_address``; when every hop
is trusted the leftmost is). If that hop is not an IP address (``unknown``,
an RFC 7239 obfuscated identifier, or junk), the client is unknown and the
connection's own peer address stays. Rejected: handing the app ``"unknown"``
as an address (uvicorn does), which breaks code that parses it as an IP.

Which header. ``X-Forwarded-*`` is read when any of the three is present,
``Forwarded`` only otherwise. A proxy that sets one family passes the other
through from the client untouched (nginx forwards a client's ``Forwarded``
as it came), so mixing them or preferring the one the proxy does not set
lets a client forge its address. The common proxies (nginx, HAProxy's
``option forwardfor``, cloud balancers) set ``X-Forwarded-For``; a proxy that
sets only ``Forwarded`` must delete ``X-Forwarded-*`` from requests.
hypercorn's ProxyFixMiddleware makes the same choice explicit with its
``mode="legacy" | "modern"``.

Scheme and host come from the same hop as the client: the ``Forwarded``
element whose ``for`` was chosen (RFC 7239 section 4: the parameters of
one element describe one hop); for ``X-Forwarded-Proto``/``-Host`` the value
at the same position when there are as many values as ``X-Forwarded-For``
hops, else the last one (set by the nearest proxy, which is trusted).
A malformed value is ignored, never an error: the request goes on with what
the connection itself says.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_FORWARDED_ALLOW_IPS",
    "FORWARDED_ALLOW_IPS_ENV",
    "UNIX_PEERS",
    "Forwarded",
    "TrustedProxies",
    "forwarded_from",
    "parse_forwarded",
    "parse_node",
]

#: uvicorn's environment variable for the default trust list.
FORWARDED_ALLOW_IPS_ENV = "FORWARDED_ALLOW_IPS"
#: The entry that trusts peers on a Unix socket listener (see the module docstring).
UNIX_PEERS = "unix"
#: uvicorn's default (``"127.0.0.1,::1"``, uvicorn/config.py) plus Unix-socket peers.
DEFAULT_FORWARDED_ALLOW_IPS = "127.0.0.1,::1,unix"

#: A peer as trionet names it: ``(host, port)``, or a Unix socket path (``""`` unnamed).
PeerAddress = tuple[str, int] | str
_IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Verdicts kept per trust list (uvicorn caches 4096 as well); the cache is
#: emptied when full, so a scan of many addresses cannot grow it.
_VERDICT_CACHE_SIZE = 4096
#: RFC 7239 section 5.4 / RFC 3986 section 3.1, and what X-Forwarded-Proto may say.
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
# RFC 7239 section 6.3: obfnode / obfport = "_" 1*(ALPHA / DIGIT / "." / "_" / "-").
_OBFUSCATED = re.compile(r"_[A-Za-z0-9._-]+")
# RFC 7230 tchar (section 3.2.6), for Forwarded's token values and parameter names.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# uri-host [":" port] (RFC 3986 section 3.2.2): a reg-name or IPv4, or an IP literal.
_HOST = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=%-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


class TrustedProxies:
    """The peers whose forwarding headers and PROXY protocol headers are believed.

    Args:
      allow_ips: IP addresses and CIDR networks, as a list or a comma-separated
        string; ``"*"`` trusts everyone, ``"unix"`` peers on a Unix socket.
        None: the ``FORWARDED_ALLOW_IPS`` environment variable, else
        :data:`DEFAULT_FORWARDED_ALLOW_IPS`.

    Raises:
      ValueError: an entry is neither an address, a network, ``"*"`` nor ``"unix"``.
    """

    __slots__ = ("_hosts", "_networks", "_verdicts", "everyone", "unix")

    def __init__(self, allow_ips: str | Sequence[str] | None = None) -> None:
        if allow_ips is None:
            allow_ips = os.environ.get(FORWARDED_ALLOW_IPS_ENV, DEFAULT_FORWARDED_ALLOW_IPS)
        entries = allow_ips.split(",") if isinstance(allow_ips, str) else list(allow_ips)
        #: ``"*"`` was given: every peer is trusted.
        self.everyone = False
        #: Peers on a Unix socket are trusted.
        self.unix = False
        self._hosts: set[_IP] = set()
        self._networks: list[_Network] = []
        self._verdicts: dict[str, bool] = {}
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            if entry == "*":
                self.everyone = self.unix = True
            elif entry == UNIX_PEERS:
                self.unix = True
            elif "/" in entry:
                try:
                    self._networks.append(ipaddress.ip_network(entry))
                except ValueError as exc:
                    raise ValueError(f"forwarded_allow_ips: {entry!r}: {exc}") from None
            else:
                try:
                    self._hosts.add(ipaddress.ip_address(entry))
                except ValueError:
                    raise ValueError(
                        f"forwarded_allow_ips: {entry!r} is not an IP address, a network,"
                        ' "*" or "unix"'
                    ) from None

    def __repr__(self) -> str:
        if self.everyone:
            return "<TrustedProxies *>"
        names = [str(h) for h in self._hosts] + [str(n) for n in self._networks]
        if self.unix:
            names.append(UNIX_PEERS)
        return f"<TrustedProxies {','.join(sorted(names))}>"

    def trusts(self, peer: PeerAddress | None) -> bool:
        """Whether the connection's peer (an accepted socket's address) is trusted."""
        if isinstance(peer, tuple):
            return self.trusts_host(peer[0])
        if peer is None:
            return False  # unknown: a closed socket, nothing to vouch for
        return self.unix  # a Unix socket path ("" for an unnamed client)

    def trusts_host(self, host: str) -> bool:
        """Whether the IP address ``host`` is trusted (False for anything not an IP)."""
        if self.everyone:
            return True
        verdict = self._verdicts.get(host)
        if verdict is None:
            verdict = self._judge(host)
            if len(self._verdicts) >= _VERDICT_CACHE_SIZE:
                self._verdicts.clear()
            self._verdicts[host] = verdict
        return verdict

    def _judge(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host.partition("%")[0])  # without an IPv6 zone
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip in self._hosts or any(ip in net for net in self._networks)


@dataclass(frozen=True, slots=True)
class Forwarded:
    """What a trusted proxy said about the request it forwarded.

    Each field is None when the proxy did not say it (or said it malformed):
    the connection's own value stands.
    """

    #: The client's ``(ip, port)``; the port is 0 when the proxy gave none.
    client: tuple[str, int] | None = None
    #: ``"http"`` or ``"https"`` (a forwarded ``ws``/``wss`` is mapped to these).
    scheme: str | None = None
    #: The ``Host`` the client asked for, ``host[:port]``.
    host: str | None = None


#: Nothing forwarded: the answer for requests without forwarding headers.
NOTHING = Forwarded()


def forwarded_from(headers: Iterable[tuple[bytes, bytes]], trust: TrustedProxies) -> Forwarded:
    """What the forwarding headers in ``headers`` (lower-case names) say, read with ``trust``.

    The caller checked that the connection's peer is trusted; this walks the
    hops the headers list (see the module docstring for the rules).
    """
    xff: list[str] = []
    protos: list[str] = []
    hosts: list[str] = []
    forwarded: list[str] = []
    for name, value in headers:
        if name[:2] == b"x-":
            if name == b"x-forwarded-for":
                xff.append(value.decode("latin-1"))
            elif name == b"x-forwarded-proto":
                protos.append(value.decode("latin-1"))
            elif name == b"x-forwarded-host":
                hosts.append(value.decode("latin-1"))
        elif name == b"forwarded":
            forwarded.append(value.decode("latin-1"))
    if xff or protos or hosts:
        return _from_x_forwarded(xff, protos, hosts, trust)
    if forwarded:
        return _from_forwarded(",".join(forwarded), trust)
    return NOTHING


def _from_x_forwarded(
    xff: list[str], protos: list[str], hosts: list[str], trust: TrustedProxies
) -> Forwarded:
    # Several header lines are one comma-separated list (RFC 9110 section 5.3).
    hops = [item.strip() for item in ",".join(xff).split(",")] if xff else []
    index, client = _walk([_parse_x_node(hop) for hop in hops], trust)
    scheme = _at_hop(protos, index, len(hops))
    host = _at_hop(hosts, index, len(hops))
    return Forwarded(
        client=client,
        scheme=None if scheme is None else _SCHEMES.get(scheme.lower()),
        host=host if host is not None and _HOST.fullmatch(host) else None,
    )


def _at_hop(lines: list[str], index: int, hop_count: int) -> str | None:
    """The value for hop ``index``: by position when the counts agree, else the last."""
    if not lines:
        return None
    values = [item.strip() for item in ",".join(lines).split(",")]
    if len(values) == hop_count and index >= 0:
        return values[index]
    return values[-1]


def _walk(
    nodes: list[tuple[str, int] | None], trust: TrustedProxies
) -> tuple[int, tuple[str, int] | None]:
    """``(index, client)``: the rightmost untrusted hop and its address (None: not an IP).

    Every hop trusted: the leftmost. No hops: ``(-1, None)``.
    """
    for index in range(len(nodes) - 1, -1, -1):
        node = nodes[index]
        if node is None or not trust.trusts_host(node[0]):
            return index, node
    if not nodes:
        return -1, None
    return 0, nodes[0]


def _parse_x_node(text: str) -> tuple[str, int] | None:
    """One X-Forwarded-For entry: an IP, ``ipv4:port`` or ``[ipv6]:port``; None if not an IP."""
    port = 0
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket:
            return None
        if rest:
            if rest[:1] != ":" or not rest[1:].isdigit() or len(rest) > 6:
                return None
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, digits = text.partition(":")
        if not digits.isdigit() or len(digits) > 5:
            return None
        port = int(digits)
    else:
        host = text
    ip = _ip(host)
    if ip is None or port > 65535:
        return None
    return ip, port


def _ip(text: str) -> str | None:
    """``text`` as a canonical IP address, or None if it is none."""
    if not text.isascii():
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


# -- RFC 7239 -------------------------------------------------------------------------


def _from_forwarded(value: str, trust: TrustedProxies) -> Forwarded:
    elements = parse_forwarded(value)
    if not elements:
        return NOTHING
    nodes = [parse_node(element["for"]) if "for" in element else None for element in elements]
    index, client = _walk(nodes, trust)
    element = elements[index]
    proto = element.get("proto")
    host = element.get("host")
    return Forwarded(
        client=client,
        scheme=None if proto is None else _SCHEMES.get(proto.lower()),
        host=host if host is not None and _HOST.fullmatch(host) else None,
    )


def parse_forwarded(value: str) -> list[dict[str, str]] | None:
    """The elements of a ``Forwarded`` field (RFC 7239 section 4), hop by hop, or None.

    Each element maps its parameters (lower-cased names) to their values,
    quoted strings unquoted. A field that breaks the grammar, or names a
    parameter twice in one element (section 4: "MUST NOT occur more than
    once"), is malformed: None, and the caller ignores the whole field.
    Empty list elements are skipped (RFC 9110 section 5.6.1).
    """
    elements: list[dict[str, str]] = []
    element: dict[str, str] = {}
    pos, end = 0, len(value)
    while True:
        pos = _skip_spaces(value, pos)
        if pos < end and value[pos] not in ",;":
            pair = _pair(value, pos)
            if pair is None:
                return None
            name, item, pos = pair
            if name in element:
                return None
            element[name] = item
            pos = _skip_spaces(value, pos)
        if pos >= end:
            break
        if value[pos] == ",":
            if element:
                elements.append(element)
            element = {}
        elif value[pos] != ";":
            return None
        pos += 1
    if element:
        elements.append(element)
    return elements


def _skip_spaces(value: str, pos: int) -> int:
    while pos < len(value) and value[pos] in " \t":
        pos += 1
    return pos


def _pair(value: str, pos: int) -> tuple[str, str, int] | None:
    """``token "=" (token / quoted-string)`` at ``pos``: ``(name, value, next pos)``."""
    name_match = _TOKEN.match(value, pos)
    if name_match is None or value[name_match.end() : name_match.end() + 1] != "=":
        return None
    pos = name_match.end() + 1
    if value[pos : pos + 1] != '"':
        token = _TOKEN.match(value, pos)
        if token is None:
            return None
        return name_match.group().lower(), token.group(), token.end()
    # quoted-string (RFC 9110 section 5.6.4): backslash escapes one character.
    chars: list[str] = []
    pos += 1
    while pos < len(value):
        char = value[pos]
        if char == '"':
            return name_match.group().lower(), "".join(chars), pos + 1
        if char == "\\":
            pos += 1
            if pos >= len(value):
                return None
            char = value[pos]
        if char in "\r\n\x00":
            return None
        chars.append(char)
        pos += 1
    return None  # no closing quote


def parse_node(node: str) -> tuple[str, int] | None:
    """A ``for``/``by`` node (RFC 7239 section 6) as ``(ip, port)``, or None.

    ``nodename [":" node-port]`` where the name is an IPv4 address, an IPv6
    address in brackets, ``unknown`` (section 6.2) or an obfuscated
    identifier (section 6.3); an obfuscated port gives port 0. ``unknown``,
    an obfuscated name and anything malformed give None: no address to use.
    """
    if node.startswith("["):
        host, bracket, rest = node[1:].partition("]")
        if not bracket or ":" not in host:
            return None
    else:
        host, sep, rest = node.partition(":")
        rest = sep + rest
        if ":" in rest[1:]:
            return None
    port = 0
    if rest:
        digits = rest[1:]
        if rest[0] != ":":
            return None
        if digits.isdigit() and digits.isascii() and len(digits) <= 5:
            port = int(digits)
        elif not _OBFUSCATED.fullmatch(digits):
            return None
    ip = _ip(host)
    if ip is None or port > 65535:
        return None
    if node[:1] != "[" and ":" in ip:
        return None  # IPv6 outside brackets is not RFC 7239's syntax
    return ip, port
