"""The server side of the opening handshake, as a public step: check, then accept or reject.

:func:`server_handshake` reads nothing: the HTTP server already parsed the
upgrade request and hands over the request, the socket and the bytes read
past the head (``on_upgrade(req, sock, head)``). It answers a malformed
handshake itself (400, 405 or 426: RFC 6455 section 4.2.1, never a 101) and
otherwise returns a :class:`ServerHandshake`, which the caller answers once:

* :meth:`ServerHandshake.accept` sends the 101 with the chosen subprotocol and
  extra headers, and runs the connection for an ``async with`` block (ASGI's
  ``websocket.accept``: ``subprotocol`` and ``headers``);
* :meth:`ServerHandshake.reject` sends a complete HTTP response with any
  status, headers and body (ASGI's ``websocket.close`` before accepting, a
  403, or the ``websocket.http.response`` extension's custom denial).

:func:`trionet.ws.handler` is built on these two steps, and so can an ASGI
adapter or an app's own ``on_upgrade`` hook that decides per request (after a
database look-up, say). Alternatives rejected: a module-level
``accept(req, sock, ...)`` / ``reject(req, sock, ...)`` pair (nothing would
stop a second answer on the same socket, and each call would parse the
request again); ``accept`` returning a bare WebSocket that the caller must
remember to run and close (the helper tasks need a block to end with and the close a
rule for failures; ``async with`` gives both, as :func:`trionet.ws.connect`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import h11
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection
from wsproto.events import Request as HandshakeRequest
from wsproto.extensions import Extension
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ._stream import Socket
from ._ws_client import HandshakeError
from ._ws_connection import _SOCKET_GONE, CLOSE_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE, WebSocket
from ._ws_protocol import (
    BoundedPerMessageDeflate,
    FrameGuard,
    Rejection,
    check_handshake,
    new_connection,
)
from ._ws_running import Running, heartbeat_of
from ._ws_state import CloseCode
from .http._config import ServerConfig
from .http._headers import closing_response
from .http._request import Request

__all__ = ["HeadersInput", "ServerHandshake", "refuse", "server_handshake"]

logger = logging.getLogger("trionet.ws.handshake")

#: Extra response headers: a mapping, or pairs of str or bytes (ASGI's are bytes).
HeadersInput = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]

#: Headers the 101 response gets from the handshake itself; a caller's copy
#: would contradict them (ASGI: "must not include a header named
#: sec-websocket-protocol; use the subprotocol key instead").
HANDSHAKE_HEADERS = frozenset(
    {"upgrade", "connection", "sec-websocket-accept", "sec-websocket-protocol",
     "sec-websocket-extensions"}
)  # fmt: skip

#: A header name (RFC 9110 section 5.6.2 token) and value (section 5.5: no CR, LF or NUL).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\r\n\x00]")


async def server_handshake(req: Any, sock: Socket, head: bytes = b"") -> ServerHandshake | None:
    """Check a client's opening handshake; the handshake to answer, or None after refusing it.

    ``req``, ``sock`` and ``head`` are what an ``on_upgrade`` hook of
    :func:`trionet.http.serve` receives. A request that is no valid
    WebSocket handshake (not GET, no ``Upgrade: websocket``, version other
    than 13, a malformed key: RFC 6455 section 4.2.1) gets its answer here
    (405, 400 or 426 with ``Sec-WebSocket-Version: 13``) and the result is None.
    """
    raw_headers = list(req.raw_headers)
    rejection = check_handshake(str(req.method).upper(), raw_headers)
    if rejection is None:
        wsconn = WSConnection(ConnectionType.SERVER)
        try:
            wsconn.initiate_upgrade_connection(raw_headers, req.url)
            offer = next(e for e in wsconn.events() if isinstance(e, HandshakeRequest))
        except (RemoteProtocolError, StopIteration, h11.ProtocolError) as exc:
            rejection = Rejection(400, [], f"bad WebSocket handshake: {exc}\n".encode())
    if rejection is not None:
        await refuse(sock, rejection, req)
        return None
    return ServerHandshake(req, sock, head, wsconn, offer)


class ServerHandshake:
    """A valid opening handshake waiting for the server's answer: accept or reject, once.

    Made by :func:`server_handshake`. Answer it before the ``on_upgrade`` hook
    returns: a hook that returns without answering closes the connection
    with no response.
    """

    __slots__ = ("_head", "_socket", "_wsconn", "answered", "path", "request",
                 "subprotocols")  # fmt: skip

    def __init__(
        self, req: Any, sock: Socket, head: bytes, wsconn: WSConnection, offer: HandshakeRequest
    ) -> None:
        #: The HTTP request (``trionet.http.Request``): headers, Origin, cookies.
        self.request = req
        #: The path the client asked for, with its query string.
        self.path = str(getattr(req, "url", offer.target))
        #: The subprotocols the client offered, in its order (ASGI's ``scope["subprotocols"]``).
        self.subprotocols: list[str] = list(offer.subprotocols)
        #: True once accepted or rejected.
        self.answered = False
        self._socket = sock
        self._head = head
        self._wsconn: WSConnection | None = wsconn

    def __repr__(self) -> str:
        state = "answered" if self.answered else "waiting"
        return f"<trionet.ws.ServerHandshake {self.path!r} {state}>"

    def accept(
        self,
        *,
        subprotocol: str | None = None,
        headers: HeadersInput | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        compression: bool = False,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> Accepted:
        """Answer 101 and run the WebSocket for the ``async with`` block.

        ``subprotocol`` must be one the client offered (or None: RFC 6455
        section 4.2.2); ``headers`` go into the 101 response (not the
        handshake's own: Upgrade, Connection, Sec-WebSocket-*). The other
        options are those of :func:`trionet.ws.handler`.

        The block ends as a handler does: returning, or ending because its
        own connection closed, closes with 1000; an exception closes with
        1011 and comes out of the block; cancellation sends 1001. If the
        client left before the 101 went out, the block gets a connection
        that is already closed (1006).

        Raises:
          RuntimeError: the handshake was already answered.
          ValueError: a subprotocol the client did not offer, or a bad header.
          HandshakeError: the client's extension offer could not be answered
            (it got 400); wsproto refuses what we could not check before.
        """
        self._check_unanswered()
        if max_message_size <= 0:
            raise ValueError("max_message_size must be positive")
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise ValueError(f"the client did not offer the subprotocol {subprotocol!r}")
        extra = _header_pairs(headers, refused=HANDSHAKE_HEADERS)
        beat = heartbeat_of(ping_interval, ping_timeout)
        answer = functools.partial(
            self._answer, subprotocol, extra, max_message_size, compression, close_timeout
        )
        return Accepted(answer, beat, self._closing())

    async def _answer(
        self,
        subprotocol: str | None,
        extra: list[tuple[bytes, bytes]],
        max_message_size: int,
        compression: bool,
        close_timeout: float,
    ) -> WebSocket:
        """Send the 101 (or the 400 of a refused extension offer); the WebSocket it opened."""
        self._check_unanswered()
        offered: list[Extension] = (
            [BoundedPerMessageDeflate(max_message_size)] if compression else []
        )
        self.answered = True
        try:
            event = AcceptConnection(subprotocol=subprotocol, extensions=offered,
                                     extra_headers=extra)  # fmt: skip
            assert self._wsconn is not None  # answered once (checked above)
            response = self._wsconn.send(event)
        except (ValueError, LocalProtocolError, h11.ProtocolError) as exc:
            rejection = Rejection(400, [], f"bad extension offer: {exc}\n".encode())
            await refuse(self._socket, rejection, self.request)
            raise HandshakeError(f"could not accept the handshake: {exc}", 400) from None
        agreed = [e for e in offered if e.enabled()]
        guard = FrameGuard(max_message_size)
        head, self._head = self._head, b""
        # The handshake's wsproto connection (an h11 parser, its state and
        # deques: about 4 KiB) is done with; a connection that then sits idle
        # for hours must not hold it (see benchmarks/ws_idle_memory.py).
        self._wsconn = None
        del event, offered, extra
        try:
            await self._socket.send(response)
            gone = False
        except _SOCKET_GONE:
            gone = True
        del response
        ws = WebSocket(
            self._socket,
            new_connection(False, [*agreed, guard]),
            guard=guard,
            client=False,
            path=self.path,
            request=self.request,
            subprotocol=subprotocol,
            extensions=agreed,
            close_timeout=close_timeout,
            pending=b"" if gone else head,
        )
        if gone:
            ws._mark_closed(CloseCode.ABNORMAL_CLOSURE, "connection lost")
        if isinstance(self.request, Request):
            # ws.request lives as long as the connection: its head packed
            # (about 1 KiB less per idle connection), its properties the same.
            self.request._pack_head()
        return ws

    def _closing(self) -> trio.Event | None:
        """The event set when the trionet HTTP server that read the request stops
        (``aclose()``, trionet.run's graceful stop; not a bare ``close()``).

        None for a request of anything else (a hook may be called by other
        code): such a connection just runs until its handler ends.
        """
        config = getattr(getattr(self.request, "_exchange", None), "config", None)
        return config.going_away if isinstance(config, ServerConfig) else None

    async def reject(
        self, status: int = 403, *, headers: HeadersInput | None = None, body: bytes | str = b""
    ) -> None:
        """Refuse the handshake with a complete HTTP response, then the connection closes.

        The default, 403, is what ASGI servers send when an app closes a
        WebSocket before accepting it. A ``str`` body goes out as UTF-8
        text; a body that arrives in parts (ASGI's ``more_body``) is joined
        first: the response carries a Content-Length.

        Raises:
          RuntimeError: the handshake was already answered.
          ValueError: a status outside 200-599, or a bad header.
        """
        self._check_unanswered()
        if not 200 <= status <= 599:
            raise ValueError(f"a refusal's status is a final one, 200-599, not {status}")
        pairs = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in _header_pairs(headers)]
        data = body.encode() if isinstance(body, str) else bytes(body)
        self.answered = True
        await refuse(self._socket, Rejection(status, pairs, data), self.request)

    def _check_unanswered(self) -> None:
        if self.answered:
            raise RuntimeError("this WebSocket handshake was already answered")


class Accepted(Running):
    """What :meth:`ServerHandshake.accept` returns: answers 101 on entering, then runs.

    A class, not ``contextlib.asynccontextmanager``: it lives as long as the
    connection, and a suspended async generator with its context manager
    cost about 700 bytes per idle connection.
    """

    __slots__ = ("_answer", "_closing")

    def __init__(
        self,
        answer: Callable[[], Awaitable[WebSocket]],
        heartbeat: tuple[float, float] | None,
        closing: trio.Event | None,
    ) -> None:
        super().__init__(None, heartbeat)
        self._answer: Callable[[], Awaitable[WebSocket]] | None = answer
        #: The server's closing event: the connection then goes away (1001).
        self._closing = closing

    async def __aenter__(self) -> WebSocket:  # type: ignore[override]
        answer, self._answer = self._answer, None
        if answer is None:
            raise RuntimeError("accept() is entered once")
        ws = self.ws = await answer()
        await super().__aenter__()
        closing, self._closing = self._closing, None
        self.join_stop(closing)
        return ws


def _header_pairs(
    headers: HeadersInput | None, *, refused: frozenset[str] = frozenset()
) -> list[tuple[bytes, bytes]]:
    """Headers as byte pairs, checked before any byte goes out.

    Raises:
      ValueError: a name that is no token, a value with CR, LF or NUL (they
        would split the response: header injection), or a name in ``refused``.
    """
    items = headers.items() if isinstance(headers, Mapping) else headers or []
    pairs = []
    for name, value in items:
        raw_name = name if isinstance(name, bytes) else name.encode("latin-1")
        raw_value = value if isinstance(value, bytes) else str(value).encode("latin-1")
        text = raw_name.decode("latin-1")
        if not _TOKEN.fullmatch(text):
            raise ValueError(f"invalid response header name: {text!r}")
        if _BAD_VALUE.search(raw_value.decode("latin-1")):
            raise ValueError(f"invalid character in the value of response header {text!r}")
        if text.lower() in refused:
            raise ValueError(f"{text} is set by the handshake itself")
        pairs.append((raw_name, raw_value))
    return pairs


async def refuse(sock: Socket, rejection: Rejection, req: Any) -> None:
    """Send a refusal response (the caller closes the connection); logged at INFO."""
    logger.info(
        "refused WebSocket handshake from %r: %d %s",
        getattr(req, "remote_address", None),
        rejection.status,
        rejection.body.decode(errors="replace").strip(),
    )
    with contextlib.suppress(*_SOCKET_GONE):
        await sock.send(closing_response(rejection.status, rejection.headers, rejection.body))
