"""Node's TLS options turned into OpenSSL contexts, and the words for a failed check.

Node's ``tls`` takes ``key``, ``cert`` and ``ca`` as PEM strings, buffers or
files, and two switches that decide how a peer's certificate is judged:
``requestCert`` and ``rejectUnauthorized``. The standard :mod:`ssl` module
cannot ask for a client certificate without enforcing it, nor say why a
certificate was refused; so the contexts here are pyOpenSSL ones whose verify
callback *records* OpenSSL's verdict on each certificate of the chain and
lets the handshake go on only when ``reject_unauthorized`` is False. With
``reject_unauthorized=True`` the callback returns OpenSSL's own verdict
unchanged: verification is never loosened.

:class:`TLSConfig` bundles a context with those switches; it is what
``tls.serve``/``tls.connect`` and ``https.serve`` hand to the stream in
:mod:`trionet._tls_stream`. :func:`client_ssl_context` builds a standard
:class:`ssl.SSLContext` from the same options for the HTTP client's agent and
the WebSocket client.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from OpenSSL import SSL, crypto

from ._errors import TLSError
from ._server import TLS_HANDSHAKE_TIMEOUT

if TYPE_CHECKING:
    from ._tls_stream import TLSStream

__all__ = [
    "CAInput",
    "PeerVerdict",
    "PemInput",
    "SNIContexts",
    "TLSConfig",
    "client_config",
    "client_ssl_context",
    "explain_chain",
    "hostname_mismatch",
    "load_pem",
    "peer_certificate_dict",
    "server_config",
    "verify_error_words",
]

#: PEM data (``bytes`` or a ``str`` holding ``-----BEGIN``) or the path of a PEM file.
PemInput = bytes | str | os.PathLike[str]
#: One PEM input or several, as Node's ``ca`` option.
CAInput = PemInput | Sequence[PemInput]
#: A certificate per server name: ``{"a.example.com": {"key": ..., "cert": ...}}``.
SNIContexts = Mapping[str, Mapping[str, PemInput]]

# Node 20's tls.DEFAULT_MIN_VERSION is 'TLSv1.2' (ANCHORS §1.5).
MIN_VERSION = SSL.TLS1_2_VERSION

# Without a session id context, a TLS 1.2 client resuming a session with a
# server that verifies client certificates gets "session id context uninitialized".
SESSION_ID_CONTEXT = b"trionet"

# OpenSSL's X509_V_ERR_* codes for the failures people meet, with Node's name
# for each (Node's ``authorizationError`` is this name) and OpenSSL's words.
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
    24: ("INVALID_CA", "invalid CA certificate"),
    25: ("PATH_LENGTH_EXCEEDED", "path length constraint exceeded"),
    26: ("INVALID_PURPOSE", "unsupported certificate purpose"),
    27: ("CERT_UNTRUSTED", "certificate not trusted"),
    28: ("CERT_REJECTED", "certificate rejected"),
}

#: The reason given when a peer that was asked for a certificate sent none
#: (Node reports UNABLE_TO_GET_ISSUER_CERT here, for historical reasons).
NO_PEER_CERTIFICATE = "the peer sent no certificate"


def verify_error_words(errnum: int) -> str:
    """OpenSSL's verify error ``errnum`` in words, with Node's code in parentheses."""
    code, words = VERIFY_ERRORS.get(errnum, (f"X509_V_ERR_{errnum}", "certificate verify error"))
    return f"{words} ({code})"


# -- loading PEM ------------------------------------------------------------------
def load_pem(value: PemInput) -> bytes:
    """PEM bytes from PEM data or from the file at ``value``."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str) and "-----BEGIN" in value:
        return value.encode("ascii")
    with open(os.fspath(value), "rb") as f:
        return f.read()


def _ca_inputs(ca: CAInput) -> list[PemInput]:
    if isinstance(ca, (bytes, str, os.PathLike)):
        return [ca]
    return list(ca)


def load_certificates(value: CAInput) -> list[x509.Certificate]:
    """Every certificate in ``value`` (one PEM input or a list, as Node's ``ca``)."""
    certs: list[x509.Certificate] = []
    for item in _ca_inputs(value):
        try:
            certs.extend(x509.load_pem_x509_certificates(load_pem(item)))
        except ValueError as exc:
            raise ValueError(f"not a PEM certificate: {_describe(item)}") from exc
    return certs


#: The key types a certificate can be signed for (no DH or X25519 keys).
SigningKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | dsa.DSAPrivateKey
)


