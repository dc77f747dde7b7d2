"""Running ``trionet demo``: start every service, print the banner, stop them all on a signal.

The services start one after the other in :data:`STARTERS` order inside one
nursery, so the first that cannot listen stops the lot with a
:class:`.service.DemoError` naming it, rather than leaving a half-started demo.
Shutdown is :func:`trionet.run`'s: the first signal stops every server
accepting (the demo says goodbye to the WebSocket tabs meanwhile), live
connections get ``grace`` seconds, then what is left is cancelled; a second
signal cuts the grace short.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from .._run import hurried, stopping, supervise
from .chat import ChatRoom
from .http import start_http
from .https import start_https
from .service import Context, DemoError, Options, Say, Service, print_line
from .tcp import start_tcp, start_unix
from .udp import start_udp

__all__ = ["STARTERS", "banner", "run", "start_all"]

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

    The signals are :func:`trionet.run`'s (here inside the CLI's ``trio.run``):
    the first closes every server and gives live connections ``opts.grace``
    seconds, a second cuts that short.

    Raises:
      DemoError: a service could not start (the others are stopped first).
    """
    await supervise(_serve, opts, say, shutdown_timeout=opts.grace)


async def _serve(opts: Options, say: Say) -> None:
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
            reason = await stopping()
            say(f"\n{reason}: shutting down")
            room.close_all()  # goodbye to the tabs, while the run closes the servers
            try:
                await trio.sleep_forever()  # until the run cancels us: servers done
            finally:
                if hurried():
                    say("stopping now")
    if error is not None:
        raise error
