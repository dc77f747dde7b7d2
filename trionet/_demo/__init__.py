"""``trionet demo``: the seed chapter's examples, all running in one process.

The chapter on network programming in 深入浅出Node.js builds a TCP server that
greets and echoes, a UDP server that prints what arrives, "Hello World" over
HTTP on port 1337, a WebSocket, and HTTPS with a private CA. :func:`run`
starts each of them in one nursery, prints how to try every one from a shell,
and waits for SIGINT or SIGTERM to shut them all down.

Each service is a small, separate function, so the demo doubles as sample code:

- :func:`tcp_echo` greets and echoes (TCP, and the same handler on a Unix socket);
- :func:`udp_printer` prints every datagram and sends it back;
- :func:`http_app` serves the page (``index.html`` beside this file) and "Hello World";
- :class:`ChatRoom` is the page's WebSocket: an echo, plus a chat between tabs.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib.resources
import json
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

import trionet

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

#: What the chapter's TCP server says first.
GREETING = "欢迎光临《深入浅出Node.js》示例：\n"

#: How long live connections get to finish after a signal before they are cancelled.
SHUTDOWN_GRACE = 1.0

#: Prints one line of the demo's output (``print`` with ``flush=True`` by default).
Say = Callable[[str], None]


def _say(text: str) -> None:
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


# -- the services ---------------------------------------------------------------
async def tcp_echo(sock: trionet.net.Socket) -> None:
    """Greet, then send back everything the peer sends until it hangs up."""
    await sock.send(GREETING)
    await trionet.net.pipe(sock, sock)


def udp_printer(say: Say = _say) -> trionet.dgram.Handler:
    """A datagram handler that prints what arrives, as the chapter's UDP server, and echoes it."""

    async def handler(
        message: bytes, rinfo: trionet.dgram.RemoteInfo, sock: trionet.dgram.UDPSocket
    ) -> None:
        text = message.decode(errors="replace").rstrip("\n")
        say(f"udp: server got: {text} from {rinfo.address}:{rinfo.port}")
        await sock.send(message, (rinfo.address, rinfo.port))

    return handler


def page() -> bytes:
    """The demo's HTML page: one self-contained file, no external assets."""
    return importlib.resources.files(__package__).joinpath("index.html").read_bytes()


async def http_app(req: trionet.http.Request, res: trionet.http.Response) -> None:
    """``/`` is the page, ``/hello`` is the chapter's "Hello World", the rest is 404."""
    if req.path == "/":
        res.write_head(200, {"Content-Type": "text/html; charset=utf-8"})
        await res.end(page())
    elif req.path == "/hello":
        res.write_head(200, {"Content-Type": "text/plain"})
        await res.end(b"Hello World\n")
    else:
        res.write_head(404, {"Content-Type": "text/plain"})
        await res.end(f"no page at {req.path}; try / or /hello\n".encode())


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

    def __init__(self, say: Say = _say) -> None:
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


# -- starting them ---------------------------------------------------------------
def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _start(
    nursery: trio.Nursery,
    name: str,
    port_option: str,
    port: int | None,
    serve: Callable[..., Awaitable[None]],
    *args: Any,
    **kwargs: Any,
) -> trionet.net.Server:
    """Start one server, turning "address in use" and friends into a :class:`DemoError`."""
    try:
        server: trionet.net.Server = await nursery.start(functools.partial(serve, *args, **kwargs))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise DemoError(
                f"{name}: port {port} is already in use; stop whatever listens there "
                f"or pick another port with {port_option} (0 picks a free one)"
            ) from None
        if exc.errno == errno.EACCES:
            raise DemoError(
                f"{name}: not allowed to listen on port {port}; pick another with {port_option}"
            ) from None
        raise DemoError(f"{name}: could not listen: {exc}") from None
    return server


async def start_tcp(nursery: trio.Nursery, opts: Options) -> Service:
    """The chapter's TCP server: greeting plus echo."""
    server = await _start(
        nursery, "TCP echo", "--tcp-port", opts.tcp_port,
        trionet.net.serve, tcp_echo, opts.tcp_port, host=opts.host,
    )  # fmt: skip
    where = f"{_url_host(opts.host)}:{server.port}"
    return Service("TCP echo", server, where, [f"nc {opts.host} {server.port}"])


