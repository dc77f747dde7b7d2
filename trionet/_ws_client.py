"""The client side of trionet.ws: the opening handshake of :func:`trionet.ws.connect`.

The URL goes through :func:`trionet._url.parse_url` with the WebSocket
schemes, as every client's does: the host in its IDNA form for DNS, SNI, the
certificate check and ``Host``; IPv6 brackets; the default ports of RFC 6455
§3; user information as ``Authorization: Basic`` (as Node's ws sends it); a
fragment refused (RFC 6455 §3, Node's ws throws too). The connection is
opened here, TCP or, for wss://, TLS through :func:`trionet.tls.connect` (Node's
options and failure reasons, and the socket's ``authorized``). The request
and its answer go through the HTTP client's upgrade path
(:func:`trionet.http._client_upgrade.request_switch`): h11 writes the head and
reads the answer, a refusal's body is read there, bounded. This module adds
what is WebSocket's (RFC 6455 §4.1): the offer (key, version, subprotocols,
extensions) and the check of the 101, with wsproto's own parts: the accept
token (:func:`wsproto.utilities.generate_accept_token`) and the extension
negotiation (:func:`wsproto.handshake.client_extensions_handshake`, which
finalizes permessage-deflate's parameters). ``connect`` itself lives in
:mod:`trionet.ws`.

Rejected: wsproto's ``WSConnection`` for the client handshake, as before.
It writes the request head and reads the response head with an h11 of its
own, so the client had a second head writer, head reader and refusal
reader; and wsproto takes a handshake only as bytes, so using it beside the
HTTP client would mean writing each head twice and parsing it twice. Its
check of the 101 is the handful of lines in :func:`check_switch`, messages
kept; the cryptographic and negotiation parts stay wsproto's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from wsproto.events import AcceptConnection
from wsproto.extensions import Extension
from wsproto.handshake import client_extensions_handshake
from wsproto.utilities import RemoteProtocolError, generate_accept_token, generate_nonce

from . import net, tls
from ._errors import ProtocolError
from ._stream import Socket
from ._url import WS_SCHEMES, Target
from ._ws_connection import WebSocket
from ._ws_protocol import WEBSOCKET_VERSION, BoundedPerMessageDeflate, FrameGuard, new_connection
from .http._client_conn import HTTPConnection, Origin
from .http._client_upgrade import request_switch, upgrade_request

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "HandshakeError",
    "check_switch",
    "client_handshake",
    "offer_headers",
    "open_socket",
]

logger = logging.getLogger("trionet.ws.client")

#: How long the client waits for the server's handshake response
#: (trio-websocket's CONN_TIMEOUT is 60 s).
HANDSHAKE_TIMEOUT = 30.0

#: ``connect(headers=...)``: a mapping or (name, value) pairs.
ExtraHeaders = Mapping[str, str] | Iterable[tuple[str, str]] | None


class HandshakeError(ProtocolError):
    """The server refused the opening handshake or answered it wrongly.

    ``status`` is the HTTP status of a refusal (None when the server answered
    101 but broke the handshake, e.g. a wrong Sec-WebSocket-Accept), with its
    ``headers`` (names lower-case) and ``body`` (the first 64 KiB).
    """

    def __init__(
        self,
        message: str,
        status: int | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = list(headers)
        self.body = body


async def open_socket(
    target: Target, secure: Callable[..., Awaitable[tls.TLSSocket]], timeout: float
) -> Socket:
    """Connect TCP, and TLS for wss:// (``secure``: :func:`trionet.tls.connect` with options)."""
    if target.secure:
        return await secure(target.port, target.host, timeout=timeout)
    return await net.connect(target.port, target.host, timeout=timeout)


