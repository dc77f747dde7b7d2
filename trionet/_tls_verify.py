"""Judging a peer's certificate, without I/O: the words, the name check, the chain.

Node tells an application *why* a peer is not authorized
(``tlsSocket.authorizationError``, https://nodejs.org/docs/latest-v20.x/api/tls.html#tlssocketauthorizationerror)
and what its certificate says (``getPeerCertificate()``). The pieces that
decide and describe that are pure functions of certificates and OpenSSL's
verify codes, so they live here, apart from the OpenSSL contexts
(:mod:`trionet._tls_context`) and the stream (:mod:`trionet._tls_stream`),
and are unit-tested with certificates verified in memory:

- :data:`VERIFY_ERRORS` / :func:`verify_error_words`: OpenSSL's ``X509_V_ERR_*``
  codes in OpenSSL's words with Node's code name;
- :class:`PeerVerdict`: what the verify callback recorded during one
  handshake, and the conclusion Node draws from it;
- :func:`hostname_mismatch`: Node's ``tls.checkServerIdentity``;
- :func:`explain_chain`: a second judge (``cryptography``'s path validation)
  for the peers OpenSSL did not judge (a stdlib context with verification off);
- :func:`peer_certificate_dict`: Node's certificate object.

Rejected: asking OpenSSL again for the words (``X509_verify_cert_error_string``
is not exposed by pyOpenSSL) and keeping these next to the contexts (the old
layout, where the stream and the contexts had to import each other).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

__all__ = [
    "NO_PEER_CERTIFICATE",
    "VERIFY_ERRORS",
    "PeerVerdict",
    "dns_match",
    "explain_chain",
    "hostname_mismatch",
    "is_ip_address",
    "peer_certificate_dict",
    "verify_error_words",
]

# OpenSSL's X509_V_ERR_* codes for the failures people meet, with Node's name
# for each (Node's ``authorizationError`` code: "X509 certificate error codes",
# https://nodejs.org/docs/latest-v20.x/api/tls.html#x509-certificate-error-codes)
# and OpenSSL's words (X509_STORE_CTX_get_error(3),
# https://docs.openssl.org/3.0/man3/X509_STORE_CTX_get_error/). The numbers are
# OpenSSL 3.0's (include/openssl/x509_vfy.h.in), the line Node 20 ships: 3.0
# moved INVALID_CA from 24 to 79 and gave 24 to NO_ISSUER_PUBLIC_KEY.
VERIFY_ERRORS: dict[int, tuple[str, str]] = {
    2: ("UNABLE_TO_GET_ISSUER_CERT", "unable to get issuer certificate"),
    4: ("UNABLE_TO_DECRYPT_CERT_SIGNATURE", "unable to decrypt certificate's signature"),
    7: ("CERT_SIGNATURE_FAILURE", "certificate signature failure"),
    9: ("CERT_NOT_YET_VALID", "certificate is not yet valid"),
    10: ("CERT_HAS_EXPIRED", "certificate has expired"),
    18: ("DEPTH_ZERO_SELF_SIGNED_CERT", "self-signed certificate"),
    19: ("SELF_SIGNED_CERT_IN_CHAIN", "self-signed certificate in certificate chain"),
    20: (
        "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
        "unable to get local issuer certificate (unknown CA)",
    ),
    21: ("UNABLE_TO_VERIFY_LEAF_SIGNATURE", "unable to verify the first certificate"),
    22: ("CERT_CHAIN_TOO_LONG", "certificate chain too long"),
    23: ("CERT_REVOKED", "certificate revoked"),
    24: ("NO_ISSUER_PUBLIC_KEY", "issuer certificate doesn't have a public key"),
    25: ("PATH_LENGTH_EXCEEDED", "path length constraint exceeded"),
    26: ("INVALID_PURPOSE", "unsuitable certificate purpose"),
    27: ("CERT_UNTRUSTED", "certificate not trusted"),
    28: ("CERT_REJECTED", "certificate rejected"),
    79: ("INVALID_CA", "invalid CA certificate"),
}
#: X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: no trusted CA issued the chain.
UNKNOWN_CA = 20
#: X509_V_ERR_CERT_HAS_EXPIRED and X509_V_ERR_CERT_NOT_YET_VALID.
CERT_HAS_EXPIRED, CERT_NOT_YET_VALID = 10, 9

#: The reason given when a peer that was asked for a certificate sent none
#: (Node reports UNABLE_TO_GET_ISSUER_CERT here, for historical reasons).
NO_PEER_CERTIFICATE = "the peer sent no certificate"


def verify_error_words(errnum: int) -> str:
    """OpenSSL's verify error ``errnum`` in words, with Node's code in parentheses."""
    code, words = VERIFY_ERRORS.get(errnum, (f"X509_V_ERR_{errnum}", "certificate verify error"))
    return f"{words} ({code})"


# -- what a handshake decided -----------------------------------------------------
@dataclass
class PeerVerdict:
    """What the verify callback saw during one handshake: the first failure, if any.

    OpenSSL calls the callback once per certificate of the chain and again
    for each failed check; the first failure is the one Node reports.
    """

    #: OpenSSL's X509_V_ERR code of the first failed check, and at which depth.
    errnum: int | None = None
    depth: int | None = None
    #: Why the peer is not authorized (Node's ``authorizationError``), in words.
    reason: str | None = None

    def record(self, errnum: int, depth: int) -> None:
        """Keep OpenSSL's verdict on one certificate, if it is the first failure."""
        if self.errnum is None:
            self.errnum, self.depth = errnum, depth
            self.reason = verify_error_words(errnum)

    def conclude(self, cert: x509.Certificate | None, hostname: str | None) -> str | None:
        """Node's ``authorizationError`` once the handshake is done, or None if authorized.

        A missing certificate is a failure; a chain OpenSSL accepted must also
        name ``hostname`` (a client judging its server; None on the server side).
        """
        if self.reason is None:
            if cert is None:
                self.reason = NO_PEER_CERTIFICATE
            elif hostname:
                self.reason = hostname_mismatch(cert, hostname)
        return self.reason