async def start_unix(nursery: trio.Nursery, opts: Options) -> Service:
    """The same echo on a Unix socket in the demo's temporary directory."""
    path = str(opts.unix_path)
    server = await _start(
        nursery, "Unix echo", "--workdir", None, trionet.net.serve, tcp_echo, path=path
    )
    return Service("Unix echo", server, path, [f"nc -U {path}"])


async def start_udp(nursery: trio.Nursery, opts: Options, say: Say) -> Service:
    """The chapter's UDP server, printing what arrives (and echoing it)."""
    server = await _start(
        nursery, "UDP", "--udp-port", opts.udp_port,
        trionet.dgram.serve, udp_printer(say), opts.udp_port, host=opts.host,
        family="udp6" if ":" in opts.host else "udp4",
    )  # fmt: skip
    where = f"{_url_host(opts.host)}:{server.port}"
    return Service("UDP", server, where, [f"echo hello | nc -u -w1 {opts.host} {server.port}"])


async def start_http(nursery: trio.Nursery, opts: Options, room: ChatRoom) -> Service:
    """HTTP on 1337: the page, "Hello World", and the page's WebSocket on the same port."""
    server = await _start(
        nursery, "HTTP", "--http-port", opts.http_port,
        trionet.http.serve, http_app, opts.http_port, host=opts.host,
        on_upgrade=trionet.ws.handler(room.handle),
    )  # fmt: skip
    url = f"http://{_url_host(opts.host)}:{server.port}/"
    return Service(
        "HTTP + WebSocket",
        server,
        url,
        [f"curl {url}hello"],
        [f"open {url} in a browser: WebSocket echo, and a chat between tabs"],
    )


async def start_https(nursery: trio.Nursery, opts: Options, room: ChatRoom) -> Service:
    """HTTPS on 8443 with a fresh private CA, written where the banner says."""
    from trionet import testing  # late: only the demo and tests need certificates

    hosts = tuple(dict.fromkeys(("localhost", "127.0.0.1", "::1", opts.host)))
    files = testing.write_certs(opts.workdir / "certs", hosts=hosts)
    server = await _start(
        nursery, "HTTPS", "--https-port", opts.https_port,
        trionet.https.serve, http_app, opts.https_port, host=opts.host,
        key=files.key, cert=files.cert, on_upgrade=trionet.ws.handler(room.handle),
    )  # fmt: skip
    url = f"https://{_url_host(opts.host)}:{server.port}/"
    ca = files.ca
    return Service(
        "HTTPS + WebSocket",
        server,
        url,
        [f"curl --cacert {ca} {url}hello"],
        [f"the CA certificate is {ca} (trust it in a browser to open {url})"],
    )


#: The services in the order they start; each takes (nursery, options, say, room).
Starter = Callable[[trio.Nursery, Options, Say, ChatRoom], Awaitable[Service]]

STARTERS: list[tuple[str, Starter]] = [
    ("tcp", lambda n, o, s, r: start_tcp(n, o)),
    ("unix", lambda n, o, s, r: start_unix(n, o)),
    ("udp", lambda n, o, s, r: start_udp(n, o, s)),
    ("http", lambda n, o, s, r: start_http(n, o, r)),
    ("https", lambda n, o, s, r: start_https(n, o, r)),
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


async def start_all(
    nursery: trio.Nursery, opts: Options, say: Say, room: ChatRoom
) -> list[Service]:
    """Start the services in :data:`STARTERS` order; the first that fails stops the lot."""
    return [await start(nursery, opts, say, room) for _, start in STARTERS]


# -- running and stopping ------------------------------------------------------------
async def run(opts: Options, say: Say = _say) -> None:
    """Start every service, print the banner, and serve until SIGINT or SIGTERM.

    Raises:
      DemoError: a service could not start (the others are stopped first).
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        room = ChatRoom(say)
        error: DemoError | None = None
        async with trio.open_nursery() as nursery:
            try:
                services = await start_all(nursery, opts, say, room)
            except DemoError as exc:
                error = exc
                nursery.cancel_scope.cancel()
            else:
                say(banner(services))
                signum = await signals.__anext__()
                say(f"\n{signal.Signals(signum).name}: shutting down")
                await shutdown(services, room)
                nursery.cancel_scope.cancel()
        if error is not None:
            raise error


async def shutdown(services: list[Service], room: ChatRoom) -> None:
    """Stop accepting everywhere, say goodbye to the tabs, give live connections a moment."""
    room.close_all()
    for service in services:
        service.server.close()
    with trio.move_on_after(SHUTDOWN_GRACE):
        for service in services:
            await service.server.wait_closed()
