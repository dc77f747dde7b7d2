"""The trust list and the forwarding headers, without sockets.

What a user behind nginx or HAProxy relies on: the client a trusted proxy
names is believed, a client's own forged header is not, and nothing a
client sends makes the parser raise (the server must never answer 500 for
a header). Examples come from RFC 7239 sections 4, 5 and 6, and from
uvicorn's proxy_headers middleware for the X-Forwarded-For walk.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trionet._forwarded import (
    DEFAULT_FORWARDED_ALLOW_IPS,
    Forwarded,
    TrustedProxies,
    forwarded_from,
    parse_forwarded,
    parse_node,
)


def headers(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode("latin-1")) for name, value in pairs]


LOCAL = TrustedProxies("127.0.0.1")


# -- the trust list ---------------------------------------------------------------------


def test_the_default_trusts_loopback_and_unix_peers_and_nobody_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    trust = TrustedProxies()
    assert DEFAULT_FORWARDED_ALLOW_IPS == "127.0.0.1,::1,unix"
    assert trust.trusts(("127.0.0.1", 5000))
    assert trust.trusts(("::1", 5000))
    assert trust.trusts("/run/app.sock")
    assert trust.trusts("")  # an unnamed Unix client
    assert not trust.trusts(("10.0.0.1", 5000))
    assert not trust.trusts(("127.0.0.2", 5000))
    assert not trust.trusts(None)


def test_the_environment_variable_replaces_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.1.2.3")
    trust = TrustedProxies()
    assert trust.trusts(("10.1.2.3", 1))
    assert not trust.trusts(("127.0.0.1", 1))
    assert not trust.trusts("/run/app.sock")


def test_networks_lists_and_strings() -> None:
    trust = TrustedProxies(["10.0.0.0/8", " 192.168.1.5 ", "fd00::/8"])
    assert trust.trusts(("10.200.3.4", 80))
    assert trust.trusts(("192.168.1.5", 80))
    assert trust.trusts(("fd12::1", 80))
    assert not trust.trusts(("11.0.0.1", 80))
    assert not trust.trusts("/run/app.sock")  # "unix" not listed
    assert TrustedProxies("10.0.0.0/8, unix").trusts("/run/app.sock")


def test_star_trusts_everyone() -> None:
    trust = TrustedProxies("*")
    assert trust.trusts(("203.0.113.9", 1)) and trust.trusts("/x.sock")


def test_an_ipv4_mapped_peer_is_checked_as_ipv4() -> None:
    assert TrustedProxies("10.0.0.0/8").trusts(("::ffff:10.1.1.1", 80))


@pytest.mark.parametrize("entry", ["localhost", "10.0.0.1/33", "10.0.0.1/8", "1.2.3"])
def test_a_malformed_entry_is_an_error_not_a_silent_literal(entry: str) -> None:
    with pytest.raises(ValueError, match="forwarded_allow_ips"):
        TrustedProxies(entry)


# -- X-Forwarded-* ----------------------------------------------------------------------


def test_the_client_is_the_rightmost_untrusted_hop() -> None:
    trust = TrustedProxies("127.0.0.1, 10.0.0.0/8")
    found = forwarded_from(
        headers(("X-Forwarded-For", "203.0.113.7, 198.51.100.1, 10.0.0.2")), trust
    )
    # 10.0.0.2 is a trusted proxy; 198.51.100.1 is not, so it is the client
    # (the 203.0.113.7 it claims to forward for could be made up).
    assert found == Forwarded(client=("198.51.100.1", 0))


def test_all_hops_trusted_gives_the_leftmost() -> None:
    trust = TrustedProxies("10.0.0.0/8")
    found = forwarded_from(headers(("X-Forwarded-For", "10.0.0.5, 10.0.0.6")), trust)
    assert found.client == ("10.0.0.5", 0)


def test_several_lines_are_one_list_and_ports_are_kept() -> None:
    found = forwarded_from(
        headers(("X-Forwarded-For", "[2001:db8::1]:4711"), ("X-Forwarded-For", "127.0.0.1")),
        LOCAL,
    )
    assert found.client == ("2001:db8::1", 4711)
    assert forwarded_from(headers(("X-Forwarded-For", "192.0.2.1:51000")), LOCAL).client == (
        "192.0.2.1",
        51000,
    )


@pytest.mark.parametrize(
    "value", ["unknown", "", "not-an-ip", "192.0.2.1:99999", "[2001:db8::1", "1.2.3.4:x"]
)
def test_a_client_that_is_not_an_ip_leaves_the_address_alone(value: str) -> None:
    found = forwarded_from(headers(("X-Forwarded-For", value)), LOCAL)
    assert found.client is None


def test_proto_and_host() -> None:
    found = forwarded_from(
        headers(
            ("X-Forwarded-For", "192.0.2.60"),
            ("X-Forwarded-Proto", "HTTPS"),
            ("X-Forwarded-Host", "example.com:8443"),
        ),
        LOCAL,
    )
    assert found == Forwarded(("192.0.2.60", 0), "https", "example.com:8443")
    assert forwarded_from(headers(("X-Forwarded-Proto", "wss")), LOCAL).scheme == "https"
    assert forwarded_from(headers(("X-Forwarded-Proto", "ws")), LOCAL).scheme == "http"


def test_proto_is_taken_from_the_chosen_hop_when_each_hop_gave_one() -> None:
    trust = TrustedProxies("10.0.0.0/8")
    found = forwarded_from(
        headers(
            ("X-Forwarded-For", "192.0.2.1, 10.0.0.1"), ("X-Forwarded-Proto", "https, http")
        ),
        trust,
    )
    assert found.scheme == "https"  # what 192.0.2.1 used, not the inner hop's http


@pytest.mark.parametrize("proto", ["gopher", "https\x00", "ht tp"])
def test_an_unknown_proto_is_ignored(proto: str) -> None:
    assert forwarded_from(headers(("X-Forwarded-Proto", proto)), LOCAL).scheme is None


@pytest.mark.parametrize("host", ["bad host", "a/b", "example.com:123456", "x\r\ny"])
def test_a_malformed_host_is_ignored(host: str) -> None:
    assert forwarded_from(headers(("X-Forwarded-Host", host)), LOCAL).host is None


def test_x_forwarded_wins_over_a_forwarded_field_the_client_may_have_sent() -> None:
    # nginx appends to X-Forwarded-For and passes a client's Forwarded on as it came.
    found = forwarded_from(
        headers(("Forwarded", "for=6.6.6.6"), ("X-Forwarded-For", "192.0.2.9")), LOCAL
    )
    assert found.client == ("192.0.2.9", 0)


# -- RFC 7239 Forwarded -----------------------------------------------------------------


def test_rfc7239_examples_parse() -> None:
    # Section 4 and 7.1's examples.
    assert parse_forwarded('for="_gazonk"') == [{"for": "_gazonk"}]
    assert parse_forwarded('For="[2001:db8:cafe::17]:4711"') == [
        {"for": "[2001:db8:cafe::17]:4711"}
    ]
    assert parse_forwarded("for=192.0.2.60;proto=http;by=203.0.113.43") == [
        {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}
    ]
    assert parse_forwarded("for=192.0.2.43, for=198.51.100.17") == [
        {"for": "192.0.2.43"},
        {"for": "198.51.100.17"},
    ]
    assert parse_forwarded('for="a\\"b"') == [{"for": 'a"b'}]


@pytest.mark.parametrize(
    "value",
    [
        "for=192.0.2.1;for=192.0.2.2",  # a parameter twice in one element
        'for="192.0.2.1',  # unterminated quoted string
        "for=[2001:db8::1]",  # brackets are not a token: must be quoted
        "for",
        "=x",
        "for=a b",
    ],
)
def test_malformed_forwarded_fields(value: str) -> None:
    assert parse_forwarded(value) is None
    assert forwarded_from(headers(("Forwarded", value)), LOCAL) == Forwarded()


def test_nodes() -> None:
    assert parse_node("192.0.2.43") == ("192.0.2.43", 0)
    assert parse_node("192.0.2.43:47011") == ("192.0.2.43", 47011)
    assert parse_node("[2001:db8:cafe::17]:4711") == ("2001:db8:cafe::17", 4711)
    assert parse_node("[2001:db8:cafe::17]:_port") == ("2001:db8:cafe::17", 0)  # 6.3
    assert parse_node("unknown") is None  # 6.2
    assert parse_node("_hidden") is None  # 6.3
    assert parse_node("2001:db8::1") is None  # IPv6 must be bracketed (section 6)
    assert parse_node("[192.0.2.1]") is None
    assert parse_node("192.0.2.1:port") is None


def test_forwarded_client_proto_and_host_from_the_chosen_element() -> None:
    trust = TrustedProxies("10.0.0.0/8, fd00::/8")
    found = forwarded_from(
        headers(
            (
                "Forwarded",
                'for=192.0.2.60;proto=https;host=example.com, for="[fd00::1]";proto=http',
            ),
        ),
        trust,
    )
    assert found == Forwarded(("192.0.2.60", 0), "https", "example.com")


def test_forwarded_from_an_unknown_client_keeps_the_peer_but_takes_proto() -> None:
    found = forwarded_from(headers(("Forwarded", "for=unknown;proto=https")), LOCAL)
    assert found == Forwarded(None, "https", None)


# -- never raises -----------------------------------------------------------------------


@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"]
            ),
            st.binary(max_size=80)
            | st.text("0123456789abcdef:.[]_,;=\" \tforwardedproto", max_size=60).map(
                str.encode
            ),
        ),
        max_size=4,
    )
)
def test_any_header_values_give_an_answer_not_an_exception(
    pairs: list[tuple[bytes, bytes]],
) -> None:
    found = forwarded_from(pairs, TrustedProxies("127.0.0.1,10.0.0.0/8"))
    if found.client is not None:
        assert isinstance(found.client[0], str) and 0 <= found.client[1] <= 65535
    assert found.scheme in (None, "http", "https")
