"""Judging certificates without sockets: OpenSSL's verdicts in words, names, chains, Node's dict.

Certificates come from trustme (or ``cryptography`` for the odd ones) and are
verified in memory by OpenSSL (``X509StoreContext``) or by ``explain_chain``.
"""

from __future__ import annotations

import datetime
import json
import subprocess

import pytest
import trustme
from _tls_support import load_cert
from cryptography import x509
from cryptography.hazmat.bindings.openssl.binding import Binding
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import crypto

from trionet._tls_verify import (
    NO_PEER_CERTIFICATE,
    VERIFY_ERRORS,
    PeerVerdict,
    dns_match,
    explain_chain,
    hostname_mismatch,
    peer_certificate_dict,
    verify_error_words,
)

UTC = datetime.timezone.utc
NOW = datetime.datetime.now(UTC)
UNKNOWN_CA_WORDS = (
    "unable to get local issuer certificate (unknown CA) (UNABLE_TO_GET_ISSUER_CERT_LOCALLY)"
)


@pytest.fixture(scope="module")
def other_ca() -> trustme.CA:
    return trustme.CA()


def openssl_verdict(
    chain: list[x509.Certificate], anchors: list[x509.Certificate]
) -> PeerVerdict:
    """OpenSSL's verdict on ``chain`` (leaf first), recorded as the verify callback records it."""
    store = crypto.X509Store()
    for anchor in anchors:
        store.add_cert(crypto.X509.from_cryptography(anchor))
    context = crypto.X509StoreContext(
        store, crypto.X509.from_cryptography(chain[0]),
        [crypto.X509.from_cryptography(c) for c in chain[1:]],
    )
    verdict = PeerVerdict()
    try:
        context.verify_certificate()
    except crypto.X509StoreContextError as exc:
        errnum, depth, _ = exc.errors
        verdict.record(errnum, depth)
    return verdict


def self_signed(name: str, *, san: list[str] | None, ca: bool = False,
                signer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
                ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate trustme will not make: no subjectAltName, or signed by a non-CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer, signing_key = (signer[0].subject, signer[1]) if signer else (subject, key)
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in san]), critical=False
        )
    return builder.sign(signing_key, hashes.SHA256()), key


# -- OpenSSL's verify codes in words --------------------------------------------------
def test_every_code_is_told_in_the_words_of_the_openssl_that_judges() -> None:
    """Each entry's words are OpenSSL's own for that number (3.0 renumbered INVALID_CA)."""
    lib, ffi = Binding.lib, Binding.ffi
    for errnum, (name, words) in VERIFY_ERRORS.items():
        theirs = ffi.string(lib.X509_verify_cert_error_string(errnum)).decode()
        # OpenSSL 3.5+ adds to some ("... or the system clock is incorrect").
        assert theirs.startswith(words.removesuffix(" (unknown CA)")), (errnum, theirs)
        assert getattr(lib, f"X509_V_ERR_{name}", errnum) == errnum
        assert verify_error_words(errnum) == f"{words} ({name})"


def test_a_code_not_in_the_table_keeps_its_number() -> None:
    assert verify_error_words(4242) == "certificate verify error (X509_V_ERR_4242)"


def test_openssls_verdicts_on_real_chains_in_words(
    tls_ca: trustme.CA, tls_server_cert: trustme.LeafCert, other_ca: trustme.CA
) -> None:
    anchor, leaf = load_cert(tls_ca.cert_pem), load_cert(tls_server_cert.cert_chain_pems[0])

    def issued(**validity: datetime.datetime) -> x509.Certificate:
        return load_cert(tls_ca.issue_cert("localhost", **validity).cert_chain_pems[0])

    expired = issued(not_before=datetime.datetime(2020, 1, 1, tzinfo=UTC),
                     not_after=datetime.datetime(2021, 1, 1, tzinfo=UTC))
    future = issued(not_before=NOW + datetime.timedelta(days=365),
                    not_after=NOW + datetime.timedelta(days=730))
    lone, _ = self_signed("lone.example", san=["lone.example"])
    root, root_key = self_signed("root", san=None, ca=True)
    not_a_ca = self_signed("not-a-ca.example", san=["not-a-ca.example"], signer=(root, root_key))
    below_it, _ = self_signed("child.example", san=["child.example"], signer=not_a_ca)

    assert openssl_verdict([leaf], [anchor]).reason is None
    assert openssl_verdict([leaf], [load_cert(other_ca.cert_pem)]).reason == UNKNOWN_CA_WORDS
    assert openssl_verdict([expired], [anchor]).reason == (
        "certificate has expired (CERT_HAS_EXPIRED)"
    )
    assert (openssl_verdict([future], [anchor]).reason or "").endswith("(CERT_NOT_YET_VALID)")
    assert openssl_verdict([lone], [anchor]).reason == (
        "self-signed certificate (DEPTH_ZERO_SELF_SIGNED_CERT)"
    )
    # Signed by a certificate that is no CA: code 79 since OpenSSL 3.0 (24 before).
    verdict = openssl_verdict([below_it, not_a_ca[0]], [root])
    assert (verdict.errnum, verdict.depth) == (79, 1)
    assert verdict.reason == "invalid CA certificate (INVALID_CA)"


