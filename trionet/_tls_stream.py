"""TLSStream: a Trio stream speaking TLS through pyOpenSSL over memory BIOs.

Trio's :class:`trio.SSLStream` drives the stdlib :class:`ssl.SSLObject`; this
is the same idea over :class:`OpenSSL.SSL.Connection`, whose verify callback
lets a handshake go on with an unverified peer and say why it is unverified
(Node's ``authorized`` / ``authorizationError``). OpenSSL never touches the
socket: it reads ciphertext from an incoming memory BIO that we fill from the
transport, and writes ciphertext to an outgoing one that we drain to it.

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
from typing import Any

import trio
from cryptography import x509
from OpenSSL import SSL

from ._errors import TLSError
from ._tls_context import (
    NO_PEER_CERTIFICATE,
    PeerVerdict,
    TLSConfig,
    hostname_mismatch,
    peer_certificate_dict,
)

__all__ = ["TLSStream", "TLSStreamBroken"]

#: How much ciphertext to move per transport call (a few TLS records).
BUFSIZE = 65536
#: Plaintext handed to OpenSSL per write, so the outgoing BIO stays bounded.
WRITE_CHUNK = 16384
#: How long aclose() spends sending close_notify before closing TCP anyway.
CLOSE_NOTIFY_TIMEOUT = 1.0


class TLSStreamBroken(TLSError, trio.BrokenResourceError):
    """The TLS session broke after the handshake (an alert, bad data).

    Both a :class:`trionet.TLSError` and a :class:`trio.BrokenResourceError`,
    so Trio code and trionet code each catch it their own way.
    """


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
        self._conn = config.new_connection()
        self._conn.set_app_data(self)
        if server_hostname and not _is_ip(server_hostname):
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
            raise TLSError(self._failure(f"the connection broke ({exc})")) from None
        self._handshake_done = True
        self._judge_peer()
        if self.authorization_error is not None and self._must_reject():
            await trio.aclose_forcefully(self.transport_stream)
            raise TLSError(f"TLS handshake failed: {self.authorization_error}")

    async def _handshake_rounds(self) -> None:
        """Feed OpenSSL the peer's flights and send ours until the handshake is done."""
        while True:
            try:
                self._conn.do_handshake()
                return
            except SSL.WantReadError:
                await self._flush()
                if not await self._feed():
                    raise TLSError(self._failure("the peer closed the connection")) from None
            except SSL.Error as exc:
                # Send the alert OpenSSL queued (e.g. "unknown ca") so the peer knows why.
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self._flush()
                raise TLSError(self._failure(_openssl_reason(exc))) from None

    def _must_reject(self) -> bool:
        if self.config.server_side:
            return self.config.request_cert and self.config.reject_unauthorized
        return self.config.reject_unauthorized

    def _judge_peer(self) -> None:
        """Fill in authorized, authorization_error, peer_certificate and alpn_protocol."""
        cert = self._conn.get_peer_certificate(as_cryptography=True)
        alpn = self._conn.get_alpn_proto_negotiated()
        self.alpn_protocol = alpn.decode("ascii") if alpn else None
        if cert is not None:
            self.peer_certificate = peer_certificate_dict(cert)
        if self.config.server_side and not self.config.request_cert:
            # Node: a server that did not ask has no authorized client.
            return
        if cert is None:
            self.verdict.refuse(NO_PEER_CERTIFICATE)
        elif self.verdict.reason is None and self.server_hostname:
            mismatch = hostname_mismatch(_as_x509(cert), self.server_hostname)
            if mismatch is not None:
                self.verdict.refuse(mismatch)
        self.authorization_error = self.verdict.reason
        self.authorized = self.authorization_error is None

    def _failure(self, cause: str) -> str:
        """Why the handshake failed, preferring what the verify callback saw."""
        if self.verdict.reason is not None:
            return f"TLS handshake failed: certificate verify failed: {self.verdict.reason}"
        return f"TLS handshake failed: {cause}"

    # -- moving ciphertext -----------------------------------------------------
    async def _flush(self) -> None:
        """Send everything OpenSSL has written to the outgoing BIO, in order.

        Nothing pending and nobody sending costs no await (the common case
        after a read). Bytes leave the BIO only under the send lock, so two
        tasks never put ciphertext on the wire out of order.
        """
        if self._send_lock.locked():
            async with self._send_lock:
                await self._drain()
            return
        try:
            data = self._conn.bio_read(BUFSIZE)
        except SSL.WantReadError:
            return
        self._send_lock.acquire_nowait()  # free, checked above: no task ran since
        try:
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
            raise TLSStreamBroken(f"TLS send failed: {_openssl_reason(exc)}") from None

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
                raise TLSStreamBroken(f"TLS receive failed: {_openssl_reason(exc)}") from None
            break
        await self._flush()
        if not waited:
            await trio.lowlevel.checkpoint()  # Trio's contract: every call is a checkpoint
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


def _as_x509(cert: Any) -> x509.Certificate:
    assert isinstance(cert, x509.Certificate)
    return cert


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _openssl_reason(exc: SSL.Error) -> str:
    """The words in OpenSSL's error queue (``tlsv1 alert unknown ca``, ...)."""
    if isinstance(exc, SSL.SysCallError):
        return "the connection broke"
    parts: list[str] = []
    for entry in exc.args[0] if exc.args and isinstance(exc.args[0], list) else []:
        if isinstance(entry, tuple) and entry and entry[-1]:
            parts.append(str(entry[-1]))
    return "; ".join(parts) or str(exc) or type(exc).__name__
