"""Why a TLS handshake failed, in one set of words for every TLS layer.

Two TLS engines run under trionet: pyOpenSSL for trionet's own contexts
(:mod:`trionet._tls_stream`) and the stdlib :mod:`ssl` through
``trio.SSLStream`` for ``ssl.SSLContext`` objects (the server's accept path,
``tls.connect(ssl_context=...)``, the HTTP client). Each reports a failure its
own way: pyOpenSSL as ``SSL.Error`` carrying OpenSSL's error queue, the
stdlib as ``ssl.SSLError`` wrapped in ``trio.BrokenResourceError``, a broken
transport as ``OSError`` or ``BrokenResourceError``. :func:`handshake_failure`
turns any of them into a :class:`HandshakeFailure`: OpenSSL's own reason
(``"tlsv1 alert unknown ca"``, both engines share OpenSSL's reason strings,
ERR_reason_error_string(3), https://docs.openssl.org/3.0/man3/ERR_error_string/)
and whether the connection was lost rather than refused. Callers decide what
to do with it: the server logs it, a client raises :class:`~trionet.TLSError`
(or ``ConnectError`` when the connection was lost) with :meth:`HandshakeFailure.message`.

Pure: no I/O, no logging. Rejected: one mapper per caller (four of them,
before, each with its own words for the same alert), and a ``TLSError``
subclass per reason (callers only ever needed the words and the one flag).
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass

import trio
from OpenSSL import SSL

from ._errors import TLSError

__all__ = [
    "HANDSHAKE_FAILED",
    "PEER_CLOSED",
    "HandshakeFailure",
    "handshake_failure",
    "openssl_words",
]

#: How every handshake error message starts (with the peer named: "TLS handshake with X failed").
HANDSHAKE_FAILED = "TLS handshake failed"
#: What a certificate refused by the verify step is prefixed with, as OpenSSL's own
#: ``SSL_R_CERTIFICATE_VERIFY_FAILED`` reason and Python's ``ssl`` module say it.
CERTIFICATE_VERIFY_FAILED = "certificate verify failed"
#: The peer closed TCP in the middle of the handshake (the stdlib's SSLEOFError,
#: "EOF occurred in violation of protocol"; Node: "Client network socket
#: disconnected before secure TLS connection was established", ECONNRESET).
PEER_CLOSED = "the peer closed the connection"
#: The stdlib's ``str(SSLError)``: ``"[SSL: CODE] words (_ssl.c:1000)"``.
_STDLIB_MESSAGE = re.compile(r"^\[[^\]]*\] (?P<words>.+?)(?: \(_ssl\.c:\d+\))?$")


@dataclass(frozen=True, slots=True)
class HandshakeFailure:
    """One failed handshake: why, in words, and whether the transport was lost."""

    #: OpenSSL's reason (``"tlsv1 alert unknown ca"``), or the verify step's
    #: (``"certificate verify failed: ..."``), or what the transport did.
    reason: str
    #: True when the connection broke or closed before TLS said anything:
    #: a connection problem (the HTTP client's ``ConnectError``), not a refusal.
    connection_lost: bool = False

    def message(self, peer: str | None = None) -> str:
        """The error message: ``"TLS handshake [with peer] failed: reason"``."""
        where = f"TLS handshake with {peer} failed" if peer else HANDSHAKE_FAILED
        return f"{where}: {self.reason}"


def handshake_failure(
    cause: BaseException | str, *, verify_reason: str | None = None
) -> HandshakeFailure:
    """What ended a handshake, from the exception it raised.

    Args:
      cause: the exception (``SSL.Error``, ``ssl.SSLError``, a
        ``trio.BrokenResourceError`` wrapping either, ``OSError``, a
        :class:`TLSError` raised by a TLS stream), or, for an event the
        stream saw itself, its words (:data:`PEER_CLOSED`): those count as
        a lost connection.
      verify_reason: what the verify callback recorded about the peer's
        certificate; it explains the failure better than the alert that
        followed it, so it wins.
    """
    if verify_reason is not None:
        return HandshakeFailure(f"{CERTIFICATE_VERIFY_FAILED}: {verify_reason}")
    if isinstance(cause, str):
        return HandshakeFailure(cause, connection_lost=True)
    if isinstance(cause, trio.BrokenResourceError) and cause.__cause__ is not None:
        cause = cause.__cause__  # trio.SSLStream wraps the ssl error
    if isinstance(cause, ssl.SSLCertVerificationError):
        why = cause.verify_message or cause.reason or str(cause)
        return HandshakeFailure(f"{CERTIFICATE_VERIFY_FAILED}: {why}")
    if isinstance(cause, ssl.SSLEOFError):
        return HandshakeFailure(PEER_CLOSED, connection_lost=True)
    if isinstance(cause, ssl.SSLError):
        return HandshakeFailure(_stdlib_words(cause))
    if isinstance(cause, SSL.Error):
        return HandshakeFailure(
            openssl_words(cause), connection_lost=isinstance(cause, SSL.SysCallError)
        )
    if isinstance(cause, TLSError):
        return HandshakeFailure(str(cause).removeprefix(f"{HANDSHAKE_FAILED}: "))
    return HandshakeFailure(f"the connection broke ({cause})", connection_lost=True)


def openssl_words(exc: SSL.Error) -> str:
    """The words in pyOpenSSL's copy of OpenSSL's error queue (``tlsv1 alert unknown ca``)."""
    if isinstance(exc, SSL.SysCallError):
        return "the connection broke"
    parts: list[str] = []
    for entry in exc.args[0] if exc.args and isinstance(exc.args[0], list) else []:
        # pyOpenSSL queues (library, function, reason) per OpenSSL error.
        if isinstance(entry, tuple) and entry and entry[-1]:
            parts.append(str(entry[-1]))
    return "; ".join(parts) or str(exc) or type(exc).__name__


def _stdlib_words(exc: ssl.SSLError) -> str:
    """The same words from the stdlib: its message without the code and the C source line."""
    match = _STDLIB_MESSAGE.match(str(exc))
    if match is not None:
        return match["words"]
    reason: str | None = getattr(exc, "reason", None)
    return reason or str(exc) or type(exc).__name__