# -- the verdict of one handshake ---------------------------------------------------------
def test_the_first_failure_is_the_one_reported(tls_server_cert: trustme.LeafCert) -> None:
    verdict = PeerVerdict()
    verdict.record(20, 0)
    verdict.record(10, 0)
    assert (verdict.errnum, verdict.depth) == (20, 0)
    leaf = load_cert(tls_server_cert.cert_chain_pems[0])
    # OpenSSL's failure stands even when the name would not match either.
    assert verdict.conclude(leaf, "example.com") == UNKNOWN_CA_WORDS


def test_a_verified_peer_is_concluded_on_its_name_and_its_presence(
    tls_server_cert: trustme.LeafCert,
) -> None:
    leaf = load_cert(tls_server_cert.cert_chain_pems[0])
    assert PeerVerdict().conclude(leaf, "localhost") is None
    assert PeerVerdict().conclude(leaf, None) is None  # a server judging its client
    assert PeerVerdict().conclude(None, None) == NO_PEER_CERTIFICATE
    mismatch = PeerVerdict().conclude(leaf, "example.com") or ""
    assert mismatch.startswith("hostname mismatch:")


# -- Node's checkServerIdentity ------------------------------------------------------------
@pytest.mark.parametrize(("host", "matches"), [
    ("localhost", True),
    ("LOCALHOST.", True),           # case and a trailing dot do not matter
    ("127.0.0.1", True),
    ("::1", True),
    ("[::1]", True),                # a URL's bracketed IPv6 literal
    ("a.example.org", True),        # *.example.org covers one label...
    ("a.b.example.org", False),     # ...not two
    ("example.org", False),         # ...nor the bare domain
    ("127.0.0.2", False),
    ("localhost2", False),
])
def test_names_and_addresses_are_checked_as_node_does(
    tls_ca: trustme.CA, host: str, matches: bool
) -> None:
    cert = load_cert(
        tls_ca.issue_cert("localhost", "127.0.0.1", "::1", "*.example.org").cert_chain_pems[0]
    )
    mismatch = hostname_mismatch(cert, host)
    if matches:
        assert mismatch is None
    else:
        assert mismatch is not None
        assert "DNS:localhost, DNS:*.example.org, IP Address:127.0.0.1, IP Address:::1" in mismatch
        assert mismatch.endswith("(ERR_TLS_CERT_ALTNAME_INVALID)")


def test_the_common_name_counts_only_without_dns_names() -> None:
    """RFC 6125 §6.4.4: the CN is a fallback for certificates with no DNS entries at all."""
    legacy, _ = self_signed("legacy.example", san=None)
    modern, _ = self_signed("cn.example", san=["san.example"])
    assert hostname_mismatch(legacy, "legacy.example") is None
    assert "is not in the cert's altnames: none" in (hostname_mismatch(legacy, "other.example")
                                                     or "")
    assert hostname_mismatch(modern, "san.example") is None
    assert hostname_mismatch(modern, "cn.example") is not None
    assert hostname_mismatch(legacy, "127.0.0.1") is not None  # an address never matches a CN


def test_a_wildcard_stands_for_exactly_one_whole_label() -> None:
    assert dns_match("*.example.com", "a.example.com")
    assert dns_match("*.Example.COM.", "a.example.com")
    assert not dns_match("*.example.com", "example.com")
    assert not dns_match("*.example.com", ".example.com")
    assert not dns_match("*.example.com", "a.b.example.com")
    assert not dns_match("*.com", "example.com")  # never a whole top-level domain
    assert dns_match("www.example.com", "www.example.com")


# -- the second judge: cryptography's path validation ----------------------------------------
def test_explain_chain_words_match_openssls(
    tls_ca: trustme.CA, tls_server_cert: trustme.LeafCert, other_ca: trustme.CA
) -> None:
    leaf, anchor = load_cert(tls_server_cert.cert_chain_pems[0]), load_cert(tls_ca.cert_pem)
    expired = load_cert(tls_ca.issue_cert(
        "localhost",
        not_before=datetime.datetime(2020, 1, 1, tzinfo=UTC),
        not_after=datetime.datetime(2021, 1, 1, tzinfo=UTC),
    ).cert_chain_pems[0])
    assert explain_chain([leaf], [anchor], "localhost") is None
    assert explain_chain([leaf], [anchor], "::1") is None
    assert explain_chain([leaf], [anchor]) is None  # as a client certificate
    assert "hostname mismatch" in (explain_chain([leaf], [anchor], "example.com") or "")
    other = [load_cert(other_ca.cert_pem)]
    for judge in (explain_chain([leaf], other, "localhost"), openssl_verdict([leaf], other).reason):
        assert judge == UNKNOWN_CA_WORDS
    assert explain_chain([expired], [anchor], "localhost") == (
        "certificate has expired (CERT_HAS_EXPIRED)"
    )
    assert explain_chain([expired], [anchor], "localhost") == (
        openssl_verdict([expired], [anchor]).reason
    )


