"""trionet.tls against itself, openssl s_client and Node, with the plugin's trustme certificates.

Every test talks over real sockets on 127.0.0.1 and is bounded by trio.fail_after.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import logging
import ssl
import subprocess
from pathlib import Path

import pytest
import trio
import trustme
from _tls_support import Identity, node_server, write_cert_files
from conftest import silent_peer
from test_net import check_records, read_slowly, reset, send_records_from_many_tasks

import trionet
from trionet.testing import ServeFixture

pytestmark = pytest.mark.timeout(60)


# -- fixtures --------------------------------------------------------------------
@pytest.fixture(scope="module")
def other_ca() -> trustme.CA:
    """A CA nobody here trusts."""
    return trustme.CA()


class EchoServer:
    """The seed's TLS echo server: says welcome, then echoes; remembers what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[bool, str | None, str | None]] = []

    async def __call__(self, sock: trionet.tls.TLSSocket) -> None:
        subject = (sock.peer_certificate or {}).get("subject", {}).get("CN")
        self.seen.append((sock.authorized, sock.authorization_error, subject))
        await sock.send(b"welcome!\n")
        await trionet.net.pipe(sock, sock)


async def talk(sock: trionet.tls.TLSSocket, line: bytes = b"ping\n") -> bytes:
    """Read the welcome, send a line, return the echo."""
    assert await sock.receive() == b"welcome!\n"
    await sock.send(line)
    echoed = b""
    while len(echoed) < len(line):
        chunk = await sock.receive()
        assert chunk, "the server ended the connection"
        echoed += chunk
    return echoed


# -- request_cert: the six cases ----------------------------------------------------
CLIENTS = ["ca-signed", "no-cert", "other-ca"]


@pytest.mark.parametrize("reject_unauthorized", [True, False])
@pytest.mark.parametrize("client", CLIENTS)
async def test_request_cert_judges_clients_as_node_does(
    serve: ServeFixture,
    server_identity: Identity,
    ca_pem: bytes,
    tls_client_cert: trustme.LeafCert,
    other_ca: trustme.CA,
    caplog: pytest.LogCaptureFixture,
    client: str,
    reject_unauthorized: bool,
) -> None:
    """requestCert with a CA: a trusted client is authorized; others are refused or flagged.

    With reject_unauthorized=True the handshake fails for a client without a
    certificate or with one from another CA (the server logs why); with False
    they connect and the server sees authorized=False and the reason.
    """
    echo = EchoServer()
    server = await serve(
        trionet.tls.serve, echo, **server_identity.options(), ca=ca_pem,
        request_cert=True, reject_unauthorized=reject_unauthorized,
    )
    identity = {
        "ca-signed": Identity.of(tls_client_cert).options(),
        "no-cert": {},
        "other-ca": Identity.of(other_ca.issue_cert("intruder.localhost",
                                                    common_name="intruder")).options(),
    }[client]

    async def session() -> bytes:
        sock = await trionet.tls.connect(server.port, "localhost", ca=ca_pem, **identity)
        try:
            assert sock.authorized  # the client trusts the server either way
            return await talk(sock)
        finally:
            await sock.aclose()

    with trio.fail_after(10), caplog.at_level(logging.INFO, logger="trionet"):
        if client != "ca-signed" and reject_unauthorized:
            # TLS 1.3: the client may finish first; the server's alert then breaks the read.
            with pytest.raises(trionet.TLSError) as refused:
                await session()
            assert echo.seen == []  # the handler never ran
            why = {"no-cert": "certificate required", "other-ca": "unknown ca"}[client]
            assert why in str(refused.value)
            logged = {"no-cert": "peer did not return a certificate",
                      "other-ca": "unknown CA"}[client]
            while not any(logged in r.getMessage() for r in caplog.records):
                await trio.sleep(0.01)
            return
        assert await session() == b"ping\n"

    [(authorized, error, subject)] = echo.seen
    if client == "ca-signed":
        assert (authorized, error, subject) == (True, None, "client")
    elif client == "no-cert":
        assert (authorized, error, subject) == (False, "the peer sent no certificate", None)
    else:
        assert authorized is False and subject == "intruder"
        assert error is not None and "unknown CA" in error
        assert "UNABLE_TO_GET_ISSUER_CERT_LOCALLY" in error


