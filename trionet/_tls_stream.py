"""TLSStream: a Trio stream speaking TLS through pyOpenSSL over memory BIOs.

Trio's :class:`trio.SSLStream` drives the stdlib :class:`ssl.SSLObject`; this
is the same idea over :class:`OpenSSL.SSL.Connection`, whose verify callback
lets a handshake go on with an unverified peer and say why it is unverified
(Node's ``authorized`` / ``authorizationError``,
https://nodejs.org/docs/latest-v20.x/api/tls.html#tlssocketauthorized).
OpenSSL never touches the socket: it reads ciphertext from an incoming memory
BIO that we fill from the transport, and writes ciphertext to an outgoing one
that we drain to it.

:class:`TLSConfig` (an OpenSSL context and Node's switches) lives here with
the stream it configures, and so does wrapping a transport in TLS, on either
side (:meth:`TLSConfig.wrap_server_stream`, :func:`wrap_client_stream`):
:mod:`trionet._tls_context` builds configs from Node's options and imports
this module, never the other way round. (Before, the config lived with the
builders and had to import the stream back to wrap one: an import circle.)
The verify callback never sees the stream either: each connection's
:class:`~trionet._tls_verify.PeerVerdict` is its OpenSSL app data, and the
callback's decision was bound when the context was built.

Rules that keep it simple:

- Only one task receives at a time and one task sends at a time (Trio's
  stream contract); a receive and a send may run concurrently.
- Ciphertext leaves in the order OpenSSL produced it: draining the outgoing
  BIO and sending it happens under one lock (:meth:`TLSStream._flush`).
- Renegotiation is disabled in the contexts (:mod:`trionet._tls_context`),
  so sending never needs to read.
- The peer closing TCP without close_notify counts as end of data after the
  handshake, as Node and ``https_compatible=True`` treat it.
"""

from __future__ import annotations

import contextlib
import operator
import ssl
from dataclasses import dataclass
from typing import Any

import trio
from cryptography import x509
from OpenSSL import SSL

from ._accepted import TLS_HANDSHAKE_TIMEOUT
from ._errors import TLSError
from ._fdio import DEFAULT_RECEIVE_SIZE
from ._tls_failure import PEER_CLOSED, HandshakeFailure, handshake_failure, openssl_words
from ._tls_verify import PeerVerdict, is_ip_address, peer_certificate_dict

__all__ = ["TLSConfig", "TLSStream", "TLSStreamBroken", "wrap_client_stream"]

#: How much ciphertext to move per transport call (a few TLS records): the
#: socket read size every driver uses.
BUFSIZE = DEFAULT_RECEIVE_SIZE
#: Plaintext handed to OpenSSL per write, so the outgoing BIO stays bounded.
WRITE_CHUNK = 16384
#: How long aclose() spends sending close_notify before closing TCP anyway.
CLOSE_NOTIFY_TIMEOUT = 1.0


class TLSStreamBroken(TLSError, trio.BrokenResourceError):
    """The TLS session broke after the handshake (an alert, bad data).

    Both a :class:`trionet.TLSError` and a :class:`trio.BrokenResourceError`,
    so Trio code and trionet code each catch it their own way.
    """


@dataclass
class TLSConfig:
    """A pyOpenSSL context plus Node's switches for judging the peer.

    Build one with :func:`trionet.tls.server_config` or
    :func:`trionet.tls.client_config`. It is also what ``serve(ssl_context=...)``
    accepts besides a stdlib context: the server calls
    :meth:`wrap_server_stream` on each accepted stream.
    """

    context: SSL.Context
    server_side: bool
    #: Node's ``rejectUnauthorized``: fail the handshake on an unverified peer.
    #: (The context's verify callback was built with the same value.)
    reject_unauthorized: bool = True
    #: Node's ``requestCert`` (server side): ask the client for a certificate.
    request_cert: bool = False
    alpn_protocols: tuple[str, ...] = ()
    #: Server side: a handshake not done within this many seconds is cut off
    #: (Node's ``handshakeTimeout``, 120 s there; shorter here, see _server).
    handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT

    @property
    def judges_peer(self) -> bool:
        """Whether ``authorized`` means anything: always for a client; for a
        server only with ``requestCert`` (Node: a server that did not ask has
        no authorized client)."""
        return self.request_cert or not self.server_side

    def new_connection(self, verdict: PeerVerdict) -> SSL.Connection:
        """A fresh OpenSSL connection over memory BIOs for one handshake.

        ``verdict`` is its app data: the context's verify callback records
        OpenSSL's verdict on the peer's certificates there.
        """
        conn = SSL.Connection(self.context, None)
        conn.set_app_data(verdict)
        if self.server_side:
            conn.set_accept_state()
        else:
            conn.set_connect_state()
        return conn

    async def wrap_server_stream(self, stream: trio.abc.Stream) -> TLSStream:
        """Run the server side of a handshake over ``stream`` (the ``serve`` hook)."""
        tls = TLSStream(stream, self)
        await tls.do_handshake()
        return tls


