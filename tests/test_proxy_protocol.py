"""The PROXY protocol parser, without sockets: the spec's examples, then any bytes.

The spec is https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt. The
reader in ``trionet._accepted`` relies on one promise besides the parsing:
"need more" (None) means every byte given belongs to the header, so it may
consume them; the fuzz tests hold the parser to it.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trionet._proxy_protocol import (
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    parse,
    v2_length,
)

REQUEST = b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"


def v2(
    command: int = 1,
    family: int = 0x11,
    addresses: bytes = b"",
    tlvs: bytes = b"",
    version: int = 2,
) -> bytes:
    """A v2 header (section 2.2) around an address block and TLVs."""
    body = addresses + tlvs
    fixed = bytes([version << 4 | command, family]) + struct.pack("!H", len(body))
    return V2_SIGNATURE + fixed + body


def inet4(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.IPv4Address(src).packed
        + ipaddress.IPv4Address(dst).packed
        + struct.pack("!HH", sport, dport)
    )


def inet6(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + struct.pack("!HH", sport, dport)
    )


# -- version 1 (section 2.1) ------------------------------------------------------------


def test_v1_the_spec_example_before_an_http_request() -> None:
    line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    header = parse(line + REQUEST)
    assert header == ProxyHeader(len(line), ("192.168.0.1", 56324), ("192.168.0.11", 443), 1)


def test_v1_tcp6_and_the_longest_lines() -> None:
    full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    line = f"PROXY TCP6 {full} {full} 65535 65535\r\n".encode()
    assert len(line) == 104  # the spec's TCP6 maximum
    header = parse(line)
    assert header is not None and header.source == (full, 65535)
    worst = f"PROXY UNKNOWN {full} {full} 65535 65535\r\n".encode()
    assert len(worst) == V1_MAX_LENGTH
    assert parse(worst) == ProxyHeader(V1_MAX_LENGTH, None, None, 1)


def test_v1_unknown_keeps_the_real_peer() -> None:
    assert parse(b"PROXY UNKNOWN\r\nGET") == ProxyHeader(15, None, None, 1)


@pytest.mark.parametrize("cut", [0, 1, 5, 6, 20, 45, 46])  # 46: ends in the CR
def test_v1_a_partial_line_needs_more(cut: int) -> None:
    line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    assert parse(line[:cut]) is None


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n\r\n",  # no header at all
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",  # lone LF
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\rX",  # lone CR
        b"PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n",  # two spaces
        b"PROXY TCP4 192.168.0.01 192.168.0.11 56324 443\r\n",  # leading zero in an octet
        b"PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",  # leading zero in a port
        b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",  # port too big
        b"PROXY TCP4 ::1 ::1 1 2\r\n",  # family mismatch
        b"PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n",
        b"PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",
        b"PROXY UNKNOWNX\r\n",
        b"PROXY " + b"A" * 120,  # no CRLF in the first 107 bytes
    ],
)
def test_v1_malformed(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse(data)


# -- version 2 (section 2.2) ------------------------------------------------------------


def test_v2_tcp4_with_tlvs_skipped() -> None:
    alpn = b"\x01\x00\x02h2"  # PP2_TYPE_ALPN, length 2
    header = v2(addresses=inet4("203.0.113.7", "10.0.0.1", 40000, 80), tlvs=alpn)
    result = parse(header + REQUEST)
    assert result == ProxyHeader(len(header), ("203.0.113.7", 40000), ("10.0.0.1", 80), 2)


def test_v2_tcp6() -> None:
    header = v2(family=0x21, addresses=inet6("2001:db8::7", "2001:db8::1", 5555, 443))
    result = parse(header)
    assert result is not None and result.source == ("2001:db8::7", 5555)
    assert result.length == 16 + 36


def test_v2_unix() -> None:
    src = b"/run/client.sock".ljust(108, b"\x00")
    dst = b"/run/haproxy.sock".ljust(108, b"\x00")
    result = parse(v2(family=0x31, addresses=src + dst))
    assert result is not None and result.source == "/run/client.sock"
    assert result.destination == "/run/haproxy.sock"


def test_v2_local_and_unspec_keep_the_real_peer() -> None:
    # HAProxy's health checks: LOCAL, family AF_UNSPEC, no addresses.
    assert parse(v2(command=0, family=0x00)) == ProxyHeader(16, None, None, 2)
    # LOCAL with addresses anyway: "must not assume zero is presented".
    local = v2(command=0, family=0x11, addresses=inet4("1.2.3.4", "5.6.7.8", 1, 2))
    assert parse(local) == ProxyHeader(len(local), None, None, 2)
    assert parse(v2(family=0x00, addresses=b"xyz")) == ProxyHeader(19, None, None, 2)


def test_v2_needs_more_until_the_announced_length() -> None:
    header = v2(addresses=inet4("203.0.113.7", "10.0.0.1", 40000, 80))
    for cut in range(len(header)):
        assert parse(header[:cut]) is None, cut
    assert parse(header) is not None


def test_v2_length_is_known_from_the_fixed_part() -> None:
    header = v2(addresses=inet4("203.0.113.7", "10.0.0.1", 40000, 80), tlvs=bytes(3000))
    assert v2_length(header[:15]) is None
    assert v2_length(header[:16]) == len(header) == 16 + 12 + 3000
    assert v2_length(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n") is None


@pytest.mark.parametrize(
    "data",
    [
        v2(version=1),
        v2(command=2),
        v2(family=0x41),  # no such family
        v2(family=0x13),  # no such protocol
        v2(family=0x11, addresses=b"\x00" * 11),  # too short for TCP4
        v2(family=0x21, addresses=b"\x00" * 12),
        V2_SIGNATURE[:11] + b"X" + b"\x21\x11\x00\x00",  # signature off by one byte
    ],
)
def test_v2_malformed(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse(data)


# -- any bytes ------------------------------------------------------------------------


def _prefixes() -> st.SearchStrategy[bytes]:
    """Bytes that look like the start of a header more often than random ones do."""
    return st.sampled_from([b"", b"PROXY ", b"PROXY TCP4 ", V2_SIGNATURE, V2_SIGNATURE + b"\x21"])


@given(_prefixes(), st.binary(max_size=300))
def test_any_bytes_give_an_answer_or_the_specific_error(prefix: bytes, data: bytes) -> None:
    try:
        header = parse(prefix + data)
    except ProxyHeaderError:
        return
    if header is not None:
        assert 0 < header.length <= len(prefix + data)


@given(_prefixes(), st.binary(max_size=120), st.binary(max_size=200))
def test_need_more_means_every_byte_is_header(prefix: bytes, data: bytes, more: bytes) -> None:
    """What the reader relies on to consume peeked bytes: after "need more",
    no continuation ends the header before the bytes already seen."""
    try:
        if parse(prefix + data) is not None:
            return
        header = parse(prefix + data + more)
    except ProxyHeaderError:
        return
    if header is not None:
        assert header.length >= len(prefix + data)


@given(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=4).map(str),
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.binary(max_size=50),
)
def test_any_valid_tcp4_header_round_trips_in_both_versions(
    src: str, dst: str, sport: int, dport: int, payload: bytes
) -> None:
    line = f"PROXY TCP4 {src} {dst} {sport} {dport}\r\n".encode()
    assert parse(line + payload) == ProxyHeader(len(line), (src, sport), (dst, dport), 1)
    binary = v2(addresses=inet4(src, dst, sport, dport))
    assert parse(binary + payload) == ProxyHeader(len(binary), (src, sport), (dst, dport), 2)
