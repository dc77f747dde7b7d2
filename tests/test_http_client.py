"""trionet.http.request / stream / connect_tunnel / upgrade against real peers on loopback.

Peers: the counting h11 server of ``http_client_support``, raw ``trionet.net``
servers sending crafted bytes for the bad-server cases, and Node's ``http``
module both ways.
"""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import h11
import pytest
import trio
import trio.testing
import trustme
from conftest import PEERS
from http_client_support import Gate, read_head, serve_h11, serve_raw

import trionet
from trionet import http
from trionet.agent import Agent
from trionet.http._client import upgrade
from trionet.http._client_upgrade import MAX_REFUSAL_BODY, REFUSAL_BODY_TIMEOUT


def url(port: int, path: str = "/") -> str:
    return f"http://127.0.0.1:{port}{path}"


def echo(request: h11.Request, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """Reply with what arrived: method, target, headers and body as JSON."""
    seen = {
        "method": request.method.decode(),
        "target": request.target.decode(),
        "headers": {k.decode(): v.decode() for k, v in request.headers},
        "body": body.decode(),
    }
    return 200, [("content-type", "application/json; charset=utf-8")], json.dumps(seen).encode()


# -- the basics ---------------------------------------------------------------------------
async def test_get_returns_status_headers_and_body() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, _ = await serve_h11(nursery)
            res = await http.request(url(port, "/hi"), agent=Agent())
            assert (res.status, res.reason, res.http_version) == (200, "", "1.1")
            assert res.headers["content-type"] == "text/plain"
            assert res.headers["Content-Length"] == "5"  # any case finds it
            assert res.body == b"hello" and res.text() == "hello"
            nursery.cancel_scope.cancel()


async def test_post_body_headers_and_json() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, _ = await serve_h11(nursery, echo)
            res = await http.request(
                url(port, "/submit?x=1"),
                method="POST",
                headers={"X-Token": "abc", "X-Multi": ["1", "2"]},
                body="héllo",
                agent=Agent(),
            )
            seen = res.json()
            assert seen["method"] == "POST" and seen["target"] == "/submit?x=1"
            assert seen["headers"]["x-token"] == "abc"
            assert seen["headers"]["content-length"] == str(len("héllo".encode()))
            assert seen["headers"]["host"] == f"127.0.0.1:{port}"
            assert seen["headers"]["connection"] == "keep-alive"
            assert seen["body"] == "héllo"
            nursery.cancel_scope.cancel()


async def test_async_iterable_body_is_sent_chunked() -> None:
    async def parts() -> AsyncIterator[bytes]:
        for piece in (b"one ", b"two ", b"three"):
            yield piece
            await trio.sleep(0)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, _ = await serve_h11(nursery, echo)
            res = await http.request(url(port), method="PUT", body=parts(), agent=Agent())
            seen = res.json()
            assert seen["headers"]["transfer-encoding"] == "chunked"
            assert seen["body"] == "one two three"
            nursery.cancel_scope.cancel()


async def test_node_options_dict_with_auth() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, _ = await serve_h11(nursery, echo)
            options = {
                "hostname": "127.0.0.1",
                "port": port,
                "path": "/opts",
                "method": "DELETE",
                "headers": {"x-from": "options"},
                "auth": "user:pa ss",
            }
            seen = (await http.request(options, agent=Agent())).json()
            assert (seen["method"], seen["target"]) == ("DELETE", "/opts")
            assert seen["headers"]["x-from"] == "options"
            assert seen["headers"]["authorization"] == "Basic dXNlcjpwYSBzcw=="
            nursery.cancel_scope.cancel()


async def test_http_over_a_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "http.sock")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await serve_h11(nursery, echo, path=path)
            agent = Agent()
            for _ in range(2):
                res = await http.request({"socket_path": path, "path": "/unix"}, agent=agent)
                assert res.json()["target"] == "/unix"
            assert agent.free_sockets == {f"unix:{path}": 1}
            await agent.aclose()
            nursery.cancel_scope.cancel()


async def test_a_non_ascii_host_goes_on_the_wire_in_its_idna_form(tmp_path: Path) -> None:
    """The Host header carries the ASCII (punycode) name, as Node's URL makes it."""
    path = str(tmp_path / "http.sock")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await serve_h11(nursery, echo, path=path)
            options = {"socket_path": path, "hostname": "bücher.example", "port": 8080}
            seen = (await http.request(options, agent=False)).json()
            assert seen["headers"]["host"] == "xn--bcher-kva.example:8080"
            nursery.cancel_scope.cancel()


