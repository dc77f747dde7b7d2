"""trionet.tls: TLS servers and clients, as Node's ``tls`` module.

    async def handler(sock: trionet.tls.TLSSocket) -> None:
        if not sock.authorized:
            await sock.send(f"who are you? {sock.authorization_error}\\n")
        await trionet.net.pipe(sock, sock)

    server = await nursery.start(functools.partial(
        trionet.tls.serve, handler, 8000,
        key="server.key", cert="server.pem", ca="ca.pem", request_cert=True))
    sock = await trionet.tls.connect(8000, "localhost", ca="ca.pem")

``key``, ``cert`` and ``ca`` take PEM bytes or file paths (``ca`` also a list).
Peer certificates are judged as Node does: with ``reject_unauthorized=True``
(the default) a peer that fails verification fails the handshake with a
:class:`trionet.TLSError` saying why; with ``reject_unauthorized=False`` the
connection goes on and :attr:`TLSSocket.authorized` is False, with the reason
in :attr:`TLSSocket.authorization_error`. A client also checks the server's
name (``server_name``, else ``host``) as Node's ``checkServerIdentity``; a
mismatch counts as unverified.

Node's rules need a TLS library that can ask for a certificate without
enforcing it and say why one failed; the stdlib :mod:`ssl` can do neither, so
the handshake runs in pyOpenSSL (see :mod:`trionet._tls_stream`), whose verify
callback records OpenSSL's verdict on each certificate. The reasons are
OpenSSL's, in words, with Node's code: ``"unable to get local issuer
certificate (unknown CA) (UNABLE_TO_GET_ISSUER_CERT_LOCALLY)"``,
``"certificate has expired (CERT_HAS_EXPIRED)"``, ``"hostname mismatch: ..."``.
A failed handshake reads the same whichever engine ran it (pyOpenSSL or a
stdlib context): ``"TLS handshake failed: certificate verify failed: ..."`` on
the refusing side, OpenSSL's alert (``"tlsv1 alert unknown ca"``) in the
refused server's log (see :mod:`trionet._tls_failure`).

``ssl_context=`` takes a ready :class:`TLSConfig` (from :func:`server_config` /
:func:`client_config`) or a standard :class:`ssl.SSLContext`. With the latter
the stdlib verifies; when its verification is off (``CERT_NONE``, as
``https.ssl_context(reject_unauthorized=False)`` makes), the peer's certificate
is judged after the handshake by ``cryptography``'s path validation against
the context's CAs, so ``authorized`` and ``authorization_error`` still mean
what they mean in Node.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio
from cryptography import x509

from ._forwarded import TrustedProxies
from ._listen import open_listener
from ._server import Server, serve_listeners
from ._stream import Socket, handshake
from ._tls_context import (
    CAInput,
    PemInput,
    SNIContexts,
    TLSConfig,
    TLSOptions,
    client_config,
    client_config_from,
    client_ssl_context,
    server_config,
    server_tls,
)
from ._tls_stream import TLSStream, TLSStreamBroken, wrap_client_stream
from ._tls_verify import NO_PEER_CERTIFICATE, explain_chain, peer_certificate_dict
from .net import connect as tcp_connect

__all__ = [
    "CAInput",
    "PemInput",
    "SNIContexts",
    "Server",
    "TLSConfig",
    "TLSSocket",
    "TLSStream",
    "TLSStreamBroken",
    "client_config",
    "client_ssl_context",
    "connect",
    "serve",
    "server_config",
]

#: The handler ``serve`` runs, in its own task, for each secured connection.
Handler = Callable[["TLSSocket"], Awaitable[None]]


class TLSSocket(Socket):
    """A :class:`trionet.net.Socket` over TLS, with Node's ``TLSSocket`` properties.

    ``authorized``: the peer's certificate was verified. ``authorization_error``:
    why not, in words (None when authorized). ``peer_certificate``: the peer's
    certificate as Node's ``getPeerCertificate()`` (``subject``, ``issuer``,
    ``subjectaltname``, ``valid_from``, ``valid_to``, ``fingerprint256``, ...),
    or None. ``alpn_protocol``: what ALPN settled on, or None.
    """

    authorized: bool
    authorization_error: str | None
    peer_certificate: dict[str, Any] | None
    alpn_protocol: str | None

    def __init__(self, stream: TLSStream | trio.SSLStream[Any], **kwargs: Any) -> None:
        super().__init__(stream, **kwargs)
        #: The TLS stream under the socket (:class:`TLSStream` or ``trio.SSLStream``).
        self.tls_stream = stream
        if isinstance(stream, TLSStream):
            self.authorized = stream.authorized
            self.authorization_error = stream.authorization_error
            self.peer_certificate = stream.peer_certificate
            self.alpn_protocol = stream.alpn_protocol
        else:
            self._judge_stdlib(stream)

    def _judge_stdlib(self, stream: trio.SSLStream[Any]) -> None:
        """With a stdlib context, only a verified certificate can be present."""
        der = stream.getpeercert(binary_form=True)
        cert = x509.load_der_x509_certificate(der) if der else None
        self.peer_certificate = peer_certificate_dict(cert) if cert is not None else None
        if cert is None:
            reason: str | None = NO_PEER_CERTIFICATE
        elif stream.context.verify_mode != ssl.CERT_NONE:
            reason = None  # the stdlib verified it, or the handshake would have failed
        else:
            # Verification was off (reject_unauthorized=False): judge it ourselves.
            anchors = [
                x509.load_der_x509_certificate(der)
                for der in stream.context.get_ca_certs(binary_form=True)
            ]
            hostname = None if stream.server_side else stream.server_hostname
            reason = explain_chain([cert], anchors, hostname)
        self.authorized = reason is None
        self.authorization_error = reason
        self.alpn_protocol = stream.selected_alpn_protocol()

    def __repr__(self) -> str:
        state = "authorized" if self.authorized else "unauthorized"
        return f"<trionet.tls.TLSSocket {self.local_address!r} -> {self.remote_address!r} {state}>"

    @property
    def protocol(self) -> str | None:
        """``"TLSv1.3"`` or ``"TLSv1.2"`` (Node's ``getProtocol()``)."""
        if isinstance(self.tls_stream, TLSStream):
            return self.tls_stream.protocol
        version: str | None = self.tls_stream.version()
        return version

    @property
    def servername(self) -> str | None:
        """The SNI name: what the client asked for (Node's ``tlsSocket.servername``)."""
        if isinstance(self.tls_stream, TLSStream):
            return self.tls_stream.servername
        name: str | None = self.tls_stream.server_hostname
        return name

    @property
    def cipher(self) -> str | None:
        """The negotiated cipher suite's OpenSSL name (Node's ``getCipher().name``)."""
        if isinstance(self.tls_stream, TLSStream):
            return self.tls_stream.cipher
        info = self.tls_stream.cipher()
        return str(info[0]) if info else None

    @property
    def encrypted(self) -> bool:
        """Always True, as Node's ``tlsSocket.encrypted``."""
        return True


def socket_for(stream: trio.abc.Stream) -> Socket:
    """The right Socket for an accepted stream: a :class:`TLSSocket` over TLS.

    Protocol drivers (HTTP, WebSocket) call this so that ``req.socket.authorized``
    works over HTTPS as it does in Node.
    """
    if isinstance(stream, TLSStream | trio.SSLStream):
        return TLSSocket(stream)
    return Socket(stream)


async def serve(
    handler: Handler,
    port: int | None = None,
    *,
    key: PemInput | None = None,
    cert: PemInput | None = None,
    ca: CAInput | None = None,
    request_cert: bool = False,
    reject_unauthorized: bool = True,
    ssl_context: TLSConfig | ssl.SSLContext | None = None,
    alpn_protocols: Sequence[str] | None = None,
    sni_contexts: SNIContexts | None = None,
    host: str | None = None,
    path: str | os.PathLike[str] | None = None,
    mode: int | None = None,
    backlog: int | None = None,
    reuse_port: bool = False,
    max_connections: int | None = None,
    handshake_timeout: float | None = None,
    allow_half_open: bool = False,
    proxy_protocol: bool = False,
    forwarded_allow_ips: str | Sequence[str] | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` over TLS (Node's ``tls.createServer``).

    Start it with ``server = await nursery.start(trionet.tls.serve, handler, port, ...)``
    (``functools.partial`` for the keyword options). Each connection's
    handshake runs in its own task; one that fails is logged (with the
    reason) and closed, one that stalls is cut off after ``handshake_timeout``
    seconds (default 30; Node's ``handshakeTimeout`` is 120); the server keeps
    serving. The handler gets a :class:`TLSSocket`.

    Args:
      key, cert: the server's private key and certificate chain (PEM bytes or paths).
      ca: CAs that client certificates are checked against (default: the system's).
      request_cert: ask clients for a certificate (Node's ``requestCert``).
      reject_unauthorized: with ``request_cert``, refuse clients whose
        certificate is missing or unverified; when False they connect with
        ``authorized=False`` (Node's ``rejectUnauthorized``).
      ssl_context: a ready :class:`TLSConfig` or :class:`ssl.SSLContext`
        instead of the options above.
      alpn_protocols: protocols offered through ALPN, preferred first.
      sni_contexts: another certificate per server name the client may ask
        for, ``{"a.example.com": {"key": ..., "cert": ...}}`` (Node's
        ``server.addContext``); ``*.example.com`` covers one more label.
      path, mode: listen on a Unix socket at ``path`` instead of a port, with
        the permission bits ``mode`` (as :func:`trionet.net.serve`).
      proxy_protocol, forwarded_allow_ips: a PROXY protocol header before
        the TLS handshake, from these trusted proxies (as :func:`trionet.net.serve`).
    """
    trusted = TrustedProxies(forwarded_allow_ips) if proxy_protocol else None
    options = TLSOptions(
        key=key, cert=cert, ca=ca, request_cert=request_cert,
        reject_unauthorized=reject_unauthorized, alpn_protocols=alpn_protocols,
        sni_contexts=sni_contexts, handshake_timeout=handshake_timeout,
    )  # fmt: skip
    tls = server_tls(options, ssl_context)
    unix_path = os.fspath(path) if path is not None else None
    listener = await open_listener(port, host, unix_path, backlog, reuse_port, mode)

    def make_socket(stream: trio.abc.Stream) -> TLSSocket:
        assert isinstance(stream, (TLSStream, trio.SSLStream))
        return TLSSocket(stream, allow_half_open=allow_half_open)

    async def handle(sock: Socket) -> None:
        assert isinstance(sock, TLSSocket)
        await handler(sock)

    await serve_listeners(
        handle, [listener], make_socket=make_socket, max_connections=max_connections,
        unix_path=unix_path, ssl_context=tls, proxy_protocol=trusted, task_status=task_status,
    )


async def connect(
    port: int,
    host: str = "localhost",
    *,
    ca: CAInput | None = None,
    cert: PemInput | None = None,
    key: PemInput | None = None,
    reject_unauthorized: bool = True,
    server_name: str | None = None,
    ssl_context: TLSConfig | ssl.SSLContext | None = None,
    alpn_protocols: Sequence[str] | None = None,
    timeout: float | None = None,
    allow_half_open: bool = False,
) -> TLSSocket:
    """Connect to ``host:port`` and finish a TLS handshake (Node's ``tls.connect``).

    The server's certificate must chain to ``ca`` (default: the system's
    CAs) and name ``server_name`` (default: ``host``; also sent as SNI unless
    it is an IP address). With ``reject_unauthorized=False`` the connection
    goes on regardless and the socket's ``authorized`` says whether it would
    have passed.

    Raises:
      TLSError: the handshake failed; the message says why (unknown CA,
        hostname mismatch, expired certificate, the server refused us).
      ConnectError: the TCP connection could not be opened.
      TimeoutError: ``timeout`` seconds passed before the handshake was done.
    """
    name = server_name or host
    tls = ssl_context or client_config_from(TLSOptions(
        ca=ca, cert=cert, key=key, reject_unauthorized=reject_unauthorized,
        alpn_protocols=alpn_protocols,
    ))  # fmt: skip  (built first: bad options fail before any connection is made)
    tcp = await tcp_connect(port, host, timeout=timeout)
    async with handshake(tcp, timeout, f"TLS handshake with {host}:{port}"):
        stream = await wrap_client_stream(tcp.stream, tls, name)
    return TLSSocket(stream, allow_half_open=allow_half_open, remote_address=tcp.remote_address)