async def test_expired_client_certificate_is_reported_as_expired(
    serve: ServeFixture, server_identity: Identity, tls_ca: trustme.CA, ca_pem: bytes
) -> None:
    echo = EchoServer()
    server = await serve(trionet.tls.serve, echo, **server_identity.options(), ca=ca_pem,
                         request_cert=True, reject_unauthorized=False)
    expired = tls_ca.issue_cert(
        "client.localhost", common_name="old-client",
        not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc),
        not_after=datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone.utc),
    )
    with trio.fail_after(10):
        sock = await trionet.tls.connect(server.port, "localhost", ca=ca_pem,
                                         **Identity.of(expired).options())
        assert await talk(sock) == b"ping\n"
        await sock.aclose()
    [(authorized, error, subject)] = echo.seen
    assert (authorized, subject) == (False, "old-client")
    assert error == "certificate has expired (CERT_HAS_EXPIRED)"


def test_options_are_checked_before_listening(server_identity: Identity, tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="either ssl_context= or key="):
            await trionet.tls.serve(EchoServer(), 0, ssl_context=ssl.create_default_context(),
                                    **server_identity.options())
        with pytest.raises(ValueError, match="both cert= and key="):
            await trionet.tls.connect(1, cert=server_identity.cert)
        with pytest.raises(ValueError, match="not a PEM certificate"):
            await trionet.tls.serve(EchoServer(), 0, key=server_identity.key, cert=b"junk")
        with pytest.raises(FileNotFoundError):
            await trionet.tls.serve(EchoServer(), 0, key=tmp_path / "missing.key",
                                    cert=server_identity.cert)

    trio.run(main)


# -- the client judging the server -----------------------------------------------------
async def test_client_with_the_right_ca_is_authorized(
    serve: ServeFixture, server_identity: Identity, ca_pem: bytes
) -> None:
    server = await serve(trionet.tls.serve, EchoServer(), **server_identity.options())
    with trio.fail_after(10):
        sock = await trionet.tls.connect(server.port, "localhost", ca=ca_pem)
        assert sock.authorized and sock.authorization_error is None
        assert sock.protocol == "TLSv1.3"
        assert sock.cipher and sock.cipher.startswith("TLS_")
        assert sock.servername == "localhost"
        assert sock.peer_certificate is not None
        assert sock.peer_certificate["subjectaltname"] == (
            "DNS:localhost, IP Address:127.0.0.1, IP Address:::1"
        )
        assert await talk(sock) == b"ping\n"
        await sock.aclose()


async def test_a_client_knows_its_peer_after_the_server_reset(
    serve: ServeFixture, server_identity: Identity, ca_pem: bytes
) -> None:
    """tls.connect keeps the address TCP connected to: the kernel forgets a peer
    that reset, and the error message (or a log line) asking afterwards names it."""
    server = await serve(trionet.tls.serve, reset, **server_identity.options())
    with trio.fail_after(10):
        sock = await trionet.tls.connect(server.port, "127.0.0.1", ca=ca_pem)
        # The server's close_notify may arrive before its reset: the end of
        # data or a ConnectError, either way the peer is gone.
        with contextlib.suppress(trionet.ConnectError):
            while await sock.receive():
                pass
        await trio.sleep(0.05)  # let the reset land
        assert sock.remote_address == ("127.0.0.1", server.port)
        await sock.aclose()


