"""One set of words for a failed handshake, whichever TLS engine failed.

The failures are real ones: handshakes run in memory (no sockets) between
pyOpenSSL connections built by trionet's own contexts and stdlib
``ssl.SSLObject`` peers, and the exceptions they raise go to
``handshake_failure``.
"""

from __future__ import annotations

import errno
import ssl

import pytest
import trio
import trustme
from _tls_support import Identity, MemoryPeer, memory_handshake
from OpenSSL import SSL

import trionet
from trionet._tls_context import client_config, server_config
from trionet._tls_failure import PEER_CLOSED, HandshakeFailure, handshake_failure
from trionet._tls_verify import PeerVerdict

UNKNOWN_CA = "unable to get local issuer certificate"


@pytest.fixture(scope="module")
def other_ca() -> trustme.CA:
    return trustme.CA()


def pyopenssl_peer(config: trionet.tls.TLSConfig, hostname: str | None = None) -> MemoryPeer:
    verdict = PeerVerdict()
    conn = config.new_connection(verdict)
    if hostname is not None:
        conn.set_tlsext_host_name(hostname.encode())
    return MemoryPeer(conn)


def verdict_of(peer: MemoryPeer) -> PeerVerdict:
    assert isinstance(peer.engine, SSL.Connection)
    verdict: PeerVerdict = peer.engine.get_app_data()
    return verdict


def stdlib_server(tls_server_cert: trustme.LeafCert) -> MemoryPeer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls_server_cert.configure_cert(context)
    return MemoryPeer.stdlib(context, server_side=True)


def stdlib_client(ca: trustme.CA, hostname: str = "localhost") -> MemoryPeer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(context)
    return MemoryPeer.stdlib(context, server_side=False, server_hostname=hostname)


# -- a client that does not trust the server ----------------------------------------------
def test_an_untrusted_server_is_told_the_same_way_by_both_engines(
    server_identity: Identity, tls_server_cert: trustme.LeafCert, other_ca: trustme.CA,
) -> None:
    ours = pyopenssl_peer(client_config(ca=other_ca.cert_pem.bytes()), "localhost")
    memory_handshake(ours, pyopenssl_peer(server_config(**server_identity.options())))
    theirs = stdlib_client(other_ca)
    memory_handshake(theirs, stdlib_server(tls_server_cert))
    assert ours.error is not None and theirs.error is not None

    from_ours = handshake_failure(ours.error, verify_reason=verdict_of(ours).reason)
    from_theirs = handshake_failure(theirs.error)
    # pyOpenSSL's verify callback recorded Node's code too; the stdlib only has OpenSSL's words.
    assert from_ours == HandshakeFailure(
        f"certificate verify failed: {UNKNOWN_CA} (unknown CA) (UNABLE_TO_GET_ISSUER_CERT_LOCALLY)"
    )
    assert from_theirs == HandshakeFailure(f"certificate verify failed: {UNKNOWN_CA}")


def test_a_server_refused_by_its_client_hears_the_same_alert_in_both_engines(
    server_identity: Identity, tls_server_cert: trustme.LeafCert, other_ca: trustme.CA,
) -> None:
    """The alert the client sends back reads the same on a pyOpenSSL and a stdlib server."""
    ours = pyopenssl_peer(server_config(**server_identity.options()))
    memory_handshake(stdlib_client(other_ca), ours)
    theirs = stdlib_server(tls_server_cert)
    memory_handshake(stdlib_client(other_ca), theirs)
    assert ours.error is not None and theirs.error is not None
    assert isinstance(theirs.error, ssl.SSLError) and "(_ssl.c:" in str(theirs.error)
    assert handshake_failure(ours.error) == handshake_failure(theirs.error) == HandshakeFailure(
        "tlsv1 alert unknown ca"
    )


def test_trios_wrapping_and_a_tls_streams_message_change_nothing(
    tls_server_cert: trustme.LeafCert, other_ca: trustme.CA
) -> None:
    """trio.SSLStream raises BrokenResourceError from the ssl error; TLSStream a TLSError."""
    theirs = stdlib_server(tls_server_cert)
    memory_handshake(stdlib_client(other_ca), theirs)
    assert theirs.error is not None
    wrapped = trio.BrokenResourceError("SSL handshake failed")
    wrapped.__cause__ = theirs.error
    direct = handshake_failure(theirs.error)
    assert handshake_failure(wrapped) == direct
    assert handshake_failure(trionet.TLSError(direct.message())) == direct
    assert direct.message() == "TLS handshake failed: tlsv1 alert unknown ca"
    assert direct.message("localhost:443") == (
        "TLS handshake with localhost:443 failed: tlsv1 alert unknown ca"
    )


def test_a_hostname_mismatch_keeps_the_stdlibs_words(tls_ca: trustme.CA) -> None:
    server = stdlib_server(tls_ca.issue_cert("localhost"))
    client = stdlib_client(tls_ca, hostname="example.com")
    memory_handshake(client, server)
    assert isinstance(client.error, ssl.SSLCertVerificationError)
    failure = handshake_failure(client.error)
    assert failure.reason.startswith("certificate verify failed: Hostname mismatch")
    assert not failure.connection_lost


# -- the transport, not TLS ---------------------------------------------------------------
def test_a_peer_closing_mid_handshake_reads_as_trionets_own_stream_says_it(
    tls_server_cert: trustme.LeafCert,
) -> None:
    """The stdlib's SSLEOFError ("EOF occurred in violation of protocol") is the peer closing."""
    server = stdlib_server(tls_server_cert)
    assert server.incoming is not None
    server.incoming.write_eof()
    server.step()
    assert isinstance(server.error, ssl.SSLEOFError)
    assert handshake_failure(server.error) == handshake_failure(PEER_CLOSED) == HandshakeFailure(
        "the peer closed the connection", connection_lost=True
    )


@pytest.mark.parametrize("cause", [
    ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    trio.BrokenResourceError("socket connection broken"),
    SSL.SysCallError(-1, "Unexpected EOF"),
    "the peer closed the connection",
])
def test_a_broken_transport_is_a_lost_connection(cause: BaseException | str) -> None:
    failure = handshake_failure(cause)
    assert failure.connection_lost
    assert failure.reason


def test_what_the_verify_callback_saw_explains_better_than_the_alert() -> None:
    verdict = PeerVerdict()
    verdict.record(10, 0)
    failure = handshake_failure(SSL.Error([("SSL routines", "", "certificate verify failed")]),
                                verify_reason=verdict.reason)
    assert failure == HandshakeFailure(
        "certificate verify failed: certificate has expired (CERT_HAS_EXPIRED)"
    )
    # Without it, OpenSSL's error queue speaks.
    assert handshake_failure(SSL.Error([("SSL routines", "", "wrong version number")])) == (
        HandshakeFailure("wrong version number")
    )