async def test_second_request_reuses_the_connection() -> None:
    agent = Agent()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, stats = await serve_h11(nursery)
            first = await http.request(url(port), agent=agent)
            second = await http.request(url(port), agent=agent)
            assert (first.reused_socket, second.reused_socket) == (False, True)
            assert stats.total == 1
            nursery.cancel_scope.cancel()


async def test_agent_false_opens_one_connection_per_request() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, stats = await serve_h11(nursery, keep_requests=True)
            for _ in range(5):
                assert (await http.request(url(port), agent=False)).body == b"hello"
            assert stats.total == 5
            assert [dict(r.headers)[b"connection"] for r in stats.seen] == [b"close"] * 5
            await trio.sleep(0.05)
            assert stats.open == 0
            nursery.cancel_scope.cancel()


async def test_head_response_has_no_body() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, _ = await serve_h11(nursery)
            agent = Agent()
            res = await http.request(url(port), method="HEAD", agent=agent)
            assert res.status == 200 and res.body == b""
            assert (await http.request(url(port), agent=agent)).body == b"hello"
            nursery.cancel_scope.cancel()


# -- streaming ----------------------------------------------------------------------------
async def test_stream_yields_chunks_and_returns_the_connection() -> None:
    agent = Agent()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, _ = await serve_h11(nursery)
            async with http.stream(url(port), agent=agent) as res:
                assert res.status == 200 and res.body == b""
                chunks = [chunk async for chunk in res]
            assert b"".join(chunks) == b"hello"
            assert agent.free_sockets == {f"127.0.0.1:{port}": 1}
            async with http.stream(url(port), agent=agent) as res:
                assert await res.read() == b"hello" and res.body == b"hello"
            nursery.cancel_scope.cancel()


async def big_body(sock: trionet.net.Socket) -> None:
    """A response of 1 MB that stalls half-way."""
    await read_head(sock)
    await sock.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
    await trio.sleep(10)


async def test_abandoned_stream_closes_its_connection() -> None:
    agent = Agent()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, big_body)
            async with http.stream(url(port), agent=agent) as res:
                async for _ in res:
                    break
            assert agent.sockets == {} and agent.free_sockets == {}
            nursery.cancel_scope.cancel()


async def test_cancelled_mid_body_closes_the_connection() -> None:
    agent = Agent()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, big_body)
            with trio.move_on_after(0.1) as scope:
                await http.request(url(port), agent=agent)
            assert scope.cancelled_caught
            assert agent.sockets == {} and agent.free_sockets == {}
            nursery.cancel_scope.cancel()


async def test_timeout_raises_trionet_timeout_error() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, big_body)
            agent = Agent()
            with pytest.raises(trionet.TimeoutError, match=r"timed out after 0\.1s"):
                await http.request(url(port), agent=agent, timeout=0.1)
            assert agent.sockets == {}
            nursery.cancel_scope.cancel()


# -- expect: 100-continue -------------------------------------------------------------------
async def test_expect_continue_sends_the_body_after_100() -> None:
    async def continuing(sock: trionet.net.Socket) -> None:
        head = await read_head(sock)
        assert b"expect: 100-continue" in head.lower()
        await sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await sock.receive()
        await sock.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, continuing)
            res = await http.request(
                url(port), method="POST", body=b"payload", expect_continue=True, agent=Agent()
            )
            assert (res.status, res.body) == (200, b"payload")
            nursery.cancel_scope.cancel()


async def test_expect_continue_refused_never_sends_the_body() -> None:
    received: list[bytes] = []

    async def refusing(sock: trionet.net.Socket) -> None:
        await read_head(sock)
        await sock.send(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
        with trio.move_on_after(0.2):
            received.append(await sock.receive())

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, refusing)
            agent = Agent()
            res = await http.request(
                url(port), method="POST", body=b"payload", expect_continue=True, agent=agent
            )
            assert res.status == 417
            assert agent.free_sockets == {}  # closed: the body was owed
            await trio.sleep(0.3)
            assert b"payload" not in b"".join(received)
            nursery.cancel_scope.cancel()