async def test_client_takes_ca_as_a_file_path_or_a_list(
    serve: ServeFixture, server_identity: Identity, tls_ca: trustme.CA,
    other_ca: trustme.CA, tmp_path: Path,
) -> None:
    server = await serve(trionet.tls.serve, EchoServer(), **server_identity.options())
    ca_file = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    with trio.fail_after(10):
        for ca in (ca_file, str(ca_file), [other_ca.cert_pem.bytes(), ca_file]):
            sock = await trionet.tls.connect(server.port, "127.0.0.1", ca=ca)  # type: ignore[arg-type]
            assert sock.authorized
            await sock.aclose()


async def test_unknown_ca_fails_with_tls_error(
    serve: ServeFixture, server_identity: Identity, other_ca: trustme.CA
) -> None:
    server = await serve(trionet.tls.serve, EchoServer(), **server_identity.options())
    with trio.fail_after(10), pytest.raises(trionet.TLSError, match="unknown CA"):
        await trionet.tls.connect(server.port, "localhost", ca=other_ca.cert_pem.bytes())


async def test_hostname_mismatch_fails_with_tls_error(
    serve: ServeFixture, server_identity: Identity, ca_pem: bytes
) -> None:
    server = await serve(trionet.tls.serve, EchoServer(), **server_identity.options())
    with trio.fail_after(10), pytest.raises(trionet.TLSError, match="hostname mismatch"):
        await trionet.tls.connect(server.port, "127.0.0.1", ca=ca_pem, server_name="example.com")


# -- a certificate per server name (SNI) ----------------------------------------------
async def test_sni_contexts_give_each_name_its_certificate(
    serve: ServeFixture, server_identity: Identity, tls_ca: trustme.CA, ca_pem: bytes
) -> None:
    """Node's server.addContext(): the name the client asks for picks the certificate."""
    contexts = {
        name: Identity.of(tls_ca.issue_cert(name)).options() for name in ("a.test", "*.wild.test")
    }
    server = await serve(
        trionet.tls.serve, EchoServer(), **server_identity.options(), sni_contexts=contexts
    )

    async def names_presented(server_name: str) -> str:
        with trio.fail_after(10):
            sock = await trionet.tls.connect(
                server.port, "127.0.0.1", ca=ca_pem, server_name=server_name,
                reject_unauthorized=False,
            )
            assert await talk(sock) == b"ping\n"
            await sock.aclose()
        assert sock.peer_certificate is not None
        return str(sock.peer_certificate["subjectaltname"])

    assert await names_presented("a.test") == "DNS:a.test"
    assert await names_presented("A.Test") == "DNS:a.test"  # names are case-insensitive
    assert await names_presented("x.wild.test") == "DNS:*.wild.test"
    default = "DNS:localhost, IP Address:127.0.0.1, IP Address:::1"
    assert await names_presented("y.x.wild.test") == default  # * stands for one label
    assert await names_presented("b.test") == default


async def test_sni_name_verified_end_to_end(
    serve: ServeFixture, server_identity: Identity, tls_ca: trustme.CA, ca_pem: bytes
) -> None:
    contexts = {"a.test": Identity.of(tls_ca.issue_cert("a.test")).options()}
    server = await serve(
        trionet.tls.serve, EchoServer(), **server_identity.options(), sni_contexts=contexts
    )
    with trio.fail_after(10):
        sock = await trionet.tls.connect(server.port, "127.0.0.1", ca=ca_pem, server_name="a.test")
        assert sock.authorized and sock.servername == "a.test"
        await sock.aclose()
        with pytest.raises(trionet.TLSError, match="hostname mismatch"):
            await trionet.tls.connect(server.port, "127.0.0.1", ca=ca_pem, server_name="b.test")


