"""HAProxy's PROXY protocol, versions 1 and 2: the header a proxy puts before a connection's bytes.

A TCP proxy (HAProxy's ``send-proxy``/``send-proxy-v2``, AWS NLB, nginx's
``proxy_protocol on`` in its stream module) cannot add an HTTP header, so it
opens the connection with a small header naming the client it relays. The
spec is https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt; the
sections cited below are its own.

This module only parses, with no I/O: :func:`parse` is given the bytes read
so far and says "need more" (None), "a header of ``length`` bytes naming
``source``" (:class:`ProxyHeader`) or "malformed" (raises
:class:`ProxyHeaderError` with the reason, and nothing else for any input).
The accept path (:func:`trionet._server.open_accepted`) drives it. "Need
more" always means every byte given belongs to the header, so the reader
may consume what it peeked; it never reads past the header, and the bytes
after it stay in the kernel for the protocol (section 9's sample code does
the same with ``recv(MSG_PEEK)``).

Choices the spec leaves open:

- Partial headers are waited for (section 2: "Recommendation is to be
  tolerant"), within the caller's timeout.
- ``UNKNOWN`` (v1), ``LOCAL`` and ``AF_UNSPEC`` (v2) give ``source=None``:
  keep the real connection's addresses (sections 2.1 and 2.2; HAProxy's
  health checks send ``LOCAL``).
- A v2 ``DGRAM`` address block is taken like ``STREAM`` (section 2.2: the
  addresses and ports are laid out the same way); ``AF_UNIX`` gives the
  source path as a string.
- TLVs (section 2.2, after the addresses) are skipped; ``PP2_TYPE_CRC32C``
  is not verified (the TCP checksum and the trusted sender already are).
- Only the parts of a v1 line the spec defines are accepted: exactly one
  space between fields, no leading zeros in ports or IPv4 octets, the
  family matching the address (section 2.1: "Any sequence which does not
  exactly match the protocol must be discarded").
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ._errors import ProtocolError

__all__ = [
    "PROXY_HEADER_TIMEOUT",
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyHeaderError",
    "parse",
    "v2_length",
]

#: Section 2.1: the longest v1 line, CRLF included ("PROXY UNKNOWN" with two
#: full IPv6 addresses and ports).
V1_MAX_LENGTH = 107
#: Section 2.2: the v2 header's first 12 bytes.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: Section 2.2: signature, version/command, family/protocol, 2-byte length.
V2_FIXED_LENGTH = 16
_V1_PREFIX = b"PROXY "
#: Seconds for the whole header to arrive: nginx's ``proxy_protocol_timeout``
#: default (ngx_stream_core_module), the same as trionet's TLS handshake bound.
PROXY_HEADER_TIMEOUT = 30.0

# Section 2.2, the 14th byte's high nibble: AF_UNSPEC, AF_INET, AF_INET6, AF_UNIX;
# the address block each needs (two addresses, and two ports for INET).
_V2_ADDRESS_LENGTHS = {0x0: 0, 0x1: 12, 0x2: 36, 0x3: 216}
_UNIX_PATH_LENGTH = 108

Source = tuple[str, int] | str


class ProxyHeaderError(ProtocolError):
    """A PROXY protocol header is malformed; the message says how."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A complete PROXY protocol header."""

    #: Bytes the header takes at the start of the connection.
    length: int
    #: The original client: ``(ip, port)``, a Unix path; None to keep the real peer.
    source: Source | None
    #: The address the client connected to, as ``source``.
    destination: Source | None
    #: 1 or 2.
    version: int


