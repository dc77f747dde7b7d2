"""Node's PEM inputs (``key``, ``cert``, ``ca``) read into ``cryptography`` objects.

Node's ``tls.createSecureContext`` takes ``key``, ``cert`` and ``ca`` as PEM
strings or buffers; trionet also takes the path of a PEM file, which is what
Python users hold (https://nodejs.org/docs/latest-v20.x/api/tls.html#tlscreatesecurecontextoptions).
Reading lives apart from context building (:mod:`trionet._tls_context`) and from
judging certificates (:mod:`trionet._tls_verify`) so that both can be used, and
unit-tested, without the other; nothing here touches OpenSSL or a socket.

Rejected: decoding PEM ourselves (``cryptography`` already refuses malformed
blocks with a ``ValueError``), and keeping the raw bytes in the contexts
(a bad key would then fail at the first handshake, not when ``serve`` starts).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

__all__ = [
    "CAInput",
    "PemInput",
    "SNIContexts",
    "SigningKey",
    "ca_inputs",
    "describe",
    "load_certificates",
    "load_pem",
    "load_private_key",
    "pem_identity",
]

#: PEM data (``bytes`` or a ``str`` holding ``-----BEGIN``) or the path of a PEM file.
PemInput = bytes | str | os.PathLike[str]
#: One PEM input or several, as Node's ``ca`` option.
CAInput = PemInput | Sequence[PemInput]
#: A certificate per server name: ``{"a.example.com": {"key": ..., "cert": ...}}``.
SNIContexts = Mapping[str, Mapping[str, PemInput]]

#: The key types a certificate can be signed for (no DH or X25519 keys).
SigningKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | dsa.DSAPrivateKey
)
_SIGNING_KEY_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    dsa.DSAPrivateKey,
)


def load_pem(value: PemInput) -> bytes:
    """PEM bytes from PEM data or from the file at ``value``."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str) and "-----BEGIN" in value:
        return value.encode("ascii")
    with open(os.fspath(value), "rb") as f:
        return f.read()


def ca_inputs(ca: CAInput) -> list[PemInput]:
    """Node's ``ca`` as a list: one PEM input stands for a list of one."""
    if isinstance(ca, (bytes, str, os.PathLike)):
        return [ca]
    return list(ca)


def pem_identity(value: CAInput | None) -> tuple[bytes, ...] | None:
    """The PEM content behind ``value``: equal for equal options given as data or as paths."""
    if value is None:
        return None
    return tuple(load_pem(item) for item in ca_inputs(value))


def load_certificates(value: CAInput) -> list[x509.Certificate]:
    """Every certificate in ``value`` (one PEM input or a list, as Node's ``ca``)."""
    certs: list[x509.Certificate] = []
    for item in ca_inputs(value):
        try:
            certs.extend(x509.load_pem_x509_certificates(load_pem(item)))
        except ValueError as exc:
            raise ValueError(f"not a PEM certificate: {describe(item)}") from exc
    return certs


def load_private_key(value: PemInput) -> SigningKey:
    """The (unencrypted) private key in ``value``."""
    try:
        key = serialization.load_pem_private_key(load_pem(value), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not an unencrypted PEM private key: {describe(value)}") from exc
    if not isinstance(key, _SIGNING_KEY_TYPES):
        raise ValueError(f"a {type(key).__name__} cannot sign a TLS handshake")
    return key


def describe(value: PemInput) -> str:
    """How an error message names ``value``: its path, never the PEM data (it may be a key)."""
    if isinstance(value, bytes) or (isinstance(value, str) and "-----BEGIN" in value):
        return "the PEM data given"
    return os.fspath(value)