@pytest.mark.parametrize(
    "contexts",
    [
        {"": {}},
        {"*.test": {}},
        {"a.*.test": {}},
        {"a..test": {}},
        {"a.test": {"cert": b"only a cert"}},
    ],
    ids=["empty-name", "wildcard-tld", "inner-wildcard", "empty-label", "no-key"],
)
def test_malformed_sni_contexts_are_refused(
    server_identity: Identity, contexts: dict[str, dict[str, bytes]]
) -> None:
    with pytest.raises(ValueError, match="sni_contexts"):
        trionet.tls.server_config(**server_identity.options(), sni_contexts=contexts)


async def test_a_silent_server_times_the_handshake_out_and_the_socket_is_closed(
    nursery: trio.Nursery, ca_pem: bytes
) -> None:
    port, seen = await silent_peer(nursery)
    with trio.fail_after(5):
        with pytest.raises(trionet.TimeoutError, match=r"TLS handshake with .* after 0\.2s"):
            await trionet.tls.connect(port, "127.0.0.1", ca=ca_pem, timeout=0.2)
        while not seen:  # the server reads our EOF: the client closed its socket
            await trio.sleep(0.01)
    assert seen[0].startswith(b"\x16\x03")  # a TLS ClientHello record


async def test_expired_certificate_fails_with_tls_error(
    serve: ServeFixture, tls_ca: trustme.CA, ca_pem: bytes
) -> None:
    expired = tls_ca.issue_cert(
        "localhost",
        not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc),
        not_after=datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone.utc),
    )
    server = await serve(trionet.tls.serve, EchoServer(), **Identity.of(expired).options())
    with trio.fail_after(10), pytest.raises(trionet.TLSError, match="expired"):
        await trionet.tls.connect(server.port, "localhost", ca=ca_pem)


async def test_reject_unauthorized_false_connects_and_says_why(
    serve: ServeFixture, server_identity: Identity, ca_pem: bytes
) -> None:
    server = await serve(trionet.tls.serve, EchoServer(), **server_identity.options())
    with trio.fail_after(10):
        sock = await trionet.tls.connect(server.port, "localhost", reject_unauthorized=False)
        assert not sock.authorized
        assert "unknown CA" in (sock.authorization_error or "")
        assert await talk(sock) == b"ping\n"
        await sock.aclose()
        sock = await trionet.tls.connect(
            server.port, "127.0.0.1", ca=ca_pem, server_name="example.com",
            reject_unauthorized=False,
        )
        assert not sock.authorized
        assert "hostname mismatch" in (sock.authorization_error or "")
        await sock.aclose()


async def test_alpn_picks_the_servers_first_choice(
    serve: ServeFixture, server_identity: Identity, ca_pem: bytes
) -> None:
    seen: list[str | None] = []

    async def handler(sock: trionet.tls.TLSSocket) -> None:
        seen.append(sock.alpn_protocol)

    server = await serve(trionet.tls.serve, handler, **server_identity.options(),
                         alpn_protocols=["h2", "http/1.1"])
    with trio.fail_after(10):
        sock = await trionet.tls.connect(server.port, "localhost", ca=ca_pem,
                                         alpn_protocols=["http/1.1", "h2"])
        assert sock.alpn_protocol == "h2"
        assert await sock.receive() == b""
        await sock.aclose()
    assert seen == ["h2"]


async def test_stdlib_contexts_from_the_plugin_work_too(
    serve: ServeFixture,
    server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext,
) -> None:
    server = await serve(trionet.tls.serve, EchoServer(), ssl_context=server_ssl_context)
    with trio.fail_after(10):
        sock = await trionet.tls.connect(server.port, "localhost", ssl_context=client_ssl_context)
        assert sock.authorized
        assert await talk(sock) == b"ping\n"
        await sock.aclose()
        with pytest.raises(trionet.TLSError, match="Hostname mismatch"):
            await trionet.tls.connect(server.port, "127.0.0.1", server_name="example.com",
                                      ssl_context=client_ssl_context)


