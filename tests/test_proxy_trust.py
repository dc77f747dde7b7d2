"""Behind a proxy, over real sockets: each server kind believes a trusted proxy and nobody else.

For every server (net, tls, http, https, ws, asgi): a PROXY protocol header
(v1 and v2) or forwarding headers (``X-Forwarded-For``, ``Forwarded``) from
a trusted peer set the client's address (and the scheme, for
``X-Forwarded-Proto``); the same bytes from a peer outside
``forwarded_allow_ips`` never do. Loopback plays both parts: the trust list
``["10.0.0.0/8"]`` makes 127.0.0.1 an untrusted stranger. A malformed,
stalled or untrusted PROXY header closes the connection with one INFO line
and no ERROR.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import ssl
import struct
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from _http_server_support import HOST, WAIT
from _tls_support import Identity

import trionet
import trionet._accepted
import trionet.asgi
from trionet.asgi import Receive, Scope, Send
from trionet.testing import ServeFixture

CLIENT = "203.0.113.7"  # TEST-NET-3: only ever a name in a header, never dialled
STRANGERS = ["10.0.0.0/8"]  # a trust list that leaves loopback out
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


@pytest.fixture(autouse=True)
def default_trust_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests that rely on the default list get it, whatever the environment says."""
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)


def proxy_v1(client: str = CLIENT, port: int = 40000) -> bytes:
    return f"PROXY TCP4 {client} 127.0.0.1 {port} 443\r\n".encode()


def proxy_v2(
    client: str = CLIENT, port: int = 40000, *, local: bool = False, padding: int = 1
) -> bytes:
    """A v2 header: PROXY over TCP4 (with a TLV to skip), or LOCAL (a health check)."""
    if local:
        return V2_SIGNATURE + b"\x20\x00\x00\x00"
    block = (
        ipaddress.IPv4Address(client).packed
        + ipaddress.IPv4Address("127.0.0.1").packed
        + struct.pack("!HH", port, 443)
        + b"\x04" + struct.pack("!H", padding) + bytes(padding)  # PP2_TYPE_NOOP
    )
    return V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(block)) + block


async def talk(
    port: int, prefix: bytes, payload: bytes, tls: ssl.SSLContext | None = None
) -> bytes:
    """Send ``prefix`` raw (a PROXY header), then ``payload`` (over TLS if given);
    return all the server sends until it closes."""
    with trio.fail_after(WAIT):
        tcp = await trio.open_tcp_stream(HOST, port)
        stream: trio.abc.Stream = tcp
        try:
            try:
                await tcp.send_all(prefix)
                if tls is not None:
                    stream = trio.SSLStream(tcp, tls, server_hostname="localhost")
                    await stream.do_handshake()
                await stream.send_all(payload)
            except trio.BrokenResourceError:  # closed on us: nothing to read
                return b""
            received = b""
            while True:
                try:
                    data = await stream.receive_some()
                except (trio.BrokenResourceError, ssl.SSLError):
                    break
                if not data:
                    break
                received += data
            return received
        finally:
            await trio.aclose_forcefully(stream)


def get(*headers: str) -> bytes:
    lines = "".join(f"{h}\r\n" for h in headers)
    return f"GET / HTTP/1.1\r\nHost: app.internal\r\nConnection: close\r\n{lines}\r\n".encode()


def body_of(response: bytes) -> Any:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response[:200]
    return json.loads(body)


async def who(req: trionet.http.Request, res: trionet.http.Response) -> None:
    """The app: what the server says about the client."""
    await res.end(json.dumps({"remote": req.remote_address, "scheme": req.scheme,
                              "host": req.host}))  # fmt: skip


