"""An accepted connection becomes its :class:`trionet.net.Socket`: the one place that happens.

Every accepted connection becomes one Socket in :func:`open_accepted`: a
PROXY protocol header (which names the real client, from a trusted proxy)
is read first, TLS is handshaken next, and the peer's address that
``accept()`` returned (or the header named) is set on the Socket there, so
nobody asks the kernel again, and a reset cannot make it forget. Handlers
get that Socket: the protocol drivers (HTTP, WebSocket) hold it for the
connection's life, and the caller's ``make_socket`` picks the class
(``tls.TLSSocket`` for TLS servers) and ``allow_half_open``. Rejected: each
protocol building its own Socket from a stream (what it was): three places to
add a pre-step, and the HTTP server avoided building one at all while the
Socket looked its addresses up eagerly.
"""

from __future__ import annotations

import socket as _stdlib_socket
import ssl
from collections.abc import Callable
from typing import Protocol

import trio

from ._errors import TLSError
from ._forwarded import TrustedProxies
from ._proxy_protocol import PROXY_HEADER_TIMEOUT, ProxyHeader, ProxyHeaderError, v2_length
from ._proxy_protocol import parse as parse_proxy_header
from ._stream import Address, Socket
from ._tls_failure import handshake_failure

__all__ = [
    "PROXY_PEEK_SIZE",
    "TLS_HANDSHAKE_TIMEOUT",
    "ServerTLS",
    "SocketFactory",
    "TLSContext",
    "TLSHandshakeFailed",
    "describe_peer",
    "open_accepted",
    "read_proxy_header",
    "tls_handshake",
]

#: Makes the Socket for an accepted stream (TLS already done): ``net.Socket``
#: with the server's ``allow_half_open``, ``tls.TLSSocket`` for TLS streams.
SocketFactory = Callable[[trio.abc.Stream], Socket]

#: Node's tls.Server ``handshakeTimeout`` is 120 s; a stalled handshake holds a
#: socket and a task, so we cut it shorter.
TLS_HANDSHAKE_TIMEOUT = 30.0


class ServerTLS(Protocol):
    """A TLS layer other than the stdlib's (trionet.tls's pyOpenSSL one).

    ``wrap_server_stream`` runs the server side of the handshake over an
    accepted stream and returns the TLS stream; it raises ``TLSError`` when
    the handshake fails. ``handshake_timeout`` bounds it.
    """

    handshake_timeout: float

    async def wrap_server_stream(self, stream: trio.abc.Stream) -> trio.abc.Stream: ...


#: What every ``serve(ssl_context=...)`` accepts: a stdlib context (served
#: through ``trio.SSLStream``) or a :class:`ServerTLS` such as ``trionet.tls.TLSConfig``.
TLSContext = ssl.SSLContext | ServerTLS


async def open_accepted(
    stream: trio.SocketStream,
    peer: Address,
    make_socket: SocketFactory,
    ssl_context: TLSContext | None,
    proxy_protocol: TrustedProxies | None = None,
) -> Socket:
    """Make the Socket for an accepted connection: the one place that happens.

    With ``proxy_protocol``, the connection must start with a PROXY protocol
    header (v1 or v2) from a peer that list trusts; it is read first, before
    TLS, and the Socket's ``remote_address`` becomes the client it names
    (a ``LOCAL`` or ``UNKNOWN`` header, a proxy's health check, keeps the
    proxy's). Then the TLS handshake (with ``ssl_context``) runs; the Socket
    gets ``peer``, the address ``accept()`` returned, so it never asks the kernel.

    Raises:
      ProxyHeaderError: no valid header in time, or one from an untrusted
        peer (logged at INFO by the caller, the connection closed).
      TLSHandshakeFailed: the TLS handshake failed or stalled (logged by the caller).
    """
    if proxy_protocol is not None:
        if not proxy_protocol.trusts(peer):
            # Section 5 of the spec: accept the header "only from a number of known sources".
            raise ProxyHeaderError(f"PROXY protocol from an untrusted peer ({proxy_protocol!r})")
        header = await read_proxy_header(stream.socket, PROXY_HEADER_TIMEOUT)
        if header.source is not None:
            peer = header.source
    wrapped = stream if ssl_context is None else await tls_handshake(stream, ssl_context)
    sock = make_socket(wrapped)
    sock.remote_address = peer
    return sock