# -- bad servers ------------------------------------------------------------------------------
async def reply_with(data: bytes, sock: trionet.net.Socket) -> None:
    await read_head(sock)
    await sock.send(data)


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (b"SPDY/3 200 OK\r\n\r\n", "bad response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "received 5 bytes, expected 10"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "cut short"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabEXTRA", "longer than it declared"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 20000 + b"\r\n\r\n", "bad response"),
    ],
    ids=["garbage", "body-cut-short", "head-cut-short", "longer-than-declared", "huge-head"],
)
async def test_bad_responses_raise_protocol_error(response: bytes, message: str) -> None:
    agent = Agent()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, partial(reply_with, response))
            with pytest.raises(trionet.ProtocolError, match=message):
                await http.request(url(port), agent=agent)
            assert agent.sockets == {} and agent.free_sockets == {}
            nursery.cancel_scope.cancel()


async def test_refused_connection_raises_connect_error() -> None:
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with trio.fail_after(10), pytest.raises(trionet.ConnectError, match=f"127.0.0.1:{port}"):
        await http.request(url(port), agent=Agent())


async def test_server_closing_idle_connection_is_not_reused() -> None:
    """The server closes an idle keep-alive connection: both GET and POST go on a new one."""
    agent = Agent()
    closed = trio.Semaphore(0)

    async def once_then_close(sock: trionet.net.Socket) -> None:
        await reply_with(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", sock)
        await sock.aclose()
        closed.release()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, once_then_close)
            for method in ("GET", "POST", "GET"):
                res = await http.request(url(port), method=method, agent=agent)
                assert (res.status, res.reused_socket) == (200, False)
                await closed.acquire()  # the server has closed its side
                await trio.sleep(0.01)  # and its FIN has crossed loopback
            nursery.cancel_scope.cancel()


async def test_stale_connection_race_retries_get_and_fails_post() -> None:
    """The server closes a kept-alive connection just as our next request arrives:
    an idempotent GET is retried on a new connection, a POST raises ConnectError."""
    agent = Agent()

    async def answer_one_then_drop_the_next(sock: trionet.net.Socket) -> None:
        await reply_with(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", sock)
        await read_head(sock)  # the second request is read, then dropped unanswered

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, answer_one_then_drop_the_next)
            await http.request(url(port), agent=agent)
            res = await http.request(url(port), agent=agent)
            assert (res.status, res.body, res.reused_socket) == (200, b"ok", False)
            with pytest.raises(trionet.ConnectError, match=r"POST .*not retried"):
                await http.request(url(port), method="POST", body=b"x", agent=agent)
            assert agent.sockets == {}
            nursery.cancel_scope.cancel()


async def test_connection_close_response_is_not_pooled() -> None:
    def closing(request: h11.Request, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        return 200, [("connection", "close")], b"bye"

    agent = Agent()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, stats = await serve_h11(nursery, closing)
            assert (await http.request(url(port), agent=agent)).body == b"bye"
            assert (await http.request(url(port), agent=agent)).body == b"bye"
            assert agent.free_sockets == {} and stats.total == 2
            nursery.cancel_scope.cancel()


# -- CONNECT and upgrade --------------------------------------------------------------------------
async def test_connect_tunnel_through_a_proxy() -> None:
    async def echo_target(sock: trionet.net.Socket) -> None:
        await trionet.net.pipe(sock, sock)

    async def proxy(sock: trionet.net.Socket) -> None:
        head = await read_head(sock)
        request_line = head.split(b"\r\n", 1)[0].decode()
        method, target, _ = request_line.split(" ")
        assert method == "CONNECT"
        host, port = target.rsplit(":", 1)
        upstream = await trionet.net.connect(int(port), host)
        await sock.send(b"HTTP/1.1 200 Connection Established\r\n\r\nwelcome|")
        async with trio.open_nursery() as pipes:
            pipes.start_soon(trionet.net.pipe, sock, upstream)
            pipes.start_soon(trionet.net.pipe, upstream, sock)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            target_port = await serve_raw(nursery, echo_target)
            proxy_port = await serve_raw(nursery, proxy)
            tunnel = await http.connect_tunnel(url(proxy_port), f"127.0.0.1:{target_port}")
            assert isinstance(tunnel, trionet.net.Socket)
            assert await tunnel.receive() == b"welcome|"  # bytes after the 200 come first
            await tunnel.send(b"through the tunnel")
            assert await tunnel.receive() == b"through the tunnel"
            await tunnel.aclose()
            nursery.cancel_scope.cancel()


async def test_connect_tunnel_refused_by_the_proxy() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(
                nursery, partial(reply_with, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            )
            with pytest.raises(trionet.ConnectError, match="403 Forbidden"):
                await http.connect_tunnel(url(port), "example.invalid:443")
            nursery.cancel_scope.cancel()


async def test_upgrade_returns_the_101_the_socket_and_leftover_bytes() -> None:
    async def switching(sock: trionet.net.Socket) -> None:
        head = await read_head(sock)
        assert b"upgrade: test" in head.lower()
        await sock.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\nEARLY"
        )
        await trionet.net.pipe(sock, sock)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, switching)
            res, sock, leftover = await upgrade(
                f"ws://127.0.0.1:{port}/chat", headers={"Connection": "Upgrade", "Upgrade": "test"}
            )
            assert res.status == 101 and res.headers["upgrade"] == "test"
            assert leftover == b"EARLY" and sock is not None
            await sock.send(b"new protocol")
            assert await sock.receive() == b"new protocol"
            await sock.aclose()
            nursery.cancel_scope.cancel()


