"""``trionet demo``: the seed chapter's examples, all running in one process.

The chapter on network programming in 深入浅出Node.js builds a TCP server that
greets and echoes, a UDP server that prints what arrives, "Hello World" over
HTTP on port 1337, a WebSocket, and HTTPS with a private CA. :func:`run`
starts each of them in one nursery, prints how to try every one from a shell,
and waits for SIGINT or SIGTERM to shut them all down.

Each service is a small, separate module, so the demo doubles as sample code:

- :mod:`.tcp`: :func:`tcp_echo` greets and echoes (TCP, and the same handler on a Unix socket);
- :mod:`.udp`: :func:`udp_printer` prints every datagram and sends it back;
- :mod:`.http`: :func:`http_app` serves the page (``index.html``) and "Hello World";
- :mod:`.https`: the same app over TLS, with a private CA written to a file;
- :mod:`.chat`: :class:`ChatRoom` is the page's WebSocket: an echo, plus a chat between tabs;
- :mod:`.service`: what they share (:class:`Options`, :class:`Service`, starting one);
- :mod:`.run`: starting them all, the banner, and the shutdown on a signal.

This module only re-exports the names the command line and the tests use.
"""

from __future__ import annotations

from .chat import ChatRoom
from .http import http_app, page
from .run import run
from .service import DemoError, Options, Service
from .tcp import GREETING, tcp_echo
from .udp import udp_printer

__all__ = [
    "GREETING",
    "ChatRoom",
    "DemoError",
    "Options",
    "Service",
    "http_app",
    "page",
    "run",
    "tcp_echo",
    "udp_printer",
]
