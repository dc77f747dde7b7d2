"""trionet._url without sockets: what a URL or Node's options dict becomes on the wire.

One parser serves the HTTP client and the WebSocket client; these examples
are what either sends: the host it connects to, the ``Host`` header, the
request target and the ``Authorization`` header.
"""

from __future__ import annotations

import pytest

from trionet._url import (
    ANY_SCHEMES,
    DEFAULT_PORTS,
    WS_SCHEMES,
    Target,
    describe,
    parse_options,
    parse_target,
    parse_url,
)


# -- URL strings ------------------------------------------------------------------------------
def test_a_plain_http_url() -> None:
    target = parse_url("http://127.0.0.1:8080/hello?x=1")
    assert target == Target("http", "127.0.0.1", 8080, None, b"/hello?x=1", b"127.0.0.1:8080", None)
    assert not target.secure


@pytest.mark.parametrize(
    ("url", "port", "host_header", "secure"),
    [
        ("http://example.test/", 80, b"example.test", False),
        ("https://example.test/", 443, b"example.test", True),
        ("ws://example.test/", 80, b"example.test", False),
        ("wss://example.test/", 443, b"example.test", True),
        ("https://example.test:80/", 80, b"example.test:80", True),
        ("http://example.test:443/", 443, b"example.test:443", False),
    ],
)
def test_default_port_per_scheme_is_left_out_of_the_host_header(
    url: str, port: int, host_header: bytes, secure: bool
) -> None:
    target = parse_url(url, ANY_SCHEMES)
    assert (target.port, target.host_header, target.secure) == (port, host_header, secure)


def test_default_ports_are_the_rfcs() -> None:
    assert DEFAULT_PORTS == {"http": 80, "https": 443, "ws": 80, "wss": 443}


def test_a_non_ascii_host_is_sent_in_its_idna_form() -> None:
    """The name we resolve, verify in TLS and send as Host is the ASCII one (as Node's URL)."""
    target = parse_url("http://Bücher.Example:8080/")
    assert target.host == "xn--bcher-kva.example"
    assert target.host_header == b"xn--bcher-kva.example:8080"


def test_an_ipv6_literal_connects_without_brackets_and_sends_them_in_host() -> None:
    target = parse_url("http://[::1]:8080/")
    assert (target.host, target.host_header) == ("::1", b"[::1]:8080")
    assert parse_url("https://[::1]/").host_header == b"[::1]"


def test_the_scheme_and_host_are_case_insensitive() -> None:
    target = parse_url("HTTP://LocalHost:81/Path")
    assert (target.scheme, target.host, target.path) == ("http", "localhost", b"/Path")


def test_userinfo_becomes_basic_authorization_percent_decoded() -> None:
    # "user:p@ss w" in base64
    target = parse_url("http://user:p%40ss%20w@127.0.0.1/")
    assert target.authorization == b"Basic dXNlcjpwQHNzIHc="
    assert target.host_header == b"127.0.0.1"  # credentials never reach the Host header
    assert parse_url("http://user@127.0.0.1/").authorization == b"Basic dXNlcjo="  # "user:"


def test_path_query_and_fragment() -> None:
    assert parse_url("http://h").path == b"/"
    assert parse_url("http://h?q=1").path == b"/?q=1"
    assert parse_url("http://h/a/b?q=1&r=2#part").path == b"/a/b?q=1&r=2"  # fragment never sent
    assert parse_url("http://h/%41%20b").path == b"/%41%20b"  # already encoded: kept


def test_a_non_ascii_path_is_percent_encoded_as_utf8() -> None:
    assert parse_url("http://h/bücher?q=ü").path == b"/b%C3%BCcher?q=%C3%BC"


def test_each_caller_accepts_only_its_schemes() -> None:
    with pytest.raises(ValueError, match=r"unsupported URL scheme 'ws'.*\(http or https\)"):
        parse_url("ws://h/")
    with pytest.raises(ValueError, match=r"unsupported URL scheme 'http'.*\(ws or wss\)"):
        parse_url("http://h/", WS_SCHEMES)
    assert parse_url("wss://h/chat", WS_SCHEMES).path == b"/chat"
    with pytest.raises(ValueError, match="unsupported URL scheme 'ftp'"):
        parse_url("ftp://h/", ANY_SCHEMES)


