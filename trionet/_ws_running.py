"""Running WebSocket connections: their tasks, a handler's failure, and broadcast.

:func:`running` runs a connection's helper tasks (reader, heartbeat, see
:mod:`trionet._ws_tasks`) beside the block that uses it, and closes the
connection after; :func:`run_handler` is the
server's rule for how a handler ends; :func:`stop_watch` closes a server's
connections with 1001 when the server stops; :func:`broadcast` sends to many
running connections at once. The connection itself is :mod:`trionet._ws_connection`.
"""

from __future__ import annotations

import logging
import sys
import weakref
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any

import trio
from wsproto.events import BytesMessage, Message, TextMessage

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup  # Trio's dependency before 3.11

from ._ws_connection import ConnectionClosed, Data, WebSocket
from ._ws_send import plain_server_frame
from ._ws_state import CloseCode, State
from ._ws_tasks import Helpers, away_watch

__all__ = [
    "Running",
    "broadcast",
    "handler_failed",
    "heartbeat_of",
    "run_handler",
    "running",
    "stop_watch",
]

logger = logging.getLogger("trionet.ws.handler")

#: The name of a connection's heartbeat task.
HEARTBEAT_TASK_NAME = "trionet.ws.heartbeat"

#: The reason of the 1011 Close sent when the code using a connection fails,
#: by side (client?): a server's handler, or a client's ``async with`` block.
BLOCK_FAILED = {False: "handler failed", True: "client failed"}


def running(
    ws: WebSocket, *, ping_interval: float | None = None, ping_timeout: float | None = None
) -> Running:
    """Run the connection's helpers (reader, heartbeat) beside the ``async with`` block, then close.

    A block that ends normally, or because its own connection closed, closes
    with the handshake (``aclose()``, 1000). One that raises anything else
    (``ConnectionClosed`` of *another* connection included) failed, by the
    rule of :func:`run_handler`: the close handshake says 1011, so that the
    peer learns it was no normal end (API.md; RFC 6455 section 7.4.1's
    1011, "an unexpected condition"). A cancelled block (a server shutting
    down) sends 1001 and drops TCP at once instead of waiting for the peer.

    An error raised by the block comes out as itself, not wrapped in an
    ExceptionGroup (no nursery runs the block): ``except ValueError`` around
    ``async with ws.connect(...)`` works (trio-websocket's users asked for
    this, python-trio/trio-websocket#188).
    """
    return Running(ws, heartbeat_of(ping_interval, ping_timeout))


def heartbeat_of(
    ping_interval: float | None, ping_timeout: float | None
) -> tuple[float, float] | None:
    """(interval, timeout) of the heartbeat (the timeout defaults to the interval), or None."""
    if ping_interval is None:
        return None
    return ping_interval, ping_timeout if ping_timeout is not None else ping_interval