# -- Node interop ------------------------------------------------------------------------
async def test_against_a_node_keep_alive_server(node: str) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(
                partial(
                    trio.run_process,
                    [node, str(PEERS / "http_client_server.js")],
                    stdout=subprocess.PIPE,
                    check=False,
                )
            )
            assert proc.stdout is not None
            port = int((await proc.stdout.receive_some(100)).decode())
            agent = Agent(max_sockets=3)
            try:
                res = await http.request(url(port, "/hello"), agent=agent)
                assert (res.status, res.body) == (200, b"hello")
                assert res.headers["keep-alive"] == "timeout=5"
                chunked = await http.request(url(port, "/chunked"), agent=agent)
                assert chunked.headers["transfer-encoding"] == "chunked"
                assert chunked.body == b"abc"
                posted = await http.request(
                    url(port, "/echo"),
                    method="POST",
                    headers={"content-type": "text/plain"},
                    body="to node",
                    agent=agent,
                )
                assert (posted.text(), posted.headers["content-type"]) == ("to node", "text/plain")

                async def get() -> None:
                    assert (await http.request(url(port, "/hello"), agent=agent)).body == b"hello"

                async with trio.open_nursery() as clients:
                    for _ in range(50):
                        clients.start_soon(get)
                stats = (await http.request(url(port, "/stats"), agent=agent)).json()
                assert stats["max_concurrent"] <= 3 and stats["connections"] <= 3
            finally:
                await agent.aclose()
                proc.terminate()


# -- HTTPS (the layer trionet.https builds on) ---------------------------------------------
async def test_https_request_with_a_per_request_context(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext, tls_ca: trustme.CA
) -> None:
    agent = Agent()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, stats = await serve_h11(nursery, ssl_context=server_ssl_context)
            target = f"https://localhost:{port}/"
            for _ in range(3):
                res = await http.request(target, agent=agent, ssl_context=client_ssl_context)
                assert res.body == b"hello"
            assert stats.total == 1  # TLS connections are pooled too
            # Another context (another identity) never gets that connection.
            other = ssl.create_default_context()
            tls_ca.configure_trust(other)
            await http.request(target, agent=agent, ssl_context=other)
            assert stats.total == 2
            assert agent.free_sockets == {f"localhost:{port}": 2}
            await agent.aclose()
            nursery.cancel_scope.cancel()


async def test_https_untrusted_certificate_raises_tls_error(
    server_ssl_context: ssl.SSLContext,
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, _ = await serve_h11(nursery, ssl_context=server_ssl_context)
            agent = Agent(ssl_context=ssl.create_default_context())
            with pytest.raises(trionet.TLSError, match="certificate verify failed"):
                await http.request(f"https://localhost:{port}/", agent=agent)
            assert agent.sockets == {}
            nursery.cancel_scope.cancel()


# -- against trionet's own server -------------------------------------------------------------
async def test_against_trionet_http_server_counting_connections() -> None:
    """The seed scenario on trionet's server: 10 requests, at most 5 connections."""
    sockets: set[int] = set()
    gate = Gate()

    async def app(req: http.Request, res: http.Response) -> None:
        sockets.add(id(req.socket))
        await gate.hold()
        await res.end(f"you asked for {req.path}")

    agent = Agent(max_sockets=5)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(http.serve, app, 0, host="127.0.0.1"))
            bodies: list[bytes] = []

            async def get(i: int) -> None:
                bodies.append((await http.request(url(server.port, f"/{i}"), agent=agent)).body)

            async with trio.open_nursery() as clients:
                for i in range(10):
                    clients.start_soon(get, i)
                await gate.reached(5)
                await trio.testing.wait_all_tasks_blocked()
                assert agent.requests == {f"127.0.0.1:{server.port}": 5}
                assert server.connections == 5
                gate.open()
            assert sorted(bodies) == sorted(f"you asked for /{i}".encode() for i in range(10))
            assert len(sockets) == 5
            await agent.aclose()
            nursery.cancel_scope.cancel()