def test_a_websocket_url_with_a_fragment_is_refused() -> None:
    """RFC 6455 §3: "Fragment identifiers ... MUST NOT be used on these URIs" (Node's ws throws)."""
    with pytest.raises(ValueError, match="fragment"):
        parse_url("ws://h/chat#room", WS_SCHEMES)
    with pytest.raises(ValueError, match="fragment"):
        parse_url("wss://h/#x", ANY_SCHEMES)
    assert parse_url("ws://h/chat#", WS_SCHEMES).path == b"/chat"  # empty: WHATWG's hash is ""
    assert parse_url("ws://h/chat%23room", WS_SCHEMES).path == b"/chat%23room"  # escaped: a path
    assert parse_url("http://h/page#part").path == b"/page"  # HTTP: dropped, as ever


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http:///path", "no host"),
        ("http://h:99999/", "bad port"),
        ("http://h:port/", "bad port"),
        ("http://a..b/", "bad host"),
        ("http://" + "a" * 64 + ".test/", "bad host"),  # a DNS label holds 63 octets
        ("127.0.0.1:8080/", "unsupported URL scheme"),
    ],
)
def test_bad_urls_raise_value_error_saying_what(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_url(url)


def test_parsed_urls_are_cached() -> None:
    url = "http://127.0.0.1:1/cached"
    assert parse_url(url) is parse_url(url)


# -- Node's options dict ---------------------------------------------------------------------
def test_node_options_with_defaults() -> None:
    assert parse_options({}) == Target("http", "localhost", 80, None, b"/", b"localhost", None)


def test_node_options_in_full() -> None:
    target = parse_options(
        {"protocol": "https:", "hostname": "127.0.0.1", "port": 8443, "path": "/a?b=1",
         "auth": "user:pass"}
    )
    assert target == Target(
        "https", "127.0.0.1", 8443, None, b"/a?b=1", b"127.0.0.1:8443", b"Basic dXNlcjpwYXNz"
    )
    assert target.secure


def test_node_options_hostname_wins_over_host_and_the_port_may_be_a_string() -> None:
    target = parse_options({"hostname": "127.0.0.1", "host": "ignored.test", "port": "81"})
    assert (target.host, target.port, target.host_header) == ("127.0.0.1", 81, b"127.0.0.1:81")


def test_node_options_unix_socket_in_both_spellings() -> None:
    assert parse_options({"socket_path": "/run/app.sock"}).socket_path == "/run/app.sock"
    assert parse_options({"socketPath": "/run/app.sock"}).socket_path == "/run/app.sock"


def test_node_options_get_the_same_idna_and_ipv6_treatment() -> None:
    assert parse_options({"hostname": "bücher.example"}).host_header == b"xn--bcher-kva.example"
    for hostname in ("::1", "[::1]"):
        target = parse_options({"hostname": hostname, "port": 8080})
        assert (target.host, target.host_header) == ("::1", b"[::1]:8080")


def test_node_options_default_protocol_follows_the_caller() -> None:
    assert parse_options({}, WS_SCHEMES).scheme == "ws"
    assert parse_options({"protocol": "wss:"}, WS_SCHEMES).port == 443
    with pytest.raises(ValueError, match="unsupported protocol 'ftp:'"):
        parse_options({"protocol": "ftp:"})
    with pytest.raises(ValueError, match="port out of range"):
        parse_options({"port": 70000})


def test_parse_target_takes_either_form() -> None:
    assert parse_target("http://localhost/") == parse_target({"hostname": "localhost"})


def test_describe_names_a_url_or_options_for_messages() -> None:
    assert describe("http://127.0.0.1:1/x") == "http://127.0.0.1:1/x"
    assert describe({"hostname": "127.0.0.1", "port": 1, "path": "/x"}) == "127.0.0.1:1/x"
