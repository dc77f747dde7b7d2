"""What every service of ``trionet demo`` shares: where it listens, how it starts, what it prints.

Each service module (``tcp``, ``udp``, ``http``, ``https``) exposes one
``start_*(ctx)`` that listens via :func:`listen` and returns a
:class:`Service`; :mod:`.run` starts them in order and prints their banner.
These shared pieces live in this leaf module rather than beside ``run``
because ``run`` imports every service module: a service importing ``Options``
or ``Service`` from ``run`` would close an import circle. For the same reason
:class:`Context` carries the page's WebSocket handler rather than the chat room
itself: this module never imports :mod:`.chat`.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

import trionet

__all__ = [
    "SHUTDOWN_GRACE",
    "Context",
    "DemoError",
    "Options",
    "Say",
    "Service",
    "listen",
    "port_option",
    "print_line",
    "url_host",
]

#: How long live connections get to finish after a signal before they are cancelled.
SHUTDOWN_GRACE = 1.0

#: Prints one line of the demo's output (:func:`print_line` by default).
Say = Callable[[str], None]


def print_line(text: str) -> None:
    """The default :data:`Say`: ``print`` with ``flush=True``, so a pipe sees each line."""
    print(text, flush=True)


class DemoError(Exception):
    """A service could not start; the message names it, its port and what to do."""


@dataclass
class Options:
    """Where the demo listens: the seed's ports on loopback unless told otherwise."""

    workdir: Path
    host: str = "127.0.0.1"
    tcp_port: int = 8124
    udp_port: int = 41234
    http_port: int = 1337
    https_port: int = 8443
    #: Seconds live connections get to finish after a signal (then they are cancelled).
    grace: float = SHUTDOWN_GRACE

    @property
    def unix_path(self) -> Path:
        return self.workdir / "echo.sock"


@dataclass
class Service:
    """A running service and the shell commands that try it."""

    name: str
    server: trionet.net.Server
    where: str
    #: Shell commands to try it, printed after a ``$``.
    commands: list[str] = field(default_factory=list)
    #: Anything else worth saying (the browser URL, the CA file).
    hints: list[str] = field(default_factory=list)


@dataclass
class Context:
    """What every service's start function needs."""

    nursery: trio.Nursery
    opts: Options
    say: Say
    #: The page's WebSocket (the chat room's ``handle``), served on the HTTP and HTTPS ports.
    websocket: trionet.ws.Handler


async def listen(
    ctx: Context, name: str, where: str, option: str, serve: Callable[..., Awaitable[None]]
) -> trionet.net.Server:
    """Start one server, turning "address in use" and friends into a :class:`DemoError`."""
    try:
        server: trionet.net.Server = await ctx.nursery.start(serve)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise DemoError(
                f"{name}: {where} is already in use; stop whatever listens there "
                f"or pick another with {option}"
            ) from None
        if exc.errno == errno.EACCES:
            raise DemoError(
                f"{name}: not allowed to listen on {where}; pick another with {option}"
            ) from None
        raise DemoError(f"{name}: could not listen on {where}: {exc}") from None
    return server


def port_option(option: str, port: int) -> tuple[str, str]:
    """``(where, option)`` for :func:`listen`'s message about a port taken from ``option``."""
    return f"port {port}", f"{option} (0 picks a free one)"


def url_host(host: str) -> str:
    """``host`` as it goes in a URL or ``host:port``: IPv6 literals in brackets."""
    return f"[{host}]" if ":" in host else host