async def test_stdlib_context_without_verification_still_reports_authorized(
    serve: ServeFixture, server_identity: Identity, ca_pem: bytes, other_ca: trustme.CA,
) -> None:
    """With verification off in an ssl.SSLContext, cryptography's path validation judges."""
    server = await serve(trionet.tls.serve, EchoServer(), **server_identity.options())
    trusting = trionet.https.ssl_context(ca=ca_pem, reject_unauthorized=False)
    untrusting = trionet.https.ssl_context(ca=other_ca.cert_pem.bytes(),
                                           reject_unauthorized=False)
    cases = [
        (trusting, "localhost", None),
        (trusting, "example.com", "hostname mismatch"),
        (untrusting, "localhost", "unknown CA"),
    ]
    with trio.fail_after(10):
        for context, name, why in cases:
            sock = await trionet.tls.connect(server.port, "127.0.0.1", server_name=name,
                                             ssl_context=context)
            assert sock.authorized is (why is None)
            assert why is None or why in (sock.authorization_error or "")
            assert await talk(sock) == b"ping\n"
            await sock.aclose()


async def test_half_close_over_tls(
    serve: ServeFixture, server_identity: Identity, ca_pem: bytes
) -> None:
    """send_eof() sends close_notify; the server reads to the end, then still answers."""

    async def count(sock: trionet.tls.TLSSocket) -> None:
        total = 0
        async for chunk in sock:
            total += len(chunk)
        await sock.send(f"{total} bytes\n".encode())

    server = await serve(trionet.tls.serve, count, **server_identity.options(),
                         allow_half_open=True)
    with trio.fail_after(10):
        sock = await trionet.tls.connect(server.port, "localhost", ca=ca_pem)
        await sock.send(b"x" * 100_000)
        await sock.send_eof()
        assert await sock.receive() == b"100000 bytes\n"
        assert await sock.receive() == b""
        await sock.aclose()


async def test_many_full_duplex_clients_at_once(
    serve: ServeFixture, server_identity: Identity, ca_pem: bytes
) -> None:
    """20 clients each stream 256 KiB while reading the echo back concurrently."""
    server = await serve(trionet.tls.serve, EchoServer(), **server_identity.options())
    payload = bytes(range(256)) * 1024

    async def client() -> None:
        sock = await trionet.tls.connect(server.port, "localhost", ca=ca_pem)
        assert await sock.receive() == b"welcome!\n"
        received = bytearray()

        async def send() -> None:
            for start in range(0, len(payload), 10_000):
                await sock.send(payload[start : start + 10_000])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            while len(received) < len(payload):
                received += await sock.receive()
        assert received == payload
        await sock.aclose()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(client)


@pytest.mark.parametrize("client_engine", ["pyopenssl", "stdlib"])
@pytest.mark.parametrize("server_engine", ["pyopenssl", "stdlib"])
async def test_a_refused_certificate_reads_the_same_whichever_engine_runs_either_side(
    serve: ServeFixture, server_identity: Identity, server_ssl_context: ssl.SSLContext,
    other_ca: trustme.CA, caplog: pytest.LogCaptureFixture,
    server_engine: str, client_engine: str,
) -> None:
    """The client says why it refused; the server logs what it got in the same words.

    trionet's client sends the alert ("unknown ca"); trio.SSLStream drops the
    connection without one, which either server engine calls the peer closing.
    """
    server_options = (
        {"ssl_context": server_ssl_context} if server_engine == "stdlib"
        else server_identity.options()
    )
    server = await serve(trionet.tls.serve, EchoServer(), **server_options)
    if client_engine == "stdlib":
        context = ssl.create_default_context()
        other_ca.configure_trust(context)
        client_options: dict[str, object] = {"ssl_context": context}
    else:
        client_options = {"ca": other_ca.cert_pem.bytes()}
    with trio.fail_after(10), caplog.at_level(logging.INFO, logger="trionet"):
        with pytest.raises(trionet.TLSError) as refused:
            await trionet.tls.connect(server.port, "localhost", **client_options)  # type: ignore[arg-type]
        while not (logged := [r for r in caplog.records if "TLS handshake with" in r.getMessage()]):
            await trio.sleep(0.01)
    assert str(refused.value).startswith(
        "TLS handshake failed: certificate verify failed: unable to get local issuer certificate"
    )
    [record] = logged
    assert record.levelno == logging.INFO
    heard = {"pyopenssl": "tlsv1 alert unknown ca",
             "stdlib": "the peer closed the connection"}[client_engine]
    assert record.getMessage().endswith(f" failed: {heard}")