def parse(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``, or None when more bytes are needed.

    None means every byte of ``data`` is part of the header (a prefix that
    may still end well); bytes after a complete header are not looked at.

    Raises:
      ProxyHeaderError: ``data`` does not start with a valid header.
    """
    if data[:1] == b"\r":
        return _parse_v2(data)
    return _parse_v1(data)


def v2_length(data: bytes) -> int | None:
    """The whole header's length once ``data`` holds a v2 header's fixed 16 bytes, else None.

    Lets a reader take the rest of a long header (TLVs may add up to 64 KiB)
    in one read rather than a parse per arriving segment.
    """
    if len(data) < V2_FIXED_LENGTH or not data.startswith(V2_SIGNATURE):
        return None
    return V2_FIXED_LENGTH + int.from_bytes(data[14:16], "big")


def _parse_v1(data: bytes) -> ProxyHeader | None:
    """Section 2.1: ``PROXY <TCP4|TCP6|UNKNOWN> <src> <dst> <sport> <dport>\\r\\n``."""
    head = data[: len(_V1_PREFIX)]
    if head != _V1_PREFIX[: len(head)]:
        raise ProxyHeaderError("not a PROXY protocol header")
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        window = data[:V1_MAX_LENGTH]
        if len(window) >= V1_MAX_LENGTH:
            raise ProxyHeaderError(f"v1 line without CRLF in its first {V1_MAX_LENGTH} bytes")
        bare = window.find(b"\n")
        if bare < 0:
            cr = window.find(b"\r")
            bare = cr if 0 <= cr < len(window) - 1 else -1
        if bare >= 0:
            raise ProxyHeaderError("v1 line ended by a lone CR or LF (section 2.1)")
        return None
    line = data[len(_V1_PREFIX) : end]
    length = end + 2
    if line.startswith(b"UNKNOWN") and (len(line) == 7 or line[7:8] == b" "):
        # Section 2.1: "the receiver must ignore anything presented before the CRLF".
        return ProxyHeader(length, None, None, 1)
    fields = line.split(b" ")
    if len(fields) != 5 or fields[0] not in (b"TCP4", b"TCP6"):
        raise ProxyHeaderError("v1 line is not TCP4, TCP6 or UNKNOWN with four fields")
    version = 4 if fields[0] == b"TCP4" else 6
    source = _v1_address(fields[1], version)
    destination = _v1_address(fields[2], version)
    source_port = _v1_port(fields[3])
    destination_port = _v1_port(fields[4])
    return ProxyHeader(length, (source, source_port), (destination, destination_port), 1)


def _v1_address(text: bytes, version: int) -> str:
    try:
        ip = ipaddress.ip_address(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProxyHeaderError(f"v1 address {text[:45]!r} is not an IP address") from None
    if ip.version != version:
        raise ProxyHeaderError(f"v1 address {text!r} is not IPv{version}")
    return str(ip)


def _v1_port(text: bytes) -> int:
    # Section 2.1: decimal in [0..65535], "Heading zeroes are not permitted".
    if not (text.isdigit() and len(text) <= 5) or (text[:1] == b"0" and text != b"0"):
        raise ProxyHeaderError(f"v1 port {text[:8]!r} is not a decimal in 0..65535")
    port = int(text)
    if port > 65535:
        raise ProxyHeaderError(f"v1 port {port} is above 65535")
    return port


def _parse_v2(data: bytes) -> ProxyHeader | None:
    """Section 2.2: the 16-byte binary header, the address block, then TLVs."""
    head = data[: len(V2_SIGNATURE)]
    if head != V2_SIGNATURE[: len(head)]:
        raise ProxyHeaderError("not a PROXY protocol header")
    if len(data) < V2_FIXED_LENGTH:
        if len(data) > 12 and data[12] >> 4 != 2:
            raise ProxyHeaderError(f"v2 version {data[12] >> 4} (only 2 is defined)")
        return None
    version_command, family_protocol = data[12], data[13]
    if version_command >> 4 != 2:
        raise ProxyHeaderError(f"v2 version {version_command >> 4} (only 2 is defined)")
    command = version_command & 0x0F
    if command > 1:
        raise ProxyHeaderError(f"v2 command {command} is neither LOCAL nor PROXY")
    family, protocol = family_protocol >> 4, family_protocol & 0x0F
    needed = _V2_ADDRESS_LENGTHS.get(family)
    if needed is None or protocol > 2:
        raise ProxyHeaderError(f"v2 family/protocol byte {family_protocol:#04x} is undefined")
    block = int.from_bytes(data[14:16], "big")
    length = V2_FIXED_LENGTH + block
    if len(data) < length:
        return None
    if command == 0 or family == 0 or protocol == 0:
        # LOCAL (a health check) or UNSPEC: "use the real connection endpoints".
        return ProxyHeader(length, None, None, 2)
    if block < needed:
        raise ProxyHeaderError(f"v2 address block of {block} bytes, {needed} needed")
    addresses = data[V2_FIXED_LENGTH : V2_FIXED_LENGTH + needed]
    if family == 0x3:
        paths = addresses[:_UNIX_PATH_LENGTH], addresses[_UNIX_PATH_LENGTH:]
        source, destination = (_unix_path(path) for path in paths)
        return ProxyHeader(length, source, destination, 2)
    size = 4 if family == 0x1 else 16
    ports = addresses[2 * size :]
    return ProxyHeader(
        length,
        (str(ipaddress.ip_address(addresses[:size])), int.from_bytes(ports[:2], "big")),
        (str(ipaddress.ip_address(addresses[size : 2 * size])), int.from_bytes(ports[2:], "big")),
        2,
    )


def _unix_path(raw: bytes) -> str:
    """A ``sun_path`` field: the bytes up to the first NUL."""
    return raw.partition(b"\x00")[0].decode("utf-8", "replace")