class TLSStream(trio.abc.HalfCloseableStream):
    """TLS over ``transport_stream``, configured by a :class:`TLSConfig`.

    Call :meth:`do_handshake` before use (``tls.connect`` and the server do).
    Afterwards :attr:`authorized`, :attr:`authorization_error`,
    :attr:`peer_certificate` and :attr:`alpn_protocol` describe the session.
    """

    def __init__(
        self,
        transport_stream: trio.abc.Stream,
        config: TLSConfig,
        *,
        server_hostname: str | None = None,
    ) -> None:
        self.transport_stream = transport_stream
        self.config = config
        self.server_hostname = server_hostname
        self.verdict = PeerVerdict()
        self._conn = config.new_connection(self.verdict)
        if server_hostname and not is_ip_address(server_hostname):
            self._conn.set_tlsext_host_name(server_hostname.encode("idna"))
        self._send_lock = trio.StrictFIFOLock()
        # Trio's stream contract: one sender and one receiver at a time.
        self._sending = False
        self._receiving = False
        self._handshake_done = False
        self._transport_eof = False
        self._eof_sent = False
        self._closed = False
        #: True when the peer's certificate was verified (Node's ``authorized``).
        self.authorized = False
        #: Why the peer is not authorized, in words, or None (``authorizationError``).
        self.authorization_error: str | None = None
        #: The peer's certificate as Node's ``getPeerCertificate()``, or None.
        self.peer_certificate: dict[str, Any] | None = None
        #: The protocol ALPN settled on (``"h2"``, ``"http/1.1"``), or None.
        self.alpn_protocol: str | None = None

    # -- handshake -------------------------------------------------------------
    async def do_handshake(self) -> None:
        """Run the handshake, then judge the peer as Node does.

        Raises:
          TLSError: the handshake failed, or the peer is not authorized and
            ``reject_unauthorized`` is True; the message says why.
        """
        try:
            await self._handshake_rounds()
            await self._flush()
        except trio.BrokenResourceError as exc:
            raise self._failure(exc) from None
        self._handshake_done = True
        self._judge_peer()
        if self.authorization_error is not None and self._must_reject():
            await trio.aclose_forcefully(self.transport_stream)
            raise TLSError(HandshakeFailure(self.authorization_error).message())

    async def _handshake_rounds(self) -> None:
        """Feed OpenSSL the peer's flights and send ours until the handshake is done."""
        while True:
            try:
                self._conn.do_handshake()
                return
            except SSL.WantReadError:
                await self._flush()
                if not await self._feed():
                    raise self._failure(PEER_CLOSED) from None
            except SSL.Error as exc:
                # Send the alert OpenSSL queued (e.g. "unknown ca") so the peer knows why.
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self._flush()
                raise self._failure(exc) from None

    def _must_reject(self) -> bool:
        return self.config.judges_peer and self.config.reject_unauthorized

    def _judge_peer(self) -> None:
        """Fill in authorized, authorization_error, peer_certificate and alpn_protocol."""
        cert = self._conn.get_peer_certificate(as_cryptography=True)
        alpn = self._conn.get_alpn_proto_negotiated()
        self.alpn_protocol = alpn.decode("ascii") if alpn else None
        if cert is not None:
            self.peer_certificate = peer_certificate_dict(cert)
        if not self.config.judges_peer:
            return
        self.authorization_error = self.verdict.conclude(_as_x509(cert), self.server_hostname)
        self.authorized = self.authorization_error is None

    def _failure(self, cause: BaseException | str) -> TLSError:
        """The handshake's error, preferring what the verify callback saw."""
        failure = handshake_failure(cause, verify_reason=self.verdict.reason)
        return TLSError(failure.message())

    # -- moving ciphertext -----------------------------------------------------
    async def _flush(self, shield: bool = False) -> None:
        """Send everything OpenSSL has written to the outgoing BIO, in order.

        Nothing pending and nobody sending costs no await (the common case
        after a read). Bytes leave the BIO only under the send lock, so two
        tasks never put ciphertext on the wire out of order. ``shield``: not
        cancelled (a receive that holds decrypted bytes must not drop them).
        """
        if self._send_lock.locked():
            with trio.CancelScope(shield=shield):
                async with self._send_lock:
                    await self._drain()
            return
        try:
            data = self._conn.bio_read(BUFSIZE)
        except SSL.WantReadError:
            return
        self._send_lock.acquire_nowait()  # free, checked above: no task ran since
        try:
            with trio.CancelScope(shield=shield):
                await self.transport_stream.send_all(data)
                await self._drain()
        finally:
            self._send_lock.release()

    async def _drain(self) -> None:
        while True:
            try:
                data = self._conn.bio_read(BUFSIZE)
            except SSL.WantReadError:
                return
            await self.transport_stream.send_all(data)

    async def _feed(self) -> bool:
        """Move one chunk of ciphertext from the transport into OpenSSL; False at EOF."""
        if self._transport_eof:
            return False
        data = await self.transport_stream.receive_some(BUFSIZE)
        if not data:
            self._transport_eof = True
            self._conn.bio_shutdown()
            return False
        self._conn.bio_write(data)
        return True

    # -- the stream interface --------------------------------------------------
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send all of ``data``."""
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this TLS stream")
        self._check_open()
        if self._eof_sent:
            raise trio.ClosedResourceError("send_eof() was called: no more sending")
        self._sending = True
        try:
            await self._send_all(memoryview(data))
        finally:
            self._sending = False

    async def _send_all(self, view: memoryview) -> None:
        if not view:
            await trio.lowlevel.checkpoint()
            return
        try:
            for start in range(0, len(view), WRITE_CHUNK):
                self._conn.sendall(view[start : start + WRITE_CHUNK].tobytes())
                await self._flush()
        except SSL.Error as exc:
            raise TLSStreamBroken(f"TLS send failed: {openssl_words(exc)}") from None

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Receive and decrypt up to ``max_bytes``; ``b""`` once the peer has ended."""
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this TLS stream")
        self._check_open()
        size = BUFSIZE if max_bytes is None else operator.index(max_bytes)
        if size < 1:
            raise ValueError(f"max_bytes must be >= 1, not {size}")
        self._receiving = True
        try:
            return await self._receive_some(size)
        finally:
            self._receiving = False

    async def _receive_some(self, size: int) -> bytes:
        # Cancelled before reading, never after: a cancelled call loses no
        # plaintext (what OpenSSL decrypted is handed out or left in it).
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            try:
                data = self._conn.recv(size)
            except SSL.WantReadError:
                if self._transport_eof:
                    data = b""
                    break
                # Post-handshake messages (TLS 1.3 tickets, key updates) may need replies.
                await self._flush()
                await self._feed()  # at EOF, the next recv() raises ZeroReturn or SysCallError
                waited = True
                continue
            except SSL.ZeroReturnError:
                data = b""  # close_notify: a clean end of data
            except SSL.SysCallError:
                data = b""  # TCP closed without close_notify: the end, as Node treats it
            except SSL.Error as exc:
                raise TLSStreamBroken(f"TLS receive failed: {openssl_words(exc)}") from None
            break
        await self._flush(shield=bool(data))
        if not waited:
            # Trio's contract: every call is a checkpoint (the cancel point came first).
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    async def send_eof(self) -> None:
        """Send close_notify: TLS 1.3 lets the peer go on sending (half-close)."""
        self._check_open()
        if self._eof_sent:
            await trio.lowlevel.checkpoint()
            return
        self._eof_sent = True
        with contextlib.suppress(SSL.Error):
            self._conn.shutdown()
        await self._flush()

    async def aclose(self) -> None:
        """Send close_notify if we can within a second, then close the transport."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        try:
            if self._handshake_done and not self._conn.get_shutdown() & SSL.SENT_SHUTDOWN:
                with trio.move_on_after(CLOSE_NOTIFY_TIMEOUT):
                    self._conn.shutdown()
                    await self._flush()
        except (SSL.Error, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await self.transport_stream.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the TLS stream was closed")

    # -- details Node's TLSSocket offers ----------------------------------------
    @property
    def protocol(self) -> str | None:
        """The negotiated version, ``"TLSv1.3"`` or ``"TLSv1.2"`` (Node's ``getProtocol()``)."""
        return self._conn.get_protocol_version_name() if self._handshake_done else None

    @property
    def cipher(self) -> str | None:
        """The negotiated cipher's OpenSSL name (Node's ``getCipher().name``)."""
        return self._conn.get_cipher_name()

    @property
    def servername(self) -> str | None:
        """The SNI name: the one the client sent (server side) or will send.

        The peer chose those bytes: a name that is not valid IDNA (raw UTF-8,
        an overlong label) comes back decoded with replacement characters
        rather than raising in the application.
        """
        name = self._conn.get_servername()
        if not name:
            return self.server_hostname
        try:
            return name.decode("idna")
        except UnicodeError:
            return name.decode("utf-8", "replace")


def _as_x509(cert: Any) -> x509.Certificate | None:
    assert cert is None or isinstance(cert, x509.Certificate)
    return cert


async def wrap_client_stream(
    transport: trio.abc.Stream, tls: TLSConfig | ssl.SSLContext, server_hostname: str
) -> TLSStream | trio.SSLStream[Any]:
    """Run the client side of a handshake over ``transport``, checking ``server_hostname``.

    A :class:`TLSConfig` runs through :class:`TLSStream`; a stdlib context
    through ``trio.SSLStream`` (``https_compatible``: a peer that closes TCP
    without close_notify has ended, as Node treats it).

    Raises:
      TLSError: the handshake failed; the message says why.
    """
    if isinstance(tls, TLSConfig):
        stream = TLSStream(transport, tls, server_hostname=server_hostname)
        await stream.do_handshake()
        return stream
    ssl_stream = trio.SSLStream(
        transport, tls, server_hostname=server_hostname, https_compatible=True
    )
    try:
        await ssl_stream.do_handshake()
    except trio.BrokenResourceError as exc:
        raise TLSError(handshake_failure(exc).message()) from None
    return ssl_stream