def load_private_key(value: PemInput) -> SigningKey:
    """The (unencrypted) private key in ``value``."""
    try:
        key = serialization.load_pem_private_key(load_pem(value), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not an unencrypted PEM private key: {_describe(value)}") from exc
    if not isinstance(
        key,
        (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey,
         ed448.Ed448PrivateKey, dsa.DSAPrivateKey),
    ):
        raise ValueError(f"a {type(key).__name__} cannot sign a TLS handshake")
    return key


def _describe(value: PemInput) -> str:
    if isinstance(value, bytes) or (isinstance(value, str) and "-----BEGIN" in value):
        return "the PEM data given"
    return os.fspath(value)


# -- what a handshake decided -----------------------------------------------------
@dataclass
class PeerVerdict:
    """What the verify callback saw during one handshake: the first failure, if any."""

    #: OpenSSL's X509_V_ERR code of the first failed check, and at which depth.
    errnum: int | None = None
    depth: int | None = None
    #: Why the peer is not authorized (Node's ``authorizationError``), in words.
    reason: str | None = None

    def record(self, errnum: int, depth: int) -> None:
        if self.errnum is None:
            self.errnum, self.depth = errnum, depth
            self.reason = verify_error_words(errnum)

    def refuse(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason


# -- contexts ---------------------------------------------------------------------
@dataclass
class TLSConfig:
    """A pyOpenSSL context plus Node's switches for judging the peer.

    Build one with :func:`server_config` or :func:`client_config`. It is also
    what ``serve(ssl_context=...)`` accepts besides a stdlib context: the
    server calls :meth:`wrap_server_stream` on each accepted stream.
    """

    context: SSL.Context
    server_side: bool
    #: Node's ``rejectUnauthorized``: fail the handshake on an unverified peer.
    reject_unauthorized: bool = True
    #: Node's ``requestCert`` (server side): ask the client for a certificate.
    request_cert: bool = False
    alpn_protocols: tuple[str, ...] = ()
    #: Server side: a handshake not done within this many seconds is cut off
    #: (Node's ``handshakeTimeout``, 120 s there; shorter here, see _server).
    handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT

    def new_connection(self) -> SSL.Connection:
        """A fresh OpenSSL connection over memory BIOs for one handshake."""
        conn = SSL.Connection(self.context, None)
        if self.server_side:
            conn.set_accept_state()
        else:
            conn.set_connect_state()
        return conn

    async def wrap_server_stream(self, stream: Any) -> TLSStream:
        """Run the server side of a handshake over ``stream`` (the ``serve`` hook)."""
        from ._tls_stream import TLSStream

        tls = TLSStream(stream, self)
        await tls.do_handshake()
        return tls


def _verify_callback(
    conn: SSL.Connection, cert: Any, errnum: int, depth: int, ok: int
) -> bool:
    """OpenSSL asks about each certificate of the chain; we record and decide.

    Node: "rejectUnauthorized: If not false the server will reject any
    connection which is not authorized with the list of supplied CAs. This
    option only has an effect if requestCert is true." With it, OpenSSL's own
    verdict stands; without it, every certificate passes and the failure is
    kept as ``authorization_error``.
    """
    stream: TLSStream = conn.get_app_data()
    if not ok:
        stream.verdict.record(errnum, depth)
    return bool(ok) or not stream.config.reject_unauthorized


def _new_context(method: int) -> SSL.Context:
    ctx = SSL.Context(method)
    ctx.set_min_proto_version(MIN_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
    return ctx


def _use_identity(ctx: SSL.Context, cert: PemInput, key: PemInput) -> None:
    """Present ``cert`` (a chain: leaf first) with ``key``."""
    chain = load_certificates(cert)
    if not chain:
        raise ValueError(f"no certificate in {_describe(cert)}")
    ctx.use_certificate(chain[0])
    for extra in chain[1:]:
        ctx.add_extra_chain_cert(extra)
    ctx.use_privatekey(load_private_key(key))
    try:
        ctx.check_privatekey()
    except SSL.Error as exc:
        raise ValueError("key does not match the certificate") from exc


def _trust(ctx: SSL.Context, ca: CAInput | None, *, tell_clients: bool = False) -> None:
    """Trust ``ca`` only (Node: ``ca`` replaces the well-known CAs), else the system's."""
    if ca is None:
        ctx.set_default_verify_paths()
        return
    store = ctx.get_cert_store()
    assert store is not None
    for cert in load_certificates(ca):
        store.add_cert(crypto.X509.from_cryptography(cert))
        if tell_clients:
            # The CertificateRequest names these CAs, as Node's server does.
            ctx.add_client_ca(cert)


def _alpn_selector(protocols: Sequence[str]) -> Callable[[SSL.Connection, list[bytes]], bytes]:
    ours = [p.encode("ascii") for p in protocols]

    def select(conn: SSL.Connection, offered: list[bytes]) -> bytes:
        # Node picks the first of the server's ALPNProtocols that the client offers.
        for proto in ours:
            if proto in offered:
                return proto
        return SSL.NO_OVERLAPPING_PROTOCOLS  # type: ignore[return-value]

    return select


def server_config(
    *,
    key: PemInput | None,
    cert: PemInput | None,
    ca: CAInput | None = None,
    request_cert: bool = False,
    reject_unauthorized: bool = True,
    alpn_protocols: Sequence[str] | None = None,
    sni_contexts: SNIContexts | None = None,
) -> TLSConfig:
    """A server's TLS configuration from Node's ``tls.createServer`` options.

    Node: "requestCert: If true the server will request a certificate from
    clients that connect and attempt to verify that certificate." The
    clients' certificates are checked against ``ca`` (else the system's CAs).

    ``sni_contexts`` maps server names to ``{"key": ..., "cert": ...}``, as
    Node's ``server.addContext(hostname, context)``: a client that asks for
    one of them (through SNI) gets that certificate, any other client gets
    ``cert``. A name may start with ``*.`` to stand for one more label
    (``*.example.com`` covers ``a.example.com``). The other options apply
    to every name.
    """
    if key is None or cert is None:
        raise ValueError("a TLS server needs key= and cert= (or ssl_context=)")

    def context(key: PemInput, cert: PemInput) -> SSL.Context:
        ctx = _new_context(SSL.TLS_SERVER_METHOD)
        _use_identity(ctx, cert, key)
        ctx.set_session_id(SESSION_ID_CONTEXT)
        if request_cert:
            _trust(ctx, ca, tell_clients=True)
            mode = SSL.VERIFY_PEER
            if reject_unauthorized:
                mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
            ctx.set_verify(mode, _verify_callback)
        if alpn_protocols:
            ctx.set_alpn_select_callback(_alpn_selector(alpn_protocols))
        return ctx

    ctx = context(key, cert)
    if sni_contexts:
        by_name = {
            _sni_name(name): context(*_sni_identity(name, identity))
            for name, identity in sni_contexts.items()
        }
        ctx.set_tlsext_servername_callback(_sni_selector(by_name))
    return TLSConfig(
        ctx,
        server_side=True,
        reject_unauthorized=reject_unauthorized,
        request_cert=request_cert,
        alpn_protocols=tuple(alpn_protocols or ()),
    )


def _sni_name(name: str) -> str:
    """A server name as ``sni_contexts`` takes it, lower-cased; ValueError if malformed."""
    host = name.rstrip(".").lower()
    labels = host.split(".")
    wildcard_too_wide = host.startswith("*.") and len(labels) < 3
    if not host or "" in labels or "*" in host.removeprefix("*.") or wildcard_too_wide:
        raise ValueError(f"sni_contexts: {name!r} is not a server name (or *.domain.tld)")
    return host


def _sni_identity(name: str, identity: Mapping[str, PemInput]) -> tuple[PemInput, PemInput]:
    """The ``(key, cert)`` of one ``sni_contexts`` entry."""
    if set(identity) != {"key", "cert"}:
        raise ValueError(f"sni_contexts[{name!r}] needs exactly 'key' and 'cert'")
    return identity["key"], identity["cert"]


def _sni_selector(contexts: dict[str, SSL.Context]) -> Callable[[SSL.Connection], None]:
    """OpenSSL's servername callback: switch to the context of the name asked for."""
    exact = {name: ctx for name, ctx in contexts.items() if not name.startswith("*.")}
    wildcards = [(name, ctx) for name, ctx in contexts.items() if name.startswith("*.")]

    def select(conn: SSL.Connection) -> None:
        asked = conn.get_servername()
        if not asked:
            return  # no SNI (an IP address, an old client): the default certificate
        host = asked.decode("ascii", "replace").rstrip(".").lower()
        ctx = exact.get(host)
        if ctx is None:
            ctx = next((c for pattern, c in wildcards if _dns_match(pattern, host)), None)
        if ctx is not None:
            conn.set_context(ctx)

    return select


def client_config(
    *,
    ca: CAInput | None = None,
    cert: PemInput | None = None,
    key: PemInput | None = None,
    reject_unauthorized: bool = True,
    alpn_protocols: Sequence[str] | None = None,
) -> TLSConfig:
    """A client's TLS configuration from Node's ``tls.connect`` options.

    The server's chain is always verified (against ``ca``, else the system's
    CAs) so that ``authorized`` means something; Node: "rejectUnauthorized:
    If not false, the server certificate is verified against the list of
    supplied CAs", else the handshake goes on and ``authorized`` is False.
    """
    ctx = _new_context(SSL.TLS_CLIENT_METHOD)
    _trust(ctx, ca)
    ctx.set_verify(SSL.VERIFY_PEER, _verify_callback)
    if cert is not None or key is not None:
        if cert is None or key is None:
            raise ValueError("give both cert= and key= for a client certificate")
        _use_identity(ctx, cert, key)
    if alpn_protocols:
        ctx.set_alpn_protos([p.encode("ascii") for p in alpn_protocols])
    return TLSConfig(
        ctx,
        server_side=False,
        reject_unauthorized=reject_unauthorized,
        alpn_protocols=tuple(alpn_protocols or ()),
    )


def client_ssl_context(
    *,
    ca: CAInput | None = None,
    cert: PemInput | None = None,
    key: PemInput | None = None,
    reject_unauthorized: bool = True,
) -> ssl.SSLContext:
    """A stdlib client context from Node's options, for the agent and ``ws.connect``.

    ``reject_unauthorized=False`` turns verification off entirely (the
    stdlib cannot verify without enforcing); hostname checks stay on otherwise.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca is None:
        ctx.load_default_certs()
    else:
        pems = [load_pem(item).decode("ascii") for item in _ca_inputs(ca)]
        ctx.load_verify_locations(cadata="\n".join(pems))
    if not reject_unauthorized:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert is not None or key is not None:
        if cert is None or key is None:
            raise ValueError("give both cert= and key= for a client certificate")
        _load_cert_chain(ctx, cert, key)
    return ctx


def _load_cert_chain(ctx: ssl.SSLContext, cert: PemInput, key: PemInput) -> None:
    """``load_cert_chain`` reads files only: write PEM data to a private temp file."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, value in (("cert.pem", cert), ("key.pem", key)):
            path = os.path.join(tmp, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(load_pem(value))
            paths.append(path)
        ctx.load_cert_chain(paths[0], paths[1])


# -- the server's identity -----------------------------------------------------------
def hostname_mismatch(cert: x509.Certificate, host: str) -> str | None:
    """Why ``cert`` is not valid for ``host``, or None when it is.

    Node's ``tls.checkServerIdentity``: an IP address must equal an IP entry
    of subjectAltName; a name must match a DNS entry, where ``*`` stands for
    exactly the whole left-most label. The subject CN is consulted only when
    the certificate has no DNS entries at all (RFC 6125 §6.4.4).
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = san.get_values_for_type(x509.DNSName)
        ips = san.get_values_for_type(x509.IPAddress)
    except x509.ExtensionNotFound:
        dns_names, ips = [], []
    host = host.rstrip(".").lower()
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    if ip is not None:
        if ip in ips:
            return None
    else:
        names = dns_names or [
            str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        ]
        if any(_dns_match(pattern, host) for pattern in names):
            return None
    listed = ", ".join([f"DNS:{n}" for n in dns_names] + [f"IP Address:{i}" for i in ips])
    return (
        f"hostname mismatch: Hostname/IP does not match certificate's altnames: "
        f"Host: {host}. is not in the cert's altnames: {listed or 'none'} "
        f"(ERR_TLS_CERT_ALTNAME_INVALID)"
    )


def _dns_match(pattern: str, host: str) -> bool:
    pattern = pattern.rstrip(".").lower()
    if not pattern.startswith("*."):
        return pattern == host
    first, _, rest = host.partition(".")
    return bool(first) and rest == pattern[2:] and "." in rest


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
        return verify_error_words(20)
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
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname.strip("[]")))
    except ValueError:
        return x509.DNSName(hostname.rstrip("."))


def _verification_words(message: str, leaf: x509.Certificate, hostname: str | None) -> str:
    """cryptography's VerificationError in OpenSSL's words (with Node's code)."""
    if "not valid at validation time" in message:
        now = datetime.now(timezone.utc)
        return verify_error_words(10 if now > leaf.not_valid_after_utc else 9)
    if "candidates exhausted" in message:
        return verify_error_words(20)
    if hostname and "subjectAltName" in message:
        return hostname_mismatch(leaf, hostname) or f"hostname mismatch: {message}"
    return f"certificate verify failed: {message.partition(' (encountered')[0]}"


# -- the peer's certificate, as Node's getPeerCertificate() ------------------------
def peer_certificate_dict(cert: x509.Certificate) -> dict[str, Any]:
    """The fields Node's ``getPeerCertificate()`` reports, under Node's keys."""
    result: dict[str, Any] = {
        "subject": _name_dict(cert.subject),
        "issuer": _name_dict(cert.issuer),
        "valid_from": cert.not_valid_before_utc.astimezone(timezone.utc).strftime(
            "%b %d %H:%M:%S %Y GMT"
        ),
        "valid_to": cert.not_valid_after_utc.strftime("%b %d %H:%M:%S %Y GMT"),
        "serialNumber": format(cert.serial_number, "X"),
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


def tls_error(what: str, reason: str) -> TLSError:
    """A :class:`TLSError` whose message says what failed and why."""
    return TLSError(f"{what}: {reason}")
