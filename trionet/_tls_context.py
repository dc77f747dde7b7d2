"""Node's TLS options turned into OpenSSL contexts.

Node's ``tls`` takes ``key``, ``cert`` and ``ca`` as PEM strings, buffers or
files, and two switches that decide how a peer's certificate is judged:
``requestCert`` and ``rejectUnauthorized``
(https://nodejs.org/docs/latest-v20.x/api/tls.html#tlscreateserveroptions-secureconnectionlistener).
The standard :mod:`ssl` module cannot ask for a client certificate without
enforcing it, nor say why a certificate was refused; so the contexts here are
pyOpenSSL ones whose verify callback *records* OpenSSL's verdict on each
certificate of the chain and lets the handshake go on only when
``reject_unauthorized`` is False. With ``reject_unauthorized=True`` the
callback returns OpenSSL's own verdict unchanged: verification is never loosened.

The callback's decision is bound when the context is built (a closure over
``reject_unauthorized``); what it records goes to the connection's
:class:`~trionet._tls_verify.PeerVerdict`, which the stream sets as OpenSSL's
app data. So this module knows nothing of the stream: it builds a
:class:`~trionet._tls_stream.TLSConfig` and the stream module never imports
it back. Rejected: looking the switches up on the stream from the callback
(the old way, which made the two modules import each other) and a context per
connection (building one costs more than the handshake it would serve).

:class:`TLSOptions` carries Node's options inward: the public functions
(``tls.serve``, ``https.serve``, ``tls.connect``, ``server_config``, ...)
keep their explicit, typed keyword arguments and hand one ``TLSOptions`` to
the builders here. :func:`client_ssl_context` builds a standard
:class:`ssl.SSLContext` from the same options for the HTTP client's agent and
the WebSocket client. PEM reading is :mod:`trionet._tls_pem`'s.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from OpenSSL import SSL, crypto

from ._tls_pem import (
    CAInput,
    PemInput,
    SNIContexts,
    ca_inputs,
    describe,
    load_certificates,
    load_pem,
    load_private_key,
    pem_identity,
)
from ._tls_stream import TLSConfig
from ._tls_verify import PeerVerdict, dns_match

__all__ = [
    "CAInput",
    "PemInput",
    "SNIContexts",
    "TLSConfig",
    "TLSOptions",
    "client_config",
    "client_config_from",
    "client_ssl_context",
    "client_ssl_context_from",
    "server_config",
    "server_config_from",
    "server_tls",
]

# Node 20's tls.DEFAULT_MIN_VERSION is 'TLSv1.2'
# (https://nodejs.org/docs/latest-v20.x/api/tls.html#tlsdefault_min_version).
MIN_VERSION = SSL.TLS1_2_VERSION

# Without a session id context, a TLS 1.2 client resuming a session with a
# server that verifies client certificates gets "session id context uninitialized"
# (SSL_CTX_set_session_id_context(3), https://docs.openssl.org/3.0/man3/SSL_CTX_set_session_id_context/).
SESSION_ID_CONTEXT = b"trionet"


@dataclass(frozen=True, kw_only=True)
class TLSOptions:
    """Node's TLS options in one piece, as the public functions received them.

    Only plumbing: users never build one, the public signatures list every
    option with its type. Each field is Node's option of the same meaning.
    """

    key: PemInput | None = None
    cert: PemInput | None = None
    #: Node's ``ca``: replaces the well-known CAs (None: the system's).
    ca: CAInput | None = None
    #: Node's ``requestCert`` (server side).
    request_cert: bool = False
    #: Node's ``rejectUnauthorized``.
    reject_unauthorized: bool = True
    alpn_protocols: Sequence[str] | None = None
    #: Node's ``server.addContext(hostname, {key, cert})``, per name.
    sni_contexts: SNIContexts | None = None
    #: Node's ``handshakeTimeout`` in seconds (None: the server's default).
    handshake_timeout: float | None = None

    def builds_a_context(self) -> bool:
        """Whether these options describe a server context (so ``ssl_context=`` is one too many)."""
        return (
            self.key is not None or self.cert is not None or self.ca is not None
            or bool(self.sni_contexts)
        )  # fmt: skip

    def client_identity(self) -> tuple[PemInput, PemInput] | None:
        """The client certificate and key, or None; ValueError when only one is given."""
        if self.cert is None and self.key is None:
            return None
        if self.cert is None or self.key is None:
            raise ValueError("give both cert= and key= for a client certificate")
        return self.cert, self.key

    def client_key(self) -> tuple[Any, ...]:
        """What makes two clients' contexts the same: the PEM content and the switch."""
        return (
            pem_identity(self.ca),
            pem_identity(self.cert),
            pem_identity(self.key),
            self.reject_unauthorized,
        )


# -- the pieces of a context ------------------------------------------------------
def _verify_callback(
    reject_unauthorized: bool,
) -> Callable[[SSL.Connection, crypto.X509, int, int, int], bool]:
    """OpenSSL asks about each certificate of the chain; we record and decide.

    Node: "rejectUnauthorized: If not false the server will reject any
    connection which is not authorized with the list of supplied CAs. This
    option only has an effect if requestCert is true." With it, OpenSSL's own
    verdict stands; without it, every certificate passes and the failure is
    kept in the connection's :class:`PeerVerdict` (its app data).
    SSL_CTX_set_verify(3): the callback's return value decides whether the
    handshake goes on (https://docs.openssl.org/3.0/man3/SSL_CTX_set_verify/).
    """
    go_on_when_failed = not reject_unauthorized

    def verify(conn: SSL.Connection, cert: crypto.X509, errnum: int, depth: int, ok: int) -> bool:
        if ok:
            return True
        verdict: PeerVerdict = conn.get_app_data()
        verdict.record(errnum, depth)
        return go_on_when_failed

    return verify


