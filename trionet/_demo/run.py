"""Running ``trionet demo``: start every service, print the banner, stop them all on a signal.

The services start one after the other in :data:`STARTERS` order inside one
nursery, so the first that cannot listen stops the lot with a
:class:`.service.DemoError` naming it, rather than leaving a half-started demo.
Shutdown has two steps: stop accepting and say goodbye to the WebSocket tabs,
give live connections ``grace`` seconds, then cancel what is left; a second
signal cuts the grace short.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import trio

from .chat import ChatRoom
from .http import start_http
from .https import start_https
from .service import SHUTDOWN_GRACE, Context, DemoError, Options, Say, Service, print_line
from .tcp import start_tcp, start_unix
from .udp import start_udp

__all__ = ["STARTERS", "banner", "run", "shutdown", "start_all"]

#: The services, in the order they start.
STARTERS: list[Callable[[Context], Awaitable[Service]]] = [
    start_tcp,
    start_unix,
    start_udp,
    start_http,
    start_https,
]


def banner(services: list[Service]) -> str:
    """What the demo prints once everything listens: per service, how to try it."""
    lines = [
        "trionet demo: the network examples of 深入浅出Node.js, running together.",
        "",
    ]
    for service in services:
        lines.append(f"  {service.name:<18} {service.where}")
        lines.extend(f"      $ {command}" for command in service.commands)
        lines.extend(f"      {hint}" for hint in service.hints)
    lines += ["", "Press Ctrl-C (or send SIGTERM) to stop."]
    return "\n".join(lines)


async def start_all(ctx: Context) -> list[Service]:
    """Start the services in :data:`STARTERS` order; the first that fails stops the lot."""
    return [await start(ctx) for start in STARTERS]


async def run(opts: Options, say: Say = print_line) -> None:
    """Start every service, print the banner, and serve until SIGINT or SIGTERM.

    A second signal during the shutdown cuts the grace period short.

    Raises:
      DemoError: a service could not start (the others are stopped first).
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        room = ChatRoom(say)
        error: DemoError | None = None
        async with trio.open_nursery() as nursery:
            try:
                services = await start_all(Context(nursery, opts, say, room.handle))
            except DemoError as exc:
                error = exc
                nursery.cancel_scope.cancel()
            else:
                say(banner(services))
                signum = await signals.__anext__()
                say(f"\n{signal.Signals(signum).name}: shutting down")
                hurry = trio.Event()
                nursery.start_soon(_hurry_on_signals, signals, hurry, say)
                await shutdown(services, room, hurry, opts.grace)
                nursery.cancel_scope.cancel()
        if error is not None:
            raise error


async def _hurry_on_signals(signals: AsyncIterator[int], hurry: trio.Event, say: Say) -> None:
    """Consume further signals (so none is left to kill us later); the first sets ``hurry``."""
    async for _ in signals:
        if not hurry.is_set():
            say("stopping now")
            hurry.set()


async def shutdown(
    services: list[Service], room: ChatRoom, hurry: trio.Event, grace: float = SHUTDOWN_GRACE
) -> None:
    """Stop accepting everywhere, say goodbye to the tabs, give live connections a moment.

    The moment ends when every server has closed, after ``grace`` seconds, or
    when ``hurry`` is set, whichever comes first.
    """
    room.close_all()
    for service in services:
        service.server.close()

    async def all_closed() -> None:
        for service in services:
            await service.server.wait_closed()

    with trio.move_on_after(grace):
        await _first_of(all_closed, hurry.wait)


async def _first_of(*waits: Callable[[], Awaitable[object]]) -> None:
    """Wait until any one of ``waits`` returns."""
    async with trio.open_nursery() as nursery:
        for wait in waits:
            nursery.start_soon(_then_cancel, wait, nursery.cancel_scope)


async def _then_cancel(wait: Callable[[], Awaitable[object]], scope: trio.CancelScope) -> None:
    await wait()
    scope.cancel()
