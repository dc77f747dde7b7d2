"""Contexts built from Node's options, exercised by handshakes in memory (no stream, no socket)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme
from _tls_support import Identity, MemoryPeer, memory_handshake

import trionet
from trionet._tls_context import TLSOptions, client_config, server_config, server_tls
from trionet._tls_verify import PeerVerdict

UNKNOWN_CA = (
    "unable to get local issuer certificate (unknown CA) (UNABLE_TO_GET_ISSUER_CERT_LOCALLY)"
)


@pytest.fixture(scope="module")
def other_ca() -> trustme.CA:
    return trustme.CA()


def peer(config: trionet.tls.TLSConfig) -> tuple[MemoryPeer, PeerVerdict]:
    """A bare OpenSSL connection from ``config``, its verdict as app data (as TLSStream does)."""
    verdict = PeerVerdict()
    conn = config.new_connection(verdict)
    return MemoryPeer(conn), verdict


@pytest.mark.parametrize("reject_unauthorized", [True, False])
def test_the_verify_callback_decides_as_built_and_records_into_the_connections_verdict(
    server_identity: Identity, other_ca: trustme.CA, reject_unauthorized: bool
) -> None:
    """rejectUnauthorized is bound into the context; the verdict needs no stream at all."""
    client, verdict = peer(client_config(ca=other_ca.cert_pem.bytes(),
                                         reject_unauthorized=reject_unauthorized))
    server, _ = peer(server_config(**server_identity.options()))
    memory_handshake(client, server)
    assert (verdict.errnum, verdict.depth, verdict.reason) == (20, 0, UNKNOWN_CA)
    if reject_unauthorized:
        assert client.error is not None and not client.done
    else:
        assert client.error is None and client.done and server.done


def test_one_context_serves_many_connections_each_with_its_own_verdict(
    server_identity: Identity, ca_pem: bytes, other_ca: trustme.CA,
    tls_client_cert: trustme.LeafCert,
) -> None:
    config = server_config(**server_identity.options(), ca=ca_pem, request_cert=True,
                           reject_unauthorized=False)
    outcomes = []
    for client_ca in (other_ca, None):
        identity = (Identity.of(client_ca.issue_cert("intruder.localhost")) if client_ca
                    else Identity.of(tls_client_cert))
        server, verdict = peer(config)
        client, _ = peer(client_config(ca=ca_pem, **identity.options()))
        memory_handshake(client, server)
        assert client.done and server.done
        outcomes.append(verdict.reason)
    assert outcomes == [UNKNOWN_CA, None]


# -- the options passed inward ------------------------------------------------------------
def test_a_client_identity_needs_both_halves(server_identity: Identity) -> None:
    assert TLSOptions().client_identity() is None
    both = TLSOptions(cert=server_identity.cert, key=server_identity.key)
    assert both.client_identity() == (server_identity.cert, server_identity.key)
    for half in (TLSOptions(cert=server_identity.cert), TLSOptions(key=server_identity.key)):
        with pytest.raises(ValueError, match="both cert= and key="):
            half.client_identity()


def test_equal_pem_content_makes_equal_client_keys(tmp_path: Path, ca_pem: bytes) -> None:
    """A CA given as bytes, as a str, as a path or in a list: one shared client context."""
    path = tmp_path / "ca.pem"
    path.write_bytes(ca_pem)
    keys = {
        TLSOptions(ca=ca).client_key()
        for ca in (ca_pem, ca_pem.decode(), path, str(path), [ca_pem])
    }
    assert len(keys) == 1
    assert TLSOptions(ca=ca_pem, reject_unauthorized=False).client_key() not in keys


def test_server_tls_takes_the_options_or_a_ready_context_not_both(
    server_identity: Identity, server_ssl_context: ssl.SSLContext
) -> None:
    built = server_tls(TLSOptions(**server_identity.options(), handshake_timeout=5), None)
    assert isinstance(built, trionet.tls.TLSConfig) and built.handshake_timeout == 5
    assert server_tls(TLSOptions(), server_ssl_context) is server_ssl_context
    # A ready TLSConfig gets a copy with the new timeout; the original keeps its own.
    copy = server_tls(TLSOptions(handshake_timeout=1), built)
    assert isinstance(copy, trionet.tls.TLSConfig)
    assert (copy.handshake_timeout, built.handshake_timeout) == (1, 5)
    with pytest.raises(ValueError, match="either ssl_context= or key="):
        server_tls(TLSOptions(ca=b"x"), server_ssl_context)
    with pytest.raises(ValueError, match="needs key= and cert="):
        server_tls(TLSOptions(key=server_identity.key), None)