async def test_keep_alive_hint_of_trionet_server_is_honoured() -> None:
    async def app(req: http.Request, res: http.Response) -> None:
        await res.end("ok")

    agent = Agent()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            short = await nursery.start(
                partial(http.serve, app, 0, host="127.0.0.1", keep_alive_timeout=0.2)
            )
            first = await http.request(url(short.port), agent=agent)
            assert first.headers["keep-alive"] == "timeout=0.2"
            assert agent.free_sockets == {}  # the hint leaves nothing after the 1 s margin
            long = await nursery.start(partial(http.serve, app, 0, host="127.0.0.1"))
            assert (await http.request(url(long.port), agent=agent)).status == 200
            assert agent.free_sockets == {f"127.0.0.1:{long.port}": 1}
            nursery.cancel_scope.cancel()


async def test_node_client_against_trionet_server(node: str) -> None:
    async def app(req: http.Request, res: http.Response) -> None:
        await res.end("from trionet")

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(http.serve, app, 0, host="127.0.0.1"))
            done = await trio.run_process(
                [node, str(PEERS / "http_client_node.js"), url(server.port), "200", "20", "5"],
                capture_stdout=True,
            )
            report = json.loads(done.stdout)
            assert report["ok"] == 200 and report["statuses"] == {"200": 200}
            assert report["bodies"][0] == "from trionet"
            assert report["sockets_created"] == 5  # Node's keep-alive agent reused them
            nursery.cancel_scope.cancel()


async def test_connect_tunnel_through_the_servers_on_connect_hook() -> None:
    """trionet.http.serve(on_connect=...) as a tunnelling proxy, the client's CONNECT through it."""

    async def echo_target(sock: trionet.net.Socket) -> None:
        await trionet.net.pipe(sock, sock)

    async def on_connect(req: http.Request, sock: trionet.net.Socket, head: bytes) -> None:
        host, port = req.url.rsplit(":", 1)
        upstream = await trionet.net.connect(int(port), host)
        await sock.send(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        if head:
            await upstream.send(head)
        async with trio.open_nursery() as pipes:
            pipes.start_soon(trionet.net.pipe, sock, upstream)
            pipes.start_soon(trionet.net.pipe, upstream, sock)

    async def app(req: http.Request, res: http.Response) -> None:
        await res.end("not a proxy request")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            target_port = await serve_raw(nursery, echo_target)
            proxy = await nursery.start(
                partial(http.serve, app, 0, host="127.0.0.1", on_connect=on_connect)
            )
            tunnel = await http.connect_tunnel(url(proxy.port), f"127.0.0.1:{target_port}")
            await tunnel.send(b"ping through the proxy")
            assert await tunnel.receive() == b"ping through the proxy"
            await tunnel.aclose()
            nursery.cancel_scope.cancel()


async def test_invalid_requests_raise_value_error_before_sending() -> None:
    with pytest.raises(ValueError, match="invalid request"):
        await http.request("http://127.0.0.1:1/", headers={"x": "a\r\nInjected: 1"})
    with pytest.raises(ValueError, match="unsupported URL scheme"):
        await http.request("ftp://127.0.0.1/")


async def test_non_ascii_path_is_percent_encoded() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, _ = await serve_h11(nursery, echo)
            seen = (await http.request(url(port, "/café?q=ü"), agent=Agent())).json()
            assert seen["target"] == "/caf%C3%A9?q=%C3%BC"
            nursery.cancel_scope.cancel()


async def test_upgrade_refused_returns_the_response_and_no_socket() -> None:
    refusal = b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 4\r\n\r\nnope"
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, partial(reply_with, refusal))
            res, sock, leftover = await upgrade(
                url(port), headers={"Connection": "Upgrade", "Upgrade": "test"}
            )
            assert (res.status, res.body, sock, leftover) == (426, b"nope", None, b"")
            nursery.cancel_scope.cancel()