def _new_context(method: int) -> SSL.Context:
    ctx = SSL.Context(method)
    ctx.set_min_proto_version(MIN_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
    return ctx


def _use_identity(ctx: SSL.Context, cert: PemInput, key: PemInput) -> None:
    """Present ``cert`` (a chain: leaf first) with ``key``."""
    chain = load_certificates(cert)
    if not chain:
        raise ValueError(f"no certificate in {describe(cert)}")
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
            # The CertificateRequest names these CAs (RFC 8446 §4.2.4), as Node's server does.
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


# -- servers ------------------------------------------------------------------------
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
    return server_config_from(TLSOptions(
        key=key, cert=cert, ca=ca, request_cert=request_cert,
        reject_unauthorized=reject_unauthorized, alpn_protocols=alpn_protocols,
        sni_contexts=sni_contexts,
    ))  # fmt: skip


def server_config_from(options: TLSOptions) -> TLSConfig:
    """:func:`server_config` from a :class:`TLSOptions` (``handshake_timeout`` included)."""
    if options.key is None or options.cert is None:
        raise ValueError("a TLS server needs key= and cert= (or ssl_context=)")
    verify = _verify_callback(options.reject_unauthorized)

    def context(key: PemInput, cert: PemInput) -> SSL.Context:
        ctx = _new_context(SSL.TLS_SERVER_METHOD)
        _use_identity(ctx, cert, key)
        ctx.set_session_id(SESSION_ID_CONTEXT)
        if options.request_cert:
            _trust(ctx, options.ca, tell_clients=True)
            mode = SSL.VERIFY_PEER
            if options.reject_unauthorized:
                mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
            ctx.set_verify(mode, verify)
        if options.alpn_protocols:
            ctx.set_alpn_select_callback(_alpn_selector(options.alpn_protocols))
        return ctx

    ctx = context(options.key, options.cert)
    if options.sni_contexts:
        by_name = {
            _sni_name(name): context(*_sni_identity(name, identity))
            for name, identity in options.sni_contexts.items()
        }
        ctx.set_tlsext_servername_callback(_sni_selector(by_name))
    config = TLSConfig(
        ctx,
        server_side=True,
        reject_unauthorized=options.reject_unauthorized,
        request_cert=options.request_cert,
        alpn_protocols=tuple(options.alpn_protocols or ()),
    )
    if options.handshake_timeout is not None:
        config.handshake_timeout = options.handshake_timeout
    return config


def server_tls(
    options: TLSOptions, ssl_context: TLSConfig | ssl.SSLContext | None
) -> TLSConfig | ssl.SSLContext:
    """What a TLS server (tls.serve, https.serve) runs on: Node's options, or ``ssl_context``."""
    if ssl_context is None:
        return server_config_from(options)
    if options.builds_a_context():
        raise ValueError("give either ssl_context= or key=/cert=/ca=/sni_contexts=, not both")
    if isinstance(ssl_context, TLSConfig) and options.handshake_timeout is not None:
        # A copy: a config passed in may serve elsewhere with its own timeout.
        return dataclasses.replace(ssl_context, handshake_timeout=options.handshake_timeout)
    return ssl_context


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
    """OpenSSL's servername callback: switch to the context of the name asked for (RFC 6066 §3)."""
    exact = {name: ctx for name, ctx in contexts.items() if not name.startswith("*.")}
    wildcards = [(name, ctx) for name, ctx in contexts.items() if name.startswith("*.")]

    def select(conn: SSL.Connection) -> None:
        asked = conn.get_servername()
        if not asked:
            return  # no SNI (an IP address, an old client): the default certificate
        host = asked.decode("ascii", "replace").rstrip(".").lower()
        ctx = exact.get(host)
        if ctx is None:
            ctx = next((c for pattern, c in wildcards if dns_match(pattern, host)), None)
        if ctx is not None:
            conn.set_context(ctx)

    return select


# -- clients ------------------------------------------------------------------------
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
    return client_config_from(TLSOptions(
        ca=ca, cert=cert, key=key, reject_unauthorized=reject_unauthorized,
        alpn_protocols=alpn_protocols,
    ))  # fmt: skip


def client_config_from(options: TLSOptions) -> TLSConfig:
    """:func:`client_config` from a :class:`TLSOptions`."""
    ctx = _new_context(SSL.TLS_CLIENT_METHOD)
    _trust(ctx, options.ca)
    ctx.set_verify(SSL.VERIFY_PEER, _verify_callback(options.reject_unauthorized))
    identity = options.client_identity()
    if identity is not None:
        _use_identity(ctx, *identity)
    if options.alpn_protocols:
        ctx.set_alpn_protos([p.encode("ascii") for p in options.alpn_protocols])
    return TLSConfig(
        ctx,
        server_side=False,
        reject_unauthorized=options.reject_unauthorized,
        alpn_protocols=tuple(options.alpn_protocols or ()),
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
    return client_ssl_context_from(
        TLSOptions(ca=ca, cert=cert, key=key, reject_unauthorized=reject_unauthorized)
    )


def client_ssl_context_from(options: TLSOptions) -> ssl.SSLContext:
    """:func:`client_ssl_context` from a :class:`TLSOptions`."""
    identity = options.client_identity()  # bad options fail before any work
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if options.ca is None:
        ctx.load_default_certs()
    else:
        pems = [load_pem(item).decode("ascii") for item in ca_inputs(options.ca)]
        ctx.load_verify_locations(cadata="\n".join(pems))
    if not options.reject_unauthorized:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if identity is not None:
        _load_cert_chain(ctx, *identity)
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
