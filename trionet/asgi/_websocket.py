"""One WebSocket connection for an ASGI app, over trionet's public handshake step.

The HTTP server hands an upgrade request to ``on_upgrade(req, sock, head)``;
:func:`trionet.ws.server_handshake` checks it (a malformed one is answered
400/405/426 and never reaches the app) and returns a
:class:`trionet.ws.ServerHandshake` that is answered once:
``websocket.accept`` becomes ``handshake.accept(subprotocol=, headers=)``,
``websocket.close`` before accepting becomes ``handshake.reject(403)``, and
the ``websocket.http.response`` denial extension becomes
``handshake.reject(status, headers=, body=)``.

``accept`` is an ``async with`` block (it runs the connection's reader), but
the app decides to accept from inside its own call, maybe from a task of its
own: a block entered there could not be left after the app returns (Trio
scopes nest). So the accepted connection runs in a task of the hook's
nursery (:meth:`WebSocketCycle._run_connection`), started by ``send()``
with ``nursery.start`` so ``send()`` returns once the 101 went out; that
task leaves the block when the app is done, closing with 1000, or with
1011 if the app failed (asgiref: a server should close with 1011 on an
exception after accept; before it, uvicorn answers 500, as here).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup  # Trio's dependency before 3.11

from ..ws import ConnectionClosed, HandshakeError, ServerHandshake, WebSocket
from ._types import ASGIProtocolError, ClientDisconnected, Message

__all__ = ["WebSocketCycle", "WebSocketOptions"]

logger = logging.getLogger("trionet.asgi.websocket")

# States: waiting for the app's answer; the denial response begun; accepted; closed.
_CONNECTING, _RESPONDING, _ACCEPTED, _CLOSED = range(4)

#: The code an app sees in ``websocket.disconnect`` when the handshake was
#: refused or the client left before the 101 (RFC 6455 section 7.1.5: 1006,
#: "closed abnormally", never sent in a frame).
ABNORMAL = 1006


class WebSocketOptions:
    """The connection options of the WebSocket layer (:func:`trionet.ws.handler`'s)."""

    __slots__ = ("close_timeout", "compression", "max_message_size", "ping_interval",
                 "ping_timeout")  # fmt: skip

    def __init__(
        self,
        *,
        max_message_size: int,
        ping_interval: float | None,
        ping_timeout: float | None,
        compression: bool,
        close_timeout: float,
    ) -> None:
        if max_message_size <= 0:
            raise ValueError(f"ws_max_size must be positive, not {max_message_size}")
        self.max_message_size = max_message_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.compression = compression
        self.close_timeout = close_timeout


class WebSocketCycle:
    """``receive`` and ``send`` of one WebSocket scope (see the module docstring)."""

    def __init__(
        self, handshake: ServerHandshake, nursery: trio.Nursery, options: WebSocketOptions
    ) -> None:
        self.handshake = handshake
        self.nursery = nursery
        self.options = options
        self.state = _CONNECTING
        self.ws: WebSocket | None = None
        self._connect_sent = False
        self._status = 403
        self._headers: Any = ()
        self._body: list[bytes] = []
        #: Set once the handshake is answered (accepted, refused) or the app is done.
        self._answered = trio.Event()
        #: Set when the app is done; the connection task then leaves its block.
        self.app_done = trio.Event()
        self.app_failed = False

    # -- receive ---------------------------------------------------------------------
    async def receive(self) -> Message:
        """``websocket.connect`` first, then messages, then ``websocket.disconnect``."""
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        ws = self.ws
        if ws is None:
            # Before the answer, a second receive() waits for it (Quart's
            # message task receives while its handler decides).
            await self._answered.wait()
            ws = self.ws
            if ws is None:  # refused, or the client left before the 101
                return {"type": "websocket.disconnect", "code": ABNORMAL, "reason": ""}
        try:
            message = await ws.receive()
        except ConnectionClosed as exc:
            return {"type": "websocket.disconnect", "code": exc.code, "reason": exc.reason}
        if type(message) is str:
            return {"type": "websocket.receive", "text": message}
        return {"type": "websocket.receive", "bytes": message}

    # -- send ------------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        """Take one message from the app."""
        kind = message["type"]
        ws = self.ws
        if kind == "websocket.send":
            if ws is None or self.state != _ACCEPTED:
                raise self._misuse(kind)
            text = message.get("text")
            try:
                await ws.send(text if text is not None else message["bytes"])
            except ConnectionClosed as exc:
                raise ClientDisconnected(f"the WebSocket is closed ({exc.code})") from exc
        elif kind == "websocket.accept":
            if self.state != _CONNECTING:
                raise self._misuse(kind)
            await self._accept(message.get("subprotocol"), message.get("headers") or ())
        elif kind == "websocket.close":
            if self.state == _CONNECTING:
                self.state = _CLOSED
                self._answered.set()
                await self.handshake.reject(403)
            elif self.state == _ACCEPTED and ws is not None:
                self.state = _CLOSED
                await ws.aclose(message.get("code", 1000), message.get("reason") or "")
            else:
                raise self._misuse(kind)
        elif kind == "websocket.http.response.start":
            if self.state != _CONNECTING:
                raise self._misuse(kind)
            self._status = message["status"]
            self._headers = message.get("headers") or ()
            self.state = _RESPONDING
        elif kind == "websocket.http.response.body":
            if self.state != _RESPONDING:
                raise self._misuse(kind)
            self._body.append(message.get("body", b""))
            if not message.get("more_body", False):
                self.state = _CLOSED
                self._answered.set()
                await self.handshake.reject(
                    self._status, headers=self._headers, body=b"".join(self._body)
                )
        else:
            raise self._misuse(kind)

    def _misuse(self, kind: str) -> ASGIProtocolError:
        what = {
            _CONNECTING: "before the handshake was answered",
            _RESPONDING: "while sending the denial response",
            _ACCEPTED: "on an accepted WebSocket",
            _CLOSED: "after the WebSocket was closed or refused",
        }[self.state]
        return ASGIProtocolError(f"unexpected ASGI message {kind!r} {what}")

    async def _accept(self, subprotocol: str | None, headers: Any) -> None:
        self.state = _ACCEPTED
        try:
            self.ws = await self.nursery.start(self._run_connection, subprotocol, headers)
        except HandshakeError as exc:  # the client's extension offer: it got 400
            self.state = _CLOSED
            self._answered.set()
            raise ClientDisconnected(f"the handshake failed: {exc}") from exc
        except ValueError:
            self.state = _CONNECTING  # nothing was sent: the app may still answer
            raise
        self._answered.set()

    async def _run_connection(
        self,
        subprotocol: str | None,
        headers: Any,
        task_status: trio.TaskStatus[WebSocket] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Answer 101 and hold the connection open until the app is done."""
        options = self.options
        async with self.handshake.accept(
            subprotocol=subprotocol,
            headers=headers,
            max_message_size=options.max_message_size,
            compression=options.compression,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            close_timeout=options.close_timeout,
        ) as ws:
            task_status.started(ws)
            await self.app_done.wait()
            if self.app_failed:
                await ws.aclose(1011, "handler failed")

    # -- the app's end ---------------------------------------------------------------
    async def finish(self, exc: Exception | None) -> None:
        """Answer what the app left unanswered; log its failure (``exc``) if it failed."""
        state = self.state
        if exc is not None:
            if self._own_closure(exc):
                logger.debug("WebSocket app ended with its closed connection: %s", exc)
            else:
                logger.error("ASGI app failed on WebSocket %r", self.handshake.path, exc_info=exc)
                self.app_failed = True
        elif state in (_CONNECTING, _RESPONDING):
            logger.error(
                "ASGI app returned without answering the WebSocket handshake for %r",
                self.handshake.path,
            )
        self.app_done.set()
        self._answered.set()
        if state in (_CONNECTING, _RESPONDING):
            self.state = _CLOSED
            with trio.move_on_after(self.options.close_timeout):
                await self.handshake.reject(500, body=b"Internal Server Error\n")

    def _own_closure(self, exc: BaseException) -> bool:
        """Whether ``exc`` is only this connection ending (the client left)."""
        if isinstance(exc, ClientDisconnected | ConnectionClosed):
            return True
        if isinstance(exc, BaseExceptionGroup):
            return all(self._own_closure(inner) for inner in exc.exceptions)
        cause = exc.__cause__ or exc.__context__
        return self.state in (_ACCEPTED, _CLOSED) and isinstance(cause, ClientDisconnected)