# -- the server survives bad clients -------------------------------------------------
async def test_plain_http_to_a_tls_port_is_refused_and_the_server_goes_on(
    serve: ServeFixture, server_identity: Identity, ca_pem: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await serve(trionet.tls.serve, EchoServer(), **server_identity.options())
    with trio.fail_after(10), caplog.at_level(logging.INFO, logger="trionet"):
        plain = await trionet.net.connect(server.port, "127.0.0.1")
        await plain.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        with pytest.raises(trio.BrokenResourceError):
            while await plain.receive():  # an alert at most, then the end
                pass
            raise trio.BrokenResourceError  # a clean close counts as refused too
        await plain.aclose()
        sock = await trionet.tls.connect(server.port, "localhost", ca=ca_pem)
        assert await talk(sock) == b"ping\n"
        await sock.aclose()
    assert any("TLS handshake" in r.getMessage() for r in caplog.records)


async def test_a_stalled_handshake_is_cut_off(
    serve: ServeFixture, server_identity: Identity, ca_pem: bytes
) -> None:
    server = await serve(trionet.tls.serve, EchoServer(), **server_identity.options(),
                         handshake_timeout=0.3)
    with trio.fail_after(10):
        silent = await trionet.net.connect(server.port, "127.0.0.1")
        assert server.connections == 1 or await _settle(server, 1)
        assert await silent.receive() == b""  # closed by the server after 0.3 s
        assert server.connections == 0 or await _settle(server, 0)
        await silent.aclose()
        sock = await trionet.tls.connect(server.port, "localhost", ca=ca_pem)
        assert await talk(sock) == b"ping\n"
        await sock.aclose()


async def _settle(server: trionet.net.Server, connections: int) -> bool:
    while server.connections != connections:
        await trio.sleep(0.01)
    return True


# -- other implementations ------------------------------------------------------------
async def test_openssl_s_client_talks_to_tls_serve(
    serve: ServeFixture, tls_ca: trustme.CA, tls_server_cert: trustme.LeafCert,
    tmp_path: Path,
) -> None:
    files = write_cert_files(tmp_path, tls_ca, tls_server_cert)
    server = await serve(trionet.tls.serve, EchoServer(), key=files.key, cert=files.cert)
    command = [
        "/usr/bin/openssl", "s_client", "-connect", f"127.0.0.1:{server.port}",
        "-servername", "localhost", "-verify_hostname", "localhost",
        "-CAfile", str(files.ca), "-verify_return_error", "-brief",
    ]
    with trio.fail_after(20):
        proc = await trio.lowlevel.open_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert proc.stdin and proc.stdout and proc.stderr
        await proc.stdin.send_all(b"hello from openssl\n")
        out = b""
        while b"hello from openssl" not in out:
            chunk = await proc.stdout.receive_some()
            assert chunk, "openssl s_client exited early"
            out += chunk
        await proc.stdin.aclose()  # s_client ends the session at the end of its input
        err = b"".join([chunk async for chunk in proc.stderr]).decode()
        await proc.wait()
    assert "Verification: OK" in err, err
    assert out == b"welcome!\nhello from openssl\n"


@pytest.mark.parametrize(
    ("sent", "seen"),
    [
        ("xn--tst-qla.example", "täst.example"),
        ("täst.example", "täst.example"),
        ("a" * 200, "a" * 200),
    ],
    ids=["idna", "raw-utf8", "overlong-label"],
)
async def test_any_sni_name_a_client_sends_is_readable(
    serve: ServeFixture, server_identity: Identity, sent: str, seen: str
) -> None:
    """The SNI name is the peer's choice: servername never raises, whatever it sent."""
    names: list[str | None] = []

    async def record(sock: trionet.tls.TLSSocket) -> None:
        names.append(sock.servername)
        await sock.send(b"seen\n")

    server = await serve(trionet.tls.serve, record, **server_identity.options())
    command = ["/usr/bin/openssl", "s_client", "-connect", f"127.0.0.1:{server.port}",
               "-servername", sent, "-quiet"]
    with trio.fail_after(20):
        done = await trio.run_process(command, stdin=b"", capture_stdout=True,
                                      capture_stderr=True, check=False)
    assert done.stdout == b"seen\n", done.stderr
    assert names == [seen]


async def test_node_tls_connect_talks_to_tls_serve(
    serve: ServeFixture, node_peers: Path, node: str, tls_ca: trustme.CA,
    tls_server_cert: trustme.LeafCert, tmp_path: Path,
) -> None:
    files = write_cert_files(tmp_path, tls_ca, tls_server_cert)
    server = await serve(trionet.tls.serve, EchoServer(), key=files.key, cert=files.cert)
    with trio.fail_after(20):
        done = await trio.run_process(
            [node, str(node_peers / "tls_client.js"), str(server.port), str(files.ca)],
            capture_stdout=True, capture_stderr=True, check=False,
        )
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert lines[0] == {"authorized": True, "protocol": "TLSv1.3"}, done.stderr
    assert lines[1] == {"data": "welcome!\nhello from node\n"}


async def test_tls_connect_talks_to_a_node_https_server(
    node_peers: Path, node: str, tls_ca: trustme.CA, tls_server_cert: trustme.LeafCert,
    tls_client_cert: trustme.LeafCert, tmp_path: Path,
) -> None:
    """Node's https.createServer with requestCert sees our client certificate as authorized."""
    files = write_cert_files(tmp_path, tls_ca, tls_server_cert)
    script = node_peers / "https_server.js"
    with trio.fail_after(20):
        async with node_server(node, script, str(files.key), str(files.cert),
                               str(files.ca)) as port:
            sock = await trionet.tls.connect(port, "127.0.0.1", server_name="localhost",
                                             ca=files.ca, **Identity.of(tls_client_cert).options())
            assert sock.authorized
            await sock.send(b"GET /hi HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            response = b"".join([chunk async for chunk in sock])
            await sock.aclose()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert json.loads(body) == {"method": "GET", "path": "/hi", "authorized": True,
                                "peer": "client"}


def test_tls_serve_needs_a_key_and_certificate() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="key= and cert="):
            await trionet.tls.serve(EchoServer(), 0, host="127.0.0.1")

    trio.run(main)


async def test_serve_runs_through_functools_partial_as_documented(
    nursery: trio.Nursery, server_identity: Identity, ca_pem: bytes
) -> None:
    server = await nursery.start(functools.partial(
        trionet.tls.serve, EchoServer(), 0, host="127.0.0.1", **server_identity.options()))
    with trio.fail_after(10):
        sock = await trionet.tls.connect(server.port, "localhost", ca=ca_pem)
        assert await talk(sock) == b"ping\n"
        await sock.aclose()
    server.close()


# -- the stream contract ------------------------------------------------------------------
async def test_tls_stream_keeps_trios_half_closeable_stream_contract(
    tls_ca: trustme.CA, server_identity: Identity, ca_pem: bytes
) -> None:
    """trio.testing's own checks: checkpoints, busy/closed errors, half-close over TLS 1.3."""
    from trio.testing import check_half_closeable_stream, memory_stream_pair

    from trionet.tls import TLSStream, client_config, server_config

    server_tls = server_config(**server_identity.options())
    client_tls = client_config(ca=ca_pem)

    async def stream_maker() -> tuple[TLSStream, TLSStream]:
        left, right = memory_stream_pair()
        client = TLSStream(left, client_tls, server_hostname="localhost")
        server = TLSStream(right, server_tls)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.do_handshake)
            nursery.start_soon(server.do_handshake)
        assert client.authorized
        return client, server

    with trio.fail_after(20):
        await check_half_closeable_stream(stream_maker, None)


