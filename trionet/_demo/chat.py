"""The demo page's WebSocket for ``trionet demo``: an echo for one tab, a chat room for all.

The room knows nothing about ports or servers: :mod:`.run` creates one and
hands its :meth:`ChatRoom.handle` to the HTTP and HTTPS services, so a tab on
either port chats with the others.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

import trio

import trionet

from .service import Say, print_line

__all__ = ["ChatRoom"]


@dataclass
class _Member:
    name: str
    outbox: trio.MemorySendChannel[str | None]


class ChatRoom:
    """The page's WebSocket: an echo for one tab, and a chat for all of them.

    A tab sends JSON ``{"kind": "echo", "text": ...}`` (answered to it alone)
    or ``{"kind": "chat", "text": ...}`` (sent to every tab); anything else is
    echoed as it is. The server sends ``welcome``, ``echo``, ``chat`` and
    ``online`` messages. Each member has its own writer task fed by a bounded
    outbox, so one slow tab never stalls the others: when its outbox is full,
    messages for it are dropped.
    """

    OUTBOX_SIZE = 64

    def __init__(self, say: Say = print_line) -> None:
        self._say = say
        self._members: dict[str, _Member] = {}
        self._joined = 0

    @property
    def online(self) -> int:
        return len(self._members)

    async def handle(self, ws: trionet.ws.WebSocket) -> None:
        """Serve one WebSocket until it closes (the handler for ``ws.handler``)."""
        send, receive = trio.open_memory_channel[str | None](self.OUTBOX_SIZE)
        member = self._join(send)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, ws, receive)
                await self._read(ws, member)
                nursery.cancel_scope.cancel()
        finally:
            self._leave(member)

    def close_all(self) -> None:
        """Ask every tab's writer to close its WebSocket with 1001 (going away)."""
        for member in self._members.values():
            member.outbox.close()

    def _join(self, outbox: trio.MemorySendChannel[str | None]) -> _Member:
        self._joined += 1
        member = _Member(f"guest {self._joined}", outbox)
        self._members[member.name] = member
        self._say(f"ws: {member.name} joined ({self.online} online)")
        self._post(member, {"kind": "welcome", "name": member.name})
        self._broadcast({"kind": "online", "count": self.online})
        return member

    def _leave(self, member: _Member) -> None:
        if self._members.pop(member.name, None) is None:
            return
        self._say(f"ws: {member.name} left ({self.online} online)")
        self._broadcast({"kind": "online", "count": self.online})

    async def _read(self, ws: trionet.ws.WebSocket, member: _Member) -> None:
        async for message in ws:
            kind, text = _parse(message)
            if kind == "chat":
                self._say(f"ws: {member.name}: {text}")
                self._broadcast({"kind": "chat", "from": member.name, "text": text})
            else:
                self._post(member, {"kind": "echo", "text": text})

    @staticmethod
    async def _write(
        ws: trionet.ws.WebSocket, outbox: trio.MemoryReceiveChannel[str | None]
    ) -> None:
        async for message in outbox:
            if message is not None:
                await ws.send(message)
        # The room closed our outbox: the server is shutting down.
        await ws.aclose(1001, "demo shutting down")

    def _post(self, member: _Member, message: dict[str, Any]) -> None:
        # A slow or closing tab misses this one.
        with contextlib.suppress(
            trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError
        ):
            member.outbox.send_nowait(json.dumps(message, ensure_ascii=False))

    def _broadcast(self, message: dict[str, Any]) -> None:
        for member in list(self._members.values()):
            self._post(member, message)


def _parse(message: str | bytes) -> tuple[str, str]:
    """``(kind, text)`` of a message from a tab; plain text counts as an echo."""
    raw = message.decode(errors="replace") if isinstance(message, bytes) else message
    try:
        data = json.loads(raw)
    except ValueError:
        return "echo", raw
    if isinstance(data, dict) and isinstance(data.get("text"), str):
        return str(data.get("kind", "echo")), data["text"]
    return "echo", raw