async def _read_exactly(sock: trio.socket.SocketType, size: int) -> bytes:
    """``size`` bytes from ``sock`` (which the caller knows are header bytes)."""
    parts = []
    while size > 0:
        chunk = await sock.recv(size)
        if not chunk:
            raise ProxyHeaderError("connection closed inside the PROXY protocol header")
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


#: How much one peek at a PROXY header asks for: the spec's bound on what
#: arrives at once (section 2: "576 - 40 = 536 bytes").
PROXY_PEEK_SIZE = 536


async def read_proxy_header(sock: trio.socket.SocketType, timeout: float) -> ProxyHeader:
    """Read the PROXY protocol header off ``sock``, and not one byte more.

    Each pass peeks (``MSG_PEEK``) at what has arrived; a complete header is
    then read for exactly its length, so what follows it stays in the kernel
    for the Socket and the protocol, which therefore need no way to be handed
    bytes read ahead. An incomplete one is all header bytes
    (:func:`trionet._proxy_protocol.parse`), so it is consumed and the next
    peek waits for more. Rejected: reading ahead and giving the rest to the
    Socket (a prefix buffer checked on every receive, the hot path, or a
    wrapper stream that would lose the Socket's direct descriptor I/O).

    Raises:
      ProxyHeaderError: malformed, cut short by the peer, or not complete within ``timeout``.
    """
    seen = b""
    try:
        with trio.fail_after(timeout):
            while True:
                peeked = await sock.recv(PROXY_PEEK_SIZE, _stdlib_socket.MSG_PEEK)
                if not peeked:
                    raise ProxyHeaderError("connection closed inside the PROXY protocol header")
                header = parse_proxy_header(seen + peeked)
                if header is not None:
                    await _read_exactly(sock, header.length - len(seen))
                    return header
                seen += await sock.recv(len(peeked))
                length = v2_length(seen)
                if length is not None:  # a v2 header: the rest is known to be header
                    rest = await _read_exactly(sock, length - len(seen))
                    header = parse_proxy_header(seen + rest)
                    assert header is not None  # all of it is there
                    return header
    except trio.TooSlowError:
        raise ProxyHeaderError(f"no complete PROXY protocol header within {timeout}s") from None
    except OSError as exc:
        raise ProxyHeaderError(f"reading the PROXY protocol header failed: {exc}") from None


class TLSHandshakeFailed(Exception):
    """Internal: a server-side handshake failed or stalled (logged, never raised to users)."""


async def tls_handshake(stream: trio.abc.Stream, context: TLSContext) -> trio.abc.Stream:
    """Wrap an accepted stream in TLS and finish the handshake within the timeout.

    Either engine's failure is told in the same words (:func:`handshake_failure`).
    """
    if isinstance(context, ssl.SSLContext):
        timeout = TLS_HANDSHAKE_TIMEOUT
    else:
        timeout = context.handshake_timeout
    try:
        with trio.fail_after(timeout):
            if not isinstance(context, ssl.SSLContext):
                return await context.wrap_server_stream(stream)
            tls = trio.SSLStream(stream, context, server_side=True, https_compatible=True)
            await tls.do_handshake()
            return tls
    except trio.TooSlowError:
        raise TLSHandshakeFailed(f"no handshake within {timeout}s") from None
    except (TLSError, trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
        raise TLSHandshakeFailed(handshake_failure(exc).reason) from None


def describe_peer(peer: Address) -> str:
    """The peer's address for a log line (an unnamed Unix client: "a Unix peer")."""
    return repr(peer) if peer else "a Unix peer"