async def test_tls12_clients_are_judged_the_same_way(
    serve: ServeFixture, server_identity: Identity, ca_pem: bytes, tls_ca: trustme.CA,
    tls_client_cert: trustme.LeafCert,
) -> None:
    """In TLS 1.2 the server's verdict comes inside the handshake, so connect() itself fails."""
    echo = EchoServer()
    server = await serve(trionet.tls.serve, echo, **server_identity.options(), ca=ca_pem,
                         request_cert=True)
    context = ssl.create_default_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    tls_ca.configure_trust(context)
    with trio.fail_after(10):
        with pytest.raises(trionet.TLSError):
            await trionet.tls.connect(server.port, "localhost", ssl_context=context)
        tls_client_cert.configure_cert(context)
        sock = await trionet.tls.connect(server.port, "localhost", ssl_context=context)
        assert sock.protocol == "TLSv1.2"
        assert await talk(sock) == b"ping\n"
        await sock.aclose()
    assert echo.seen == [(True, None, "client")]


# -- send() from many tasks, and a gone peer, over TLS ------------------------------------
@pytest.fixture(params=["pyopenssl", "stdlib"])
def tls_pair(
    request: pytest.FixtureRequest, server_identity: Identity, ca_pem: bytes
) -> tuple[dict[str, object], dict[str, object]]:
    """Server and client options for trionet's TLS layer, or for stdlib contexts."""
    if request.param == "stdlib":
        server = {"ssl_context": request.getfixturevalue("server_ssl_context")}
        client = {"ssl_context": request.getfixturevalue("client_ssl_context")}
        return server, client
    return dict(server_identity.options()), {"ca": ca_pem}


