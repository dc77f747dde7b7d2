"""trionet.https (and wss://) against curl, Node and our own client, with the plugin's certificates.

Every test talks over real sockets on 127.0.0.1 and is bounded by trio.fail_after.
"""

from __future__ import annotations

import json
import shutil
import ssl
from pathlib import Path

import pytest
import trio
import trustme
from _tls_support import Identity, node_server, write_cert_files

import trionet
from trionet.testing import ServeFixture

pytestmark = pytest.mark.timeout(60)


async def hello(req: trionet.http.Request, res: trionet.http.Response) -> None:
    """Hello world, naming the client certificate when one was verified."""
    tls = req.socket
    assert isinstance(tls, trionet.tls.TLSSocket)  # as Node's req.socket is a TLSSocket
    cert = tls.peer_certificate if tls.authorized else None
    who = cert["subject"].get("CN") if cert else None
    await res.end(f"hello {who or 'world'}\n".encode())


@pytest.fixture
async def https_server(serve: ServeFixture, server_identity: Identity) -> trionet.net.Server:
    return await serve(trionet.https.serve, hello, **server_identity.options())


@pytest.fixture
async def mtls_server(
    serve: ServeFixture, server_identity: Identity, ca_pem: bytes
) -> trionet.net.Server:
    """An HTTPS server that only talks to clients with a certificate from tls_ca."""
    return await serve(trionet.https.serve, hello, **server_identity.options(), ca=ca_pem,
                       request_cert=True)


# -- curl -------------------------------------------------------------------------------
def curl_command(port: int, *options: str) -> list[str]:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    return [curl, "-sS", "--max-time", "10", "--resolve", f"localhost:{port}:127.0.0.1",
            *options, f"https://localhost:{port}/"]


