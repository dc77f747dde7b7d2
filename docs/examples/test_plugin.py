"""Tests written with trionet's pytest plugin: the fixtures come with trionet, no conftest."""

import ssl

import pytest
import trustme

import trionet

pytestmark = pytest.mark.trio  # or trio_mode = true in your pytest configuration


async def hello(req: trionet.http.Request, res: trionet.http.Response) -> None:
    await res.end("hello world\n")


async def echo(sock: trionet.net.Socket) -> None:
    await trionet.net.pipe(sock, sock)


async def test_http(serve: trionet.testing.ServeFixture) -> None:
    server = await serve(trionet.http.serve, hello)  # 127.0.0.1, a free port
    res = await trionet.http.request(f"http://127.0.0.1:{server.port}/")
    assert res.body == b"hello world\n"


async def test_tcp(serve: trionet.testing.ServeFixture) -> None:
    server = await serve(trionet.net.serve, echo)
    sock = await trionet.net.connect(server.port, "127.0.0.1")
    await sock.send(b"ping")
    assert await sock.receive() == b"ping"
    await sock.aclose()


async def test_https(
    serve: trionet.testing.ServeFixture, server_ssl_context: ssl.SSLContext, tls_ca: trustme.CA
) -> None:
    server = await serve(trionet.https.serve, hello, ssl_context=server_ssl_context)
    res = await trionet.https.request(
        f"https://localhost:{server.port}/", ca=tls_ca.cert_pem.bytes()
    )
    assert res.status == 200