async def test_many_tasks_sending_at_once_over_tls_keep_each_record_whole_and_in_order(
    serve: ServeFixture, tls_pair: tuple[dict[str, object], dict[str, object]]
) -> None:
    server_options, client_options = tls_pair
    server = await serve(trionet.tls.serve, send_records_from_many_tasks, **server_options)
    with trio.fail_after(60):
        sock = await trionet.tls.connect(server.port, "localhost", **client_options)
        async with sock:
            data = await read_slowly(sock)
    check_records(data)


async def test_tls_send_and_receive_on_a_gone_connection_raise_connect_errors(
    serve: ServeFixture, tls_pair: tuple[dict[str, object], dict[str, object]]
) -> None:
    server_options, client_options = tls_pair

    async def reset_after_hello(sock: trionet.tls.TLSSocket) -> None:
        await sock.receive()
        await reset(sock)

    server = await serve(trionet.tls.serve, reset_after_hello, **server_options)
    with trio.fail_after(10):
        sock = await trionet.tls.connect(server.port, "localhost", **client_options)
        await sock.send(b"hello")
        try:  # close_notify may arrive before the reset: the end, then the reset
            while await sock.receive():
                pass
        except trionet.ConnectError as exc:
            assert isinstance(exc, trionet.net.SocketBrokenError)
        with pytest.raises(trionet.ConnectError) as sent:
            for _ in range(1000):
                await sock.send(b"x" * 65536)
        await sock.aclose()
        with pytest.raises(trionet.ConnectError) as after_close:
            await sock.send(b"too late")
    assert isinstance(sent.value, trionet.net.SocketBrokenError | trionet.net.SocketClosedError)
    assert isinstance(after_close.value, trionet.net.SocketClosedError)