async def test_upgrade_keeps_a_refusals_body_up_to_the_cap() -> None:
    """A refusal's body explains it: the first MAX_REFUSAL_BODY bytes, the rest dropped."""
    size = 16 * MAX_REFUSAL_BODY
    refusal = f"HTTP/1.1 403 Forbidden\r\nContent-Length: {size}\r\n\r\n".encode()

    async def flood(sock: trionet.net.Socket) -> None:
        with trio.move_on_after(5):
            await reply_with(refusal + b"x" * size, sock)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, flood)
            res, sock, _ = await upgrade(
                url(port), headers={"Connection": "Upgrade", "Upgrade": "test"}
            )
            assert (res.status, sock) == (403, None)
            assert res.body == b"x" * MAX_REFUSAL_BODY
            nursery.cancel_scope.cancel()


async def test_upgrade_waits_for_a_refusals_body_a_bounded_time() -> None:
    """A server that sends a refusal's head and stalls holds the caller one second at most."""
    stalled = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100\r\n\r\nbusy, "

    async def stall(sock: trionet.net.Socket) -> None:
        await reply_with(stalled, sock)
        await trio.sleep_forever()

    with trio.fail_after(REFUSAL_BODY_TIMEOUT + 5):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, stall)
            started = trio.current_time()
            res, sock, _ = await upgrade(
                url(port), headers={"Connection": "Upgrade", "Upgrade": "test"}
            )
            waited = trio.current_time() - started
            assert (res.status, res.body, sock) == (503, b"busy, ", None)
            assert REFUSAL_BODY_TIMEOUT <= waited < REFUSAL_BODY_TIMEOUT + 1
            nursery.cancel_scope.cancel()


async def test_upgrade_keeps_a_malformed_refusal_body_as_far_as_it_went() -> None:
    """The status is the answer; a broken chunked body is not an error on top of it."""
    broken = b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nno!\n\r\nZZ\r\n"

    async def reply_and_close(sock: trionet.net.Socket) -> None:
        await reply_with(broken, sock)
        await sock.aclose()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, reply_and_close)
            res, sock, _ = await upgrade(
                url(port), headers={"Connection": "Upgrade", "Upgrade": "test"}
            )
            assert (res.status, res.body, sock) == (400, b"no!\n", None)
            nursery.cancel_scope.cancel()


def test_keep_alive_header_parsing() -> None:
    from trionet.http._client_response import _keep_alive_timeout

    assert _keep_alive_timeout(b"timeout=5, max=1000") == 5.0
    assert _keep_alive_timeout(b"max=3,Timeout = 2.5") == 2.5
    assert _keep_alive_timeout(b"timeout=soon") is None
    assert _keep_alive_timeout(b"max=3") is None


def test_pool_key_separates_tls_identities_but_not_names() -> None:
    from trionet.http._client_conn import Origin

    one, two = ssl.create_default_context(), ssl.create_default_context()
    a = Origin("https", "example.test", 443, None, one)
    b = Origin("https", "example.test", 443, None, two)
    plain = Origin("http", "example.test", 443, None, None)
    assert a.name == b.name == plain.name == "example.test:443"
    assert len({a.key, b.key, plain.key}) == 3
    assert Origin("http", "localhost", 80, "/run/x.sock", None).name == "unix:/run/x.sock"


async def test_repeated_headers_joined_and_distinct() -> None:
    cookies = (
        b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT\r\n"
        b"Set-Cookie: b=2\r\nVia: one\r\nVia: two\r\nContent-Length: 0\r\n\r\n"
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, partial(reply_with, cookies))
            res = await http.request(url(port), agent=Agent())
            assert res.headers["via"] == "one, two"
            assert res.headers_distinct["set-cookie"] == [
                "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT",
                "b=2",
            ]
            assert res.raw_headers[2] == (b"Via", b"one")
            # The one Headers class of both sides: any-case lookup, get_all unjoined.
            assert res.headers["Set-Cookie"] == "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT\nb=2"
            assert res.headers.get_all("VIA") == ["one", "two"]
            nursery.cancel_scope.cancel()