async def run(command: list[str]) -> tuple[int, str, str]:
    with trio.fail_after(20):
        done = await trio.run_process(command, capture_stdout=True, capture_stderr=True,
                                      check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_curl_with_cacert(
    https_server: trionet.net.Server, tls_ca: trustme.CA,
    tls_server_cert: trustme.LeafCert, tmp_path: Path,
) -> None:
    files = write_cert_files(tmp_path, tls_ca, tls_server_cert)
    code, out, err = await run(curl_command(https_server.port, "--cacert", str(files.ca)))
    assert (code, out) == (0, "hello world\n"), err


async def test_curl_insecure(https_server: trionet.net.Server) -> None:
    code, out, err = await run(curl_command(https_server.port, "-k"))
    assert (code, out) == (0, "hello world\n"), err


async def test_curl_without_the_ca_fails_verification(https_server: trionet.net.Server) -> None:
    code, out, err = await run(curl_command(https_server.port))
    assert code == 60, err  # CURLE_PEER_FAILED_VERIFICATION
    assert "certificate" in err and out == ""


async def test_curl_with_a_client_certificate(
    mtls_server: trionet.net.Server, tls_ca: trustme.CA, tls_server_cert: trustme.LeafCert,
    tls_client_cert: trustme.LeafCert, tmp_path: Path,
) -> None:
    files = write_cert_files(tmp_path, tls_ca, tls_server_cert)
    tls_client_cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client.pem"))
    code, out, err = await run(curl_command(
        mtls_server.port, "--cacert", str(files.ca), "--cert", str(tmp_path / "client.pem")))
    assert (code, out) == (0, "hello client\n"), err


async def test_curl_gets_the_certificate_of_the_name_it_asks_for(
    serve: ServeFixture, server_identity: Identity, tls_ca: trustme.CA,
    tls_server_cert: trustme.LeafCert, tmp_path: Path,
) -> None:
    """sni_contexts over HTTPS, checked by curl's own verification of each name."""
    contexts = {"api.test": Identity.of(tls_ca.issue_cert("api.test")).options()}
    server = await serve(trionet.https.serve, hello, **server_identity.options(),
                         sni_contexts=contexts)
    files = write_cert_files(tmp_path, tls_ca, tls_server_cert)
    code, out, err = await run(curl_command(
        server.port, "--cacert", str(files.ca), "--resolve", f"api.test:{server.port}:127.0.0.1",
        f"https://api.test:{server.port}/"))
    assert (code, out) == (0, "hello world\nhello world\n"), err  # localhost, then api.test


# -- trionet's HTTPS client ---------------------------------------------------------------
async def test_right_ca_succeeds(https_server: trionet.net.Server, ca_pem: bytes) -> None:
    with trio.fail_after(10):
        res = await trionet.https.request(f"https://localhost:{https_server.port}/", ca=ca_pem)
    assert (res.status, res.text()) == (200, "hello world\n")


async def test_no_ca_fails_with_tls_error(https_server: trionet.net.Server) -> None:
    with trio.fail_after(10), pytest.raises(trionet.TLSError, match="certificate"):
        await trionet.https.request(f"https://localhost:{https_server.port}/")


async def test_wrong_hostname_fails_with_tls_error(
    serve: ServeFixture, tls_ca: trustme.CA, ca_pem: bytes
) -> None:
    """A certificate for localhost only, dialled as 127.0.0.1."""
    only_localhost = Identity.of(tls_ca.issue_cert("localhost"))
    server = await serve(trionet.https.serve, hello, **only_localhost.options())
    with trio.fail_after(10), pytest.raises(trionet.TLSError, match=r"not valid for '127\.0"):
        await trionet.https.request(f"https://127.0.0.1:{server.port}/", ca=ca_pem)


async def test_reject_unauthorized_false_succeeds(https_server: trionet.net.Server) -> None:
    with trio.fail_after(10):
        res = await trionet.https.request(
            f"https://localhost:{https_server.port}/", reject_unauthorized=False
        )
    assert res.text() == "hello world\n"


async def test_stream_reads_the_body_as_it_comes(
    https_server: trionet.net.Server, ca_pem: bytes
) -> None:
    with trio.fail_after(10):
        async with trionet.https.stream(
            f"https://localhost:{https_server.port}/", ca=ca_pem
        ) as res:
            assert res.status == 200
            assert b"".join([chunk async for chunk in res]) == b"hello world\n"


async def test_global_agent_is_https_own_pool_and_reuses_connections(
    https_server: trionet.net.Server, ca_pem: bytes
) -> None:
    assert trionet.https.global_agent is not trionet.http.global_agent
    assert trionet.https.global_agent.max_sockets == 5
    assert trionet.https.Agent is trionet.agent.Agent
    url = f"https://localhost:{https_server.port}/"
    with trio.fail_after(10):
        for _ in range(3):
            await trionet.https.request(url, ca=ca_pem)
    assert https_server.connections == 1  # three requests, one kept-alive connection


async def test_mutual_tls_through_an_agent(
    mtls_server: trionet.net.Server, ca_pem: bytes, tls_client_cert: trustme.LeafCert
) -> None:
    agent = trionet.https.create_agent(ca=ca_pem, **Identity.of(tls_client_cert).options())
    assert isinstance(agent, trionet.https.Agent)
    url = f"https://localhost:{mtls_server.port}/"
    with trio.fail_after(10):
        res = await trionet.https.request(url, agent=agent)
        assert res.text() == "hello client\n"
        # Without a certificate the server refuses us (after the handshake, in TLS 1.3).
        with pytest.raises((trionet.TLSError, trionet.ConnectError, trionet.ProtocolError)):
            await trionet.https.request(url, ca=ca_pem, agent=False)
        await agent.aclose()


async def test_the_pool_never_hands_one_identity_to_another(
    serve: ServeFixture, server_identity: Identity, ca_pem: bytes, tls_ca: trustme.CA,
    tls_client_cert: trustme.LeafCert,
) -> None:
    """Requests with two client certificates share one agent but never a connection."""
    server = await serve(trionet.https.serve, hello, **server_identity.options(), ca=ca_pem,
                         request_cert=True, reject_unauthorized=False)
    second = Identity.of(tls_ca.issue_cert("second.localhost", common_name="second"))
    agent = trionet.https.Agent(max_sockets=1)
    url = f"https://localhost:{server.port}/"
    with trio.fail_after(10):
        answers = [
            (await trionet.https.request(url, ca=ca_pem, agent=agent, **identity)).text()
            for identity in [Identity.of(tls_client_cert).options(), second.options(),
                             Identity.of(tls_client_cert).options(), {}]
        ]
        assert answers == ["hello client\n", "hello second\n", "hello client\n",
                           "hello world\n"]
        assert server.connections == 3  # one per identity, the first one reused
        await agent.aclose()


async def test_https_server_reports_unauthorized_clients(
    serve: ServeFixture, server_identity: Identity, ca_pem: bytes, other_client: Identity
) -> None:
    """request_cert without reject_unauthorized: the app sees who is not authorized, and why."""

    async def who(req: trionet.http.Request, res: trionet.http.Response) -> None:
        tls = req.socket
        assert isinstance(tls, trionet.tls.TLSSocket)
        await res.end(json.dumps({"authorized": tls.authorized,
                                  "error": tls.authorization_error}).encode())

    server = await serve(trionet.https.serve, who, **server_identity.options(), ca=ca_pem,
                         request_cert=True, reject_unauthorized=False)
    with trio.fail_after(10):
        res = await trionet.https.request(f"https://localhost:{server.port}/", ca=ca_pem,
                                          agent=False, **other_client.options())
    answer = res.json()
    assert answer["authorized"] is False
    assert "unknown CA" in answer["error"]


@pytest.fixture
def other_client() -> Identity:
    return Identity.of(trustme.CA().issue_cert("intruder.localhost", common_name="intruder"))


async def test_plain_http_to_https_serve_does_not_hurt_it(
    https_server: trionet.net.Server, ca_pem: bytes
) -> None:
    with trio.fail_after(10):
        with pytest.raises(trionet.TrionetError):
            await trionet.http.request(f"http://127.0.0.1:{https_server.port}/", agent=False)
        res = await trionet.https.request(f"https://localhost:{https_server.port}/", ca=ca_pem)
    assert res.status == 200


async def test_https_request_to_a_node_https_server(
    node_peers: Path, node: str, tls_ca: trustme.CA, tls_server_cert: trustme.LeafCert,
    tmp_path: Path,
) -> None:
    files = write_cert_files(tmp_path, tls_ca, tls_server_cert)
    with trio.fail_after(20):
        async with node_server(node, node_peers / "https_server.js", str(files.key),
                               str(files.cert)) as port:
            res = await trionet.https.request(f"https://localhost:{port}/node?x=1",
                                              ca=files.ca, agent=False)
    assert res.status == 200
    assert res.json() == {"method": "GET", "path": "/node?x=1", "authorized": False,
                          "peer": None}


# -- wss:// ---------------------------------------------------------------------------------
async def test_wss_echo_with_trustme_certificates(
    serve: ServeFixture, server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext, tls_ca: trustme.CA,
) -> None:
    async def echo(ws: trionet.ws.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    server = await serve(trionet.ws.serve, echo, ssl_context=server_ssl_context)
    with trio.fail_after(10):
        async with trionet.ws.connect(
            f"wss://localhost:{server.port}/", ssl_context=client_ssl_context
        ) as ws:
            await ws.send("hello over TLS")
            assert await ws.receive() == "hello over TLS"
            await ws.send(b"\x00\x01")
            assert await ws.receive() == b"\x00\x01"
        # Node's options work for ws too, through https.ssl_context().
        ca_only = trionet.https.ssl_context(ca=tls_ca.cert_pem.bytes())
        async with trionet.ws.connect(f"wss://localhost:{server.port}/", ssl_context=ca_only) as ws:
            await ws.send("again")
            assert await ws.receive() == "again"
        with pytest.raises(trionet.TLSError):
            async with trionet.ws.connect(f"wss://localhost:{server.port}/"):
                pass