# -- the server's identity -----------------------------------------------------------
def hostname_mismatch(cert: x509.Certificate, host: str) -> str | None:
    """Why ``cert`` is not valid for ``host``, or None when it is.

    Node's ``tls.checkServerIdentity``
    (https://nodejs.org/docs/latest-v20.x/api/tls.html#tlscheckserveridentityhostname-cert):
    an IP address must equal an IP entry of subjectAltName; a name must match
    a DNS entry, where ``*`` stands for exactly the whole left-most label
    (RFC 6125 §6.4.3). The subject CN is consulted only when the certificate
    has no DNS entries at all (RFC 6125 §6.4.4).
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = san.get_values_for_type(x509.DNSName)
        ips = san.get_values_for_type(x509.IPAddress)
    except x509.ExtensionNotFound:
        dns_names, ips = [], []
    host = host.rstrip(".").lower()
    ip = _ip_address(host)
    if ip is not None:
        if ip in ips:
            return None
    else:
        names = dns_names or [
            str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        ]
        if any(dns_match(pattern, host) for pattern in names):
            return None
    listed = ", ".join([f"DNS:{n}" for n in dns_names] + [f"IP Address:{i}" for i in ips])
    return (
        f"hostname mismatch: Hostname/IP does not match certificate's altnames: "
        f"Host: {host}. is not in the cert's altnames: {listed or 'none'} "
        f"(ERR_TLS_CERT_ALTNAME_INVALID)"
    )


def dns_match(pattern: str, host: str) -> bool:
    """``host`` (lower case, no trailing dot) matches a DNS name or ``*.`` wildcard.

    The wildcard covers exactly one whole left-most label and never a bare
    registered domain: ``*.example.com`` matches ``a.example.com`` only (RFC 6125 §6.4.3).
    """
    pattern = pattern.rstrip(".").lower()
    if not pattern.startswith("*."):
        return pattern == host
    first, _, rest = host.partition(".")
    return bool(first) and rest == pattern[2:] and "." in rest


def is_ip_address(host: str) -> bool:
    """``host`` is an IPv4 or IPv6 literal (brackets allowed): never sent as SNI (RFC 6066 §3)."""
    return _ip_address(host) is not None


def _ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


# -- a second judge: cryptography's path validation ----------------------------------
# Used where OpenSSL did not judge: a stdlib context with verification off
# (``reject_unauthorized=False`` through ``ssl.SSLContext``). The WebPKI rules
# for end-entity extensions are relaxed to what OpenSSL checks (trustme's
# certificates mark subjectAltName critical beside a subject, which the strict
# profile refuses); chains, CA constraints, validity times and names are checked.
_EE_CLIENT_POLICY = ExtensionPolicy.permit_all()
_EE_SERVER_POLICY = ExtensionPolicy.permit_all().require_present(
    x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
)


def explain_chain(
    chain: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    hostname: str | None = None,
) -> str | None:
    """Why ``chain`` (leaf first) does not verify against ``anchors``, or None if it does.

    With ``hostname`` the leaf must also name it (a server's certificate).
    The reasons use the same words as OpenSSL's verdicts elsewhere.
    """
    if not chain:
        return NO_PEER_CERTIFICATE
    if not anchors:
        return verify_error_words(UNKNOWN_CA)
    leaf, intermediates = chain[0], list(chain[1:])
    builder = PolicyBuilder().store(Store(list(anchors))).extension_policies(
        ca_policy=ExtensionPolicy.webpki_defaults_ca(),
        ee_policy=_EE_SERVER_POLICY if hostname else _EE_CLIENT_POLICY,
    )
    try:
        if hostname:
            builder.build_server_verifier(_subject(hostname)).verify(leaf, intermediates)
        else:
            builder.build_client_verifier().verify(leaf, intermediates)
    except VerificationError as exc:
        return _verification_words(str(exc), leaf, hostname)
    return None


def _subject(hostname: str) -> x509.DNSName | x509.IPAddress:
    ip = _ip_address(hostname)
    return x509.IPAddress(ip) if ip is not None else x509.DNSName(hostname.rstrip("."))


def _verification_words(message: str, leaf: x509.Certificate, hostname: str | None) -> str:
    """cryptography's VerificationError in OpenSSL's words (with Node's code)."""
    if "not valid at validation time" in message:
        now = datetime.now(timezone.utc)
        expired = now > leaf.not_valid_after_utc
        return verify_error_words(CERT_HAS_EXPIRED if expired else CERT_NOT_YET_VALID)
    if "candidates exhausted" in message:
        return verify_error_words(UNKNOWN_CA)
    if hostname and "subjectAltName" in message:
        return hostname_mismatch(leaf, hostname) or f"hostname mismatch: {message}"
    return f"certificate verify failed: {message.partition(' (encountered')[0]}"


# -- the peer's certificate, as Node's getPeerCertificate() ------------------------
def peer_certificate_dict(cert: x509.Certificate) -> dict[str, Any]:
    """The fields of Node's certificate object, under Node's keys.

    https://nodejs.org/docs/latest-v20.x/api/tls.html#certificate-object:
    ``subject``, ``issuer``, ``valid_from``, ``valid_to``, ``serialNumber``
    (upper-case hex, whole bytes), ``fingerprint256`` (colon-separated upper-case hex),
    ``raw`` (DER) and, when present, ``subjectaltname``.
    """
    result: dict[str, Any] = {
        "subject": _name_dict(cert.subject),
        "issuer": _name_dict(cert.issuer),
        "valid_from": _asn1_time(cert.not_valid_before_utc),
        "valid_to": _asn1_time(cert.not_valid_after_utc),
        "serialNumber": _serial_hex(cert.serial_number),
        "fingerprint256": cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        "raw": cert.public_bytes(serialization.Encoding.DER),
    }
    with contextlib.suppress(x509.ExtensionNotFound):
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        entries = [f"DNS:{n}" for n in san.get_values_for_type(x509.DNSName)]
        entries += [f"IP Address:{i}" for i in san.get_values_for_type(x509.IPAddress)]
        entries += [f"email:{e}" for e in san.get_values_for_type(x509.RFC822Name)]
        result["subjectaltname"] = ", ".join(entries)
    return result


def _name_dict(name: x509.Name) -> dict[str, str]:
    return {attr.rfc4514_attribute_name: str(attr.value) for attr in name}


def _asn1_time(when: datetime) -> str:
    """OpenSSL's ASN1_TIME_print format, which Node shows: ``"Jan  5 03:04:05 2021 GMT"``.

    The day is padded with a space, not a zero (ASN1_TIME_print(3),
    https://docs.openssl.org/3.0/man3/ASN1_TIME_set/).
    """
    return f"{when:%b} {when.day:2d} {when:%H:%M:%S} {when.year} GMT"


def _serial_hex(serial: int) -> str:
    """The serial number as OpenSSL's BN_bn2hex writes it: two hex digits per byte.

    Node keeps the leading zero of ``04BD...`` (BN_bn2hex(3),
    https://docs.openssl.org/3.0/man3/BN_bn2bin/).
    """
    digits = format(abs(serial), "X")  # a negative serial breaks RFC 5280 §4.1.2.2, yet parses
    digits = digits if len(digits) % 2 == 0 else f"0{digits}"
    return f"-{digits}" if serial < 0 else digits