class Running:
    """The context manager :func:`running` returns, written as a class.

    It lives as long as its connection: as ``contextlib.asynccontextmanager``
    it was a context-manager object with a dict plus a suspended async
    generator, about 600 bytes per idle connection; this holds four slots.
    """

    __slots__ = ("_heartbeat", "_stop", "ws")

    def __init__(self, ws: WebSocket | None, heartbeat: tuple[float, float] | None) -> None:
        self.ws: WebSocket = ws  # type: ignore[assignment]  # None only until Accepted sets it
        #: (interval, timeout) of the heartbeat, or None for none.
        self._heartbeat = heartbeat
        #: The open connections of the server this one goes away with (see join_stop).
        self._stop: set[WebSocket] | None = None

    def join_stop(self, closing: trio.Event | None) -> None:
        """Close with 1001 when ``closing`` is set, until the block ends (None: never)."""
        if closing is not None:
            self._stop = stop_watch(closing, self.ws)

    async def __aenter__(self) -> None:
        ws = self.ws
        # The reader, broadcast()'s writer and the heartbeat run as helpers
        # (trionet._ws_tasks), ended with the block; no nursery per connection.
        ws._helpers = Helpers(ws._helper_failed)
        # No reader task yet: receive() reads, and the watch starts a reader
        # if the block stays away from receive() (see trionet._ws_connection).
        watch = ws._watch = away_watch()
        watch.leave(ws)
        if self._heartbeat is not None:
            ws._helpers.start(heartbeat, ws, *self._heartbeat, name=HEARTBEAT_TASK_NAME)
        await trio.lowlevel.checkpoint()  # an async with's entry is a checkpoint

    async def __aexit__(
        self,
        etype: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Close by how the block ended; its exception (or closing's) comes out as itself."""
        ws = self.ws
        if self._stop is not None:
            self._stop.discard(ws)
            self._stop = None
        try:
            await self._close(exc)
        finally:
            if ws._watch is not None:
                ws._watch.forget(ws)  # closed by now; never read for again
            helpers, ws._helpers = ws._helpers, None
            if helpers is not None:
                await helpers.aclose()
        return False

    async def _close(self, exc: BaseException | None) -> None:
        """Close the connection by how the block ended."""
        ws = self.ws
        if isinstance(exc, trio.Cancelled):
            with trio.CancelScope(shield=True):
                await ws._fail(CloseCode.GOING_AWAY, "going away")
        elif isinstance(exc, Exception) and not _is_own_closure(exc, ws):
            await ws.aclose(CloseCode.INTERNAL_ERROR, BLOCK_FAILED[ws._client])
        else:
            await ws.aclose()


async def heartbeat(ws: WebSocket, interval: float, timeout: float) -> None:
    """Ping every ``interval`` seconds; fail the connection if a Pong is late."""
    while ws.state is State.OPEN:
        await trio.sleep(interval)
        try:
            with trio.move_on_after(timeout) as scope:
                await ws.ping()
        except ConnectionClosed:
            return
        # A reader held up by our own lagging application can't read the Pong.
        if scope.cancelled_caught and not ws._reader_waiting_for_room:
            logger.info("%r: no pong within %ss, closing", ws, timeout)
            await ws._fail(CloseCode.INTERNAL_ERROR, "ping timeout")
            return


async def run_handler(ws: WebSocket, handler: Callable[[WebSocket], Awaitable[None]]) -> None:
    """Run a server's handler; a failure closes its connection with 1011 and is logged.

    Only the closure of the handler's *own* connection ends it quietly: a
    ``ConnectionClosed`` raised by another connection (a chat server sending
    to a peer that left) is this handler's failure like any other exception.
    Passing it off as a normal close would silently drop the innocent client
    this handler serves.
    """
    try:
        await handler(ws)
    except Exception as exc:
        await handler_failed(ws, exc)


async def handler_failed(ws: WebSocket, exc: Exception) -> None:
    """What :func:`run_handler` does with the handler's exception ``exc``."""
    if _is_own_closure(exc, ws):
        return
    logger.error("WebSocket handler for %r failed", ws.remote_address, exc_info=exc)
    await ws._fail(CloseCode.INTERNAL_ERROR, BLOCK_FAILED[False])


def _is_own_closure(exc: BaseException, ws: WebSocket) -> bool:
    """Whether ``exc`` is ``ws``'s own ConnectionClosed (or a group of nothing else)."""
    if isinstance(exc, ConnectionClosed):
        return exc.websocket is ws
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_own_closure(inner, ws) for inner in exc.exceptions)
    return False


# -- a server's stop ------------------------------------------------------------------
#
# When a server stops (aclose(), a SIGTERM through trionet.run; not a bare
# close(), which lets live connections run on as Node's and ws's do), each
# of its open WebSockets starts the close handshake with 1001, "going away"
# (RFC 6455 section 7.4.1: "an endpoint is going away, such as a server going
# down"): its handler's receive() raises ConnectionClosed(1001) (an ``async
# for`` ends), the peer answers, and aclose(timeout) finds the connections
# done instead of cancelling them after the timeout (which sends 1001 too,
# without waiting for the answer).
#
# One watcher per server, not per connection: a task waiting on the event
# beside each idle connection would cost a task and its frames (about 2 KiB)
# per connection (see benchmarks/ws_idle_memory.py). The watcher is a Trio
# system task: the HTTP server's nursery is not ours to start tasks in, and
# the first connection ends before the others. It waits until
# the server closes (or the run ends) and holds nothing but the set.

#: The open WebSockets of each closing event being watched.
_watched: weakref.WeakKeyDictionary[trio.Event, set[WebSocket]] = weakref.WeakKeyDictionary()


def stop_watch(closing: trio.Event, ws: WebSocket) -> set[WebSocket] | None:
    """Close ``ws`` with 1001 when ``closing`` is set; the set to leave when it ends.

    A connection accepted once the server is closing goes away at once.
    """
    if closing.is_set():  # the server began closing during the handshake
        go_away(ws)
        return None
    clients = _watched.get(closing)
    if clients is None:
        clients = _watched[closing] = set()
        trio.lowlevel.spawn_system_task(_watch, closing, clients, name=WATCH_TASK_NAME)
    clients.add(ws)
    return clients


#: The name of the task that waits for a server's stop (one per server with WebSockets).
WATCH_TASK_NAME = "trionet.ws.going_away"


async def _watch(closing: trio.Event, clients: set[WebSocket]) -> None:
    await closing.wait()
    _watched.pop(closing, None)
    for ws in list(clients):
        try:
            go_away(ws)
        except Exception:  # a system task's exception would crash the whole run
            logger.exception("could not close %r on the server's stop", ws)


def go_away(ws: WebSocket) -> None:
    """Start closing ``ws`` with 1001 in a helper task (nothing if it is not open)."""
    if ws.state is State.OPEN and ws._helpers is not None:
        ws._helpers.start(ws.aclose, CloseCode.GOING_AWAY, "going away", name=WATCH_TASK_NAME)


def broadcast(connections: Iterable[WebSocket], message: Data) -> None:
    """Send ``message`` to every open connection of ``connections``, waiting for none.

    As ``websockets.broadcast`` and ws's ``wss.clients.forEach(c => c.send(m))``:
    ``str`` goes out as text, bytes as binary. Connections that are closing
    or closed are skipped; nothing about a peer makes it raise. The message
    is queued on each connection and written by that connection's writer
    task, in order with its ``send()`` calls, so the caller never waits for a
    slow peer: the frames go out once the caller next yields to Trio.

    Memory stays bounded: a peer with ``max_buffered_amount`` bytes queued
    (default :data:`~trionet._ws_send.MAX_BUFFERED_AMOUNT`, 1 MiB) gets the
    message dropped, counted in its ``broadcast_dropped`` and logged (WARNING)
    once per stretch of drops. A message given while the connection is in the
    middle of a fragmented ``send(fin=False)`` waits for that message's end.

    Raises:
      TypeError: ``message`` is neither str nor bytes.
    """
    event: Message[Any]
    if isinstance(message, str):
        event = TextMessage(data=message)
        frame = plain_server_frame(message)
    elif isinstance(message, (bytes, bytearray, memoryview)):
        data = bytes(message)
        event = BytesMessage(data=data)
        frame = plain_server_frame(data)
    else:
        raise TypeError(f"broadcast() takes str or bytes, not {type(message).__name__}")
    for ws in connections:
        ws._broadcast(event, frame)