def offer_headers(
    key: bytes, subprotocols: Sequence[str], extensions: Sequence[Extension], extra: ExtraHeaders
) -> list[tuple[bytes, bytes]]:
    """The headers of the opening handshake (RFC 6455 §4.1), then the caller's ``extra``.

    ``Host`` (and ``Authorization`` from the URL) are the HTTP client's to add.
    """
    headers = [
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Key", key),
        (b"Sec-WebSocket-Version", WEBSOCKET_VERSION.encode()),
    ]
    if subprotocols:
        headers.append((b"Sec-WebSocket-Protocol", ", ".join(subprotocols).encode("ascii")))
    offers = []
    for extension in extensions:
        offer = extension.offer()
        if isinstance(offer, str):
            offers.append(f"{extension.name}; {offer}" if offer else extension.name)
        elif offer:
            offers.append(extension.name)
    if offers:
        headers.append((b"Sec-WebSocket-Extensions", ", ".join(offers).encode("ascii")))
    pairs = extra.items() if isinstance(extra, Mapping) else extra or ()
    headers.extend((name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs)
    return headers


def check_switch(
    headers: Iterable[tuple[bytes, bytes]],
    key: bytes,
    subprotocols: Sequence[str],
    extensions: Sequence[Extension],
) -> AcceptConnection:
    """Check a 101's headers against the offer (RFC 6455 §4.1, the client's checks).

    Returns wsproto's event for it: the agreed subprotocol and extensions (finalized),
    and the other headers (lower-case names) as ``extra_headers``.

    Raises:
      HandshakeError: no ``Upgrade: websocket`` or ``Connection: Upgrade``, a
        wrong ``Sec-WebSocket-Accept``, a subprotocol or an extension that was
        not offered, or extension parameters out of range.
    """
    connection: list[bytes] = []
    accept = upgrade = None
    subprotocol = None
    accepted: list[str] = []
    others: list[tuple[bytes, bytes]] = []
    for raw_name, value in headers:
        name = raw_name.lower()
        if name == b"connection":
            connection.extend(token.strip().lower() for token in value.split(b","))
        elif name == b"upgrade":
            upgrade = value
        elif name == b"sec-websocket-accept":
            accept = value
        elif name == b"sec-websocket-protocol":
            subprotocol = value.decode("latin-1")
        elif name == b"sec-websocket-extensions":
            accepted.extend(part.strip() for part in value.decode("latin-1").split(","))
        else:
            others.append((name, value))
    if b"upgrade" not in connection:
        raise HandshakeError("bad handshake response: Missing header, 'Connection: Upgrade'")
    if upgrade is None or upgrade.lower() != b"websocket":
        raise HandshakeError("bad handshake response: Missing header, 'Upgrade: websocket'")
    if accept != generate_accept_token(key):
        raise HandshakeError("bad handshake response: Bad accept token")
    if subprotocol is not None and subprotocol not in subprotocols:
        raise HandshakeError(f"bad handshake response: unrecognized subprotocol {subprotocol}")
    try:
        agreed = client_extensions_handshake([a for a in accepted if a], extensions)
    except (RemoteProtocolError, ValueError) as exc:  # ValueError: bad deflate parameters
        raise HandshakeError(f"bad handshake response: {exc}") from None
    return AcceptConnection(subprotocol=subprotocol, extensions=agreed, extra_headers=others)


async def client_handshake(
    sock: Socket,
    target: Target,
    url: str,
    *,
    subprotocols: Sequence[str],
    headers: ExtraHeaders,
    max_message_size: int,
    compression: bool,
    close_timeout: float,
) -> WebSocket:
    """Ask ``sock``'s server to switch to WebSocket; the connection once it did.

    Raises:
      HandshakeError: the server refused (``status``, ``headers``, ``body``)
        or answered wrongly.
      ConnectionLost: the server closed or reset the connection without answering.
      ValueError: a header cannot be sent.
    """
    key = generate_nonce()
    offered: list[Extension] = [BoundedPerMessageDeflate(max_message_size)] if compression else []
    request = upgrade_request(
        url, offer_headers(key, subprotocols, offered, headers), schemes=WS_SCHEMES
    )
    conn = HTTPConnection(sock, Origin(target.scheme, target.host, target.port, None, None))
    try:
        res, rest = await request_switch(conn, request)
    except ProtocolError as exc:
        raise HandshakeError(f"bad handshake response: {exc}") from None
    if res.status != 101:
        raise HandshakeError(
            f"the server refused the WebSocket handshake: {res.status}",
            res.status,
            [(name.lower(), value) for name, value in res.raw_headers],
            res.body,
        )
    event = check_switch(res.raw_headers, key, subprotocols, offered)
    guard = FrameGuard(max_message_size)
    connection = new_connection(True, [*event.extensions, guard])
    return WebSocket(
        sock,
        connection,
        guard=guard,
        client=True,
        path=target.path.decode("ascii"),
        request=event,
        subprotocol=event.subprotocol,
        extensions=event.extensions,
        close_timeout=close_timeout,
        pending=rest,
    )