def test_explain_chain_follows_intermediates_and_names_what_is_missing(
    tls_ca: trustme.CA,
) -> None:
    intermediate_ca = tls_ca.create_child_ca()
    issued = intermediate_ca.issue_cert("deep.localhost")
    leaf, intermediate = (load_cert(blob) for blob in issued.cert_chain_pems[:2])
    anchor = load_cert(tls_ca.cert_pem)
    assert explain_chain([leaf, intermediate], [anchor], "deep.localhost") is None
    assert explain_chain([leaf], [anchor], "deep.localhost") == UNKNOWN_CA_WORDS
    assert explain_chain([leaf, intermediate], [], "deep.localhost") == UNKNOWN_CA_WORDS
    assert explain_chain([], [anchor]) == NO_PEER_CERTIFICATE


# -- Node's getPeerCertificate() ---------------------------------------------------------------
def test_peer_certificate_has_nodes_keys_and_formats(
    tls_ca: trustme.CA, tls_client_cert: trustme.LeafCert
) -> None:
    cert = load_cert(tls_client_cert.cert_chain_pems[0])
    info = peer_certificate_dict(cert)
    assert info["subject"]["CN"] == "client"
    assert info["issuer"] == {
        attr.rfc4514_attribute_name: attr.value for attr in load_cert(tls_ca.cert_pem).subject
    }
    assert info["subjectaltname"] == "DNS:client.localhost"
    # Two hex digits per byte, as OpenSSL and Node write it: trustme's random
    # serial starts with a zero nibble one time in sixteen.
    digits = format(cert.serial_number, "X")
    assert info["serialNumber"] == digits.zfill(len(digits) + len(digits) % 2)
    fingerprint = info["fingerprint256"]
    assert bytes.fromhex(fingerprint.replace(":", "")) == cert.fingerprint(hashes.SHA256())
    assert fingerprint == fingerprint.upper() and fingerprint.count(":") == 31
    assert x509.load_der_x509_certificate(info["raw"]) == cert
    assert info["raw"] == cert.public_bytes(serialization.Encoding.DER)
    # Node's dates: "Jan  1 00:00:00 2021 GMT" style, in UTC.
    valid_to = datetime.datetime.strptime(info["valid_to"], "%b %d %H:%M:%S %Y GMT")
    assert valid_to.replace(tzinfo=UTC) == cert.not_valid_after_utc
    assert info["valid_from"].endswith(" GMT")


def test_peer_certificate_without_alternative_names_has_no_such_key() -> None:
    legacy, _ = self_signed("legacy.example", san=None)
    info = peer_certificate_dict(legacy)
    assert "subjectaltname" not in info
    assert info["subject"] == info["issuer"] == {"CN": "legacy.example"}


#: Node's own reading of a certificate (X509Certificate shares getPeerCertificate()'s formats).
NODE_READS_A_CERTIFICATE = """
const { X509Certificate } = require('crypto');
const cert = new X509Certificate(require('fs').readFileSync(0));
console.log(JSON.stringify({valid_from: cert.validFrom, valid_to: cert.validTo,
  serialNumber: cert.serialNumber, fingerprint256: cert.fingerprint256,
  subjectaltname: cert.subjectAltName}));
"""


@pytest.mark.parametrize("serial", [0x04BDC746F5BC, 0x1234, 0x7F])
def test_peer_certificate_fields_read_as_node_reads_them(
    tls_ca: trustme.CA, node: str, serial: int
) -> None:
    """Dates with Node's space-padded day, serial numbers with whole bytes of hex."""
    leaf, _ = self_signed("dates.example", san=["dates.example"])
    cert = (
        x509.CertificateBuilder().subject_name(leaf.subject).issuer_name(leaf.issuer)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key()).serial_number(serial)
        .not_valid_before(datetime.datetime(2021, 1, 5, 3, 4, 5, tzinfo=UTC))
        .not_valid_after(datetime.datetime(2031, 2, 16, tzinfo=UTC))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("dates.example")]),
                       critical=False)
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )
    done = subprocess.run(
        [node, "-e", NODE_READS_A_CERTIFICATE], capture_output=True, timeout=20, check=True,
        input=cert.public_bytes(serialization.Encoding.PEM),
    )
    nodes = json.loads(done.stdout)
    ours = peer_certificate_dict(cert)
    assert {key: ours[key] for key in nodes} == nodes
    assert ours["valid_from"] == "Jan  5 03:04:05 2021 GMT"