def quiet_closes(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The INFO lines about closed connections; fails on any ERROR."""
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    return [r.getMessage() for r in caplog.records if "closed a connection" in r.getMessage()]


# -- net ----------------------------------------------------------------------------------


async def echo_peer(sock: trionet.net.Socket) -> None:
    data = await sock.receive()
    await sock.send(json.dumps({"remote": sock.remote_address, "data": data.decode()}).encode())


@pytest.mark.parametrize("header", [proxy_v1(), proxy_v2()], ids=["v1", "v2"])
async def test_net_a_trusted_proxy_names_the_client_and_no_byte_is_lost(
    serve: ServeFixture, header: bytes
) -> None:
    server = await serve(trionet.net.serve, echo_peer, proxy_protocol=True,
                         forwarded_allow_ips="127.0.0.1")  # fmt: skip
    answer = json.loads(await talk(server.port, header + b"hello after the header", b""))
    assert answer == {"remote": [CLIENT, 40000], "data": "hello after the header"}


async def test_net_a_header_split_across_writes_is_waited_for(serve: ServeFixture) -> None:
    server = await serve(trionet.net.serve, echo_peer, proxy_protocol=True)
    header = proxy_v2()
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream(HOST, server.port)
        async with stream:
            await stream.send_all(header[:10])
            await trio.sleep(0.05)
            await stream.send_all(header[10:] + b"rest")
            answer = json.loads(await stream.receive_some())
    assert answer == {"remote": [CLIENT, 40000], "data": "rest"}


@pytest.mark.parametrize(
    ("padding", "split"), [(1, 20), (1, 30), (5000, 0)], ids=["cut-after-16", "cut-in-v2", "long"]
)
async def test_net_a_server_that_speaks_first_is_not_kept_waiting(
    serve: ServeFixture, padding: int, split: int
) -> None:
    """The reader stops at the header's end: it never waits for bytes the client
    will send only after the server's greeting."""

    async def greet(sock: trionet.net.Socket) -> None:
        await sock.send(f"hello {sock.remote_address[0]}\n".encode())  # type: ignore[index]
        assert await sock.receive() == b"bye"

    server = await serve(trionet.net.serve, greet, proxy_protocol=True)
    header = proxy_v2(padding=padding)
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream(HOST, server.port)
        async with stream:
            if split:
                await stream.send_all(header[:split])
                await trio.sleep(0.05)
                await stream.send_all(header[split:])
            else:
                await stream.send_all(header)
            assert await stream.receive_some() == f"hello {CLIENT}\n".encode()
            await stream.send_all(b"bye")


async def test_net_a_health_check_keeps_the_proxy_address(serve: ServeFixture) -> None:
    server = await serve(trionet.net.serve, echo_peer, proxy_protocol=True)
    answer = json.loads(await talk(server.port, proxy_v2(local=True) + b"ping", b""))
    assert answer["remote"][0] == HOST and answer["data"] == "ping"


async def test_net_an_untrusted_peer_is_closed_before_the_handler(
    serve: ServeFixture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "trionet")
    seen: list[Any] = []

    async def handler(sock: trionet.net.Socket) -> None:
        seen.append(sock.remote_address)

    server = await serve(trionet.net.serve, handler, proxy_protocol=True,
                         forwarded_allow_ips=STRANGERS)  # fmt: skip
    assert await talk(server.port, proxy_v1(), b"data") == b""
    assert seen == []
    [line] = quiet_closes(caplog)
    assert "untrusted" in line


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n",
        V2_SIGNATURE + b"\x21\x99\x00\x00",
    ],
    ids=["no-header", "bad-v1", "bad-v2"],
)
async def test_net_a_malformed_header_closes_with_one_info_line(
    serve: ServeFixture, caplog: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    caplog.set_level(logging.INFO, "trionet")
    server = await serve(trionet.net.serve, echo_peer, proxy_protocol=True)
    assert await talk(server.port, garbage, b"") == b""
    assert len(quiet_closes(caplog)) == 1


async def test_net_a_stalled_header_times_out(
    serve: ServeFixture, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, "trionet")
    monkeypatch.setattr(trionet._accepted, "PROXY_HEADER_TIMEOUT", 0.2)
    server = await serve(trionet.net.serve, echo_peer, proxy_protocol=True)
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream(HOST, server.port)
        async with stream:
            await stream.send_all(b"PROXY TCP4 ")
            assert await stream.receive_some() == b""  # closed by the server
    [line] = quiet_closes(caplog)
    assert "within 0.2s" in line


async def test_net_a_unix_listener_takes_the_header_from_local_proxies(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    path = tmp_path / "pp.sock"
    await nursery.start(partial(trionet.net.serve, echo_peer, path=path, proxy_protocol=True))
    with trio.fail_after(WAIT):
        stream = await trio.open_unix_socket(str(path))
        async with stream:
            await stream.send_all(proxy_v1() + b"via unix")
            answer = json.loads(await stream.receive_some())
    assert answer == {"remote": [CLIENT, 40000], "data": "via unix"}


async def test_net_without_proxy_protocol_the_header_is_just_data(serve: ServeFixture) -> None:
    server = await serve(trionet.net.serve, echo_peer)
    answer = json.loads(await talk(server.port, proxy_v1(), b""))
    assert answer["remote"][0] == HOST and answer["data"].startswith("PROXY TCP4")


# -- tls ----------------------------------------------------------------------------------


async def test_tls_the_header_comes_before_the_handshake(
    serve: ServeFixture, server_identity: Identity, client_ssl_context: ssl.SSLContext
) -> None:
    server = await serve(trionet.tls.serve, echo_peer, proxy_protocol=True,
                         **server_identity.options())  # fmt: skip
    answer = json.loads(await talk(server.port, proxy_v2(), b"secret", client_ssl_context))
    assert answer == {"remote": [CLIENT, 40000], "data": "secret"}


async def test_tls_an_untrusted_proxy_header_never_reaches_the_handshake(
    serve: ServeFixture, server_identity: Identity, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "trionet")
    server = await serve(trionet.tls.serve, echo_peer, proxy_protocol=True,
                         forwarded_allow_ips=STRANGERS, **server_identity.options())  # fmt: skip
    assert await talk(server.port, proxy_v2(), b"") == b""
    assert len(quiet_closes(caplog)) == 1


# -- http -----------------------------------------------------------------------------------


async def test_http_x_forwarded_for_from_a_trusted_proxy(serve: ServeFixture) -> None:
    server = await serve(trionet.http.serve, who, proxy_headers=True)  # loopback: the default
    response = await talk(server.port, b"", get(
        f"X-Forwarded-For: {CLIENT}", "X-Forwarded-Proto: https",
        "X-Forwarded-Host: example.com"))  # fmt: skip
    assert body_of(response) == {"remote": [CLIENT, 0], "scheme": "https",
                                 "host": "example.com"}  # fmt: skip


async def test_http_rfc7239_forwarded_from_a_trusted_proxy(serve: ServeFixture) -> None:
    server = await serve(trionet.http.serve, who, proxy_headers=True,
                         forwarded_allow_ips="127.0.0.1")  # fmt: skip
    forwarded = 'Forwarded: for="[2001:db8::7]:4711";proto=https;host=example.com'
    assert body_of(await talk(server.port, b"", get(forwarded))) == {
        "remote": ["2001:db8::7", 4711], "scheme": "https", "host": "example.com"}  # fmt: skip


@pytest.mark.parametrize(
    "options",
    [{"proxy_headers": True, "forwarded_allow_ips": STRANGERS}, {}],
    ids=["untrusted-peer", "proxy-headers-off"],
)
async def test_http_forged_headers_change_nothing(
    serve: ServeFixture, options: dict[str, Any]
) -> None:
    server = await serve(trionet.http.serve, who, **options)
    response = await talk(server.port, b"", get(
        f"X-Forwarded-For: {CLIENT}", "X-Forwarded-Proto: https",
        "X-Forwarded-Host: evil.example", f"Forwarded: for={CLIENT}"))  # fmt: skip
    answer = body_of(response)
    assert answer["remote"][0] == HOST
    assert (answer["scheme"], answer["host"]) == ("http", "app.internal")


@pytest.mark.parametrize("header", [proxy_v1(), proxy_v2()], ids=["v1", "v2"])
async def test_http_proxy_protocol(serve: ServeFixture, header: bytes) -> None:
    server = await serve(trionet.http.serve, who, proxy_protocol=True)
    assert body_of(await talk(server.port, header, get()))["remote"] == [CLIENT, 40000]


async def test_http_proxy_protocol_from_an_untrusted_peer_is_closed(
    serve: ServeFixture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "trionet")
    server = await serve(trionet.http.serve, who, proxy_protocol=True,
                         forwarded_allow_ips=STRANGERS)  # fmt: skip
    assert await talk(server.port, proxy_v1(), get()) == b""
    assert len(quiet_closes(caplog)) == 1


async def test_http_a_malformed_proxy_header_is_closed_not_answered(
    serve: ServeFixture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "trionet")
    server = await serve(trionet.http.serve, who, proxy_protocol=True)
    assert await talk(server.port, b"PROXY TCP4 1.2.3.4\r\n", get()) == b""
    assert len(quiet_closes(caplog)) == 1


async def test_http_unix_socket_peers_are_trusted_only_when_listed(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async def fetch(path: Path) -> Any:
        with trio.fail_after(WAIT):
            stream = await trio.open_unix_socket(str(path))
            async with stream:
                await stream.send_all(get(f"X-Forwarded-For: {CLIENT}"))
                received = b""
                while data := await stream.receive_some():
                    received += data
        return body_of(received)

    default, strict = tmp_path / "default.sock", tmp_path / "strict.sock"
    await nursery.start(partial(trionet.http.serve, who, path=default, proxy_headers=True,
                                forwarded_allow_ips="127.0.0.1,::1,unix"))  # fmt: skip
    await nursery.start(partial(trionet.http.serve, who, path=strict, proxy_headers=True,
                                forwarded_allow_ips=STRANGERS))  # fmt: skip
    assert (await fetch(default))["remote"] == [CLIENT, 0]
    assert (await fetch(strict))["remote"] == ""  # an unnamed Unix client, as before


# -- https ----------------------------------------------------------------------------------


async def test_https_scheme_is_https_unless_a_trusted_proxy_says_otherwise(
    serve: ServeFixture, server_identity: Identity, client_ssl_context: ssl.SSLContext
) -> None:
    trusted = await serve(trionet.https.serve, who, proxy_headers=True,
                          **server_identity.options())  # fmt: skip
    untrusted = await serve(trionet.https.serve, who, proxy_headers=True,
                            forwarded_allow_ips=STRANGERS, **server_identity.options())  # fmt: skip
    plain = body_of(await talk(trusted.port, b"", get(), client_ssl_context))
    assert plain["scheme"] == "https"
    forwarded = get(f"X-Forwarded-For: {CLIENT}", "X-Forwarded-Proto: http")
    answer = body_of(await talk(trusted.port, b"", forwarded, client_ssl_context))
    assert (answer["remote"], answer["scheme"]) == ([CLIENT, 0], "http")
    forged = body_of(await talk(untrusted.port, b"", forwarded, client_ssl_context))
    assert (forged["remote"][0], forged["scheme"]) == (HOST, "https")


async def test_https_proxy_protocol_before_tls(
    serve: ServeFixture, server_identity: Identity, client_ssl_context: ssl.SSLContext
) -> None:
    server = await serve(trionet.https.serve, who, proxy_protocol=True,
                         **server_identity.options())  # fmt: skip
    answer = body_of(await talk(server.port, proxy_v1(), get(), client_ssl_context))
    assert answer["remote"] == [CLIENT, 40000] and answer["scheme"] == "https"


# -- ws -------------------------------------------------------------------------------------


async def ws_who(ws: trionet.ws.WebSocket) -> None:
    await ws.send(json.dumps({"remote": ws.remote_address, "scheme": ws.request.scheme}))


async def ws_answer(port: int, **options: Any) -> Any:
    with trio.fail_after(WAIT):
        async with trionet.ws.connect(f"ws://{HOST}:{port}/", **options) as ws:
            return json.loads(await ws.receive())


async def test_ws_forwarding_headers_from_a_trusted_proxy(serve: ServeFixture) -> None:
    server = await serve(trionet.ws.serve, ws_who, proxy_headers=True)
    headers = {"Forwarded": f"for={CLIENT};proto=https"}
    assert await ws_answer(server.port, headers=headers) == {"remote": [CLIENT, 0],
                                                            "scheme": "https"}  # fmt: skip


async def test_ws_forged_headers_from_an_untrusted_peer(serve: ServeFixture) -> None:
    server = await serve(trionet.ws.serve, ws_who, proxy_headers=True,
                         forwarded_allow_ips=STRANGERS)  # fmt: skip
    headers = {"X-Forwarded-For": CLIENT, "X-Forwarded-Proto": "https"}
    answer = await ws_answer(server.port, headers=headers)
    assert (answer["remote"][0], answer["scheme"]) == (HOST, "http")


async def test_ws_proxy_protocol(serve: ServeFixture) -> None:
    server = await serve(trionet.ws.serve, ws_who, proxy_protocol=True)
    upgrade = get("Upgrade: websocket", "Sec-WebSocket-Version: 13",
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==").replace(
                      b"Connection: close", b"Connection: Upgrade")  # fmt: skip
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream(HOST, server.port)
        async with stream:
            await stream.send_all(proxy_v2() + upgrade)
            received = frame = b""
            while len(frame) < 2 or len(frame) < 2 + frame[1]:  # until one whole frame
                received += await stream.receive_some()
                frame = received.partition(b"\r\n\r\n")[2]
    assert received.startswith(b"HTTP/1.1 101")
    assert frame[0] == 0x81 and frame[1] < 126  # one short text frame
    assert json.loads(frame[2 : 2 + frame[1]])["remote"] == [CLIENT, 40000]


# -- asgi -----------------------------------------------------------------------------------


async def asgi_who(scope: Scope, receive: Receive, send: Send) -> None:
    info = {"client": scope["client"], "scheme": scope["scheme"],
            "host": dict(scope["headers"]).get(b"host", b"").decode()}  # fmt: skip
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(info)})
        await send({"type": "websocket.close"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps(info).encode()})


async def start_asgi(nursery: trio.Nursery, **options: Any) -> int:
    server = await nursery.start(
        partial(trionet.asgi.serve, asgi_who, 0, host=HOST, lifespan="off", **options)
    )
    assert server.port is not None
    return server.port


async def test_asgi_scope_from_a_trusted_proxy(nursery: trio.Nursery) -> None:
    port = await start_asgi(nursery, proxy_headers=True, forwarded_allow_ips="127.0.0.1")
    forwarded = get(f"X-Forwarded-For: {CLIENT}", "X-Forwarded-Proto: https",
                    "X-Forwarded-Host: example.com")  # fmt: skip
    assert body_of(await talk(port, b"", forwarded)) == {
        "client": [CLIENT, 0], "scheme": "https", "host": "example.com"}  # fmt: skip
    headers = {"X-Forwarded-For": CLIENT, "X-Forwarded-Proto": "https"}
    answer = await ws_answer(port, headers=headers)
    assert (answer["client"], answer["scheme"]) == ([CLIENT, 0], "wss")


async def test_asgi_forged_headers_from_an_untrusted_peer(nursery: trio.Nursery) -> None:
    port = await start_asgi(nursery, proxy_headers=True, forwarded_allow_ips=STRANGERS)
    forged = get(f"X-Forwarded-For: {CLIENT}", "X-Forwarded-Proto: https",
                 "X-Forwarded-Host: evil.example")  # fmt: skip
    answer = body_of(await talk(port, b"", forged))
    assert answer["client"][0] == HOST
    assert (answer["scheme"], answer["host"]) == ("http", "app.internal")
    ws_answer_ = await ws_answer(port, headers={"X-Forwarded-For": CLIENT,
                                                "X-Forwarded-Proto": "https"})  # fmt: skip
    assert (ws_answer_["client"][0], ws_answer_["scheme"]) == (HOST, "ws")


async def test_asgi_proxy_protocol(nursery: trio.Nursery) -> None:
    port = await start_asgi(nursery, proxy_protocol=True)
    assert body_of(await talk(port, proxy_v1(), get()))["client"] == [CLIENT, 40000]


async def test_asgi_proxy_protocol_from_an_untrusted_peer(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "trionet")
    port = await start_asgi(nursery, proxy_protocol=True, forwarded_allow_ips=STRANGERS)
    assert await talk(port, proxy_v2(), get()) == b""
    assert len(quiet_closes(caplog)) == 1


def test_the_serve_command_takes_uvicorns_flags() -> None:
    from trionet._cli import build_parser

    args = build_parser().parse_args(
        ["serve", "main:app", "--proxy-headers", "--forwarded-allow-ips", "10.0.0.0/8,unix",
         "--proxy-protocol"]
    )  # fmt: skip
    assert (args.proxy_headers, args.forwarded_allow_ips, args.proxy_protocol) == (
        True, "10.0.0.0/8,unix", True)  # fmt: skip
    defaults = build_parser().parse_args(["serve", "main:app"])
    assert (defaults.proxy_headers, defaults.forwarded_allow_ips) == (False, None)
