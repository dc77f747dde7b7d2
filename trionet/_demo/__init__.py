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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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


@functools.cache
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


@dataclass
class _Context:
    """What every service's start function needs."""

    nursery: trio.Nursery
    opts: Options
    say: Say
    room: ChatRoom


async def _start(
    ctx: _Context, name: str, where: str, option: str, serve: Callable[..., Awaitable[None]]
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


def _port_option(option: str, port: int) -> tuple[str, str]:
    return f"port {port}", f"{option} (0 picks a free one)"


async def start_tcp(ctx: _Context) -> Service:
    """The chapter's TCP server: greeting plus echo."""
    host, port = ctx.opts.host, ctx.opts.tcp_port
    serve = functools.partial(trionet.net.serve, tcp_echo, port, host=host)
    server = await _start(ctx, "TCP echo", *_port_option("--tcp-port", port), serve)
    where = f"{_url_host(host)}:{server.port}"
    return Service("TCP echo", server, where, [f"nc {host} {server.port}"])


async def start_unix(ctx: _Context) -> Service:
    """The same echo on a Unix socket in the demo's temporary directory."""
    path = str(ctx.opts.unix_path)
    serve = functools.partial(trionet.net.serve, tcp_echo, path=path)
    server = await _start(ctx, "Unix echo", path, "--workdir", serve)
    return Service("Unix echo", server, path, [f"nc -U {path}"])


async def start_udp(ctx: _Context) -> Service:
    """The chapter's UDP server, printing what arrives (and echoing it)."""
    host, port = ctx.opts.host, ctx.opts.udp_port
    family: Literal["udp4", "udp6"] = "udp6" if ":" in host else "udp4"
    serve = functools.partial(
        trionet.dgram.serve, udp_printer(ctx.say), port, host=host, family=family
    )
    server = await _start(ctx, "UDP", *_port_option("--udp-port", port), serve)
    where = f"{_url_host(host)}:{server.port}"
    return Service("UDP", server, where, [f"echo hello | nc -u -w1 {host} {server.port}"])


async def start_http(ctx: _Context) -> Service:
    """HTTP on 1337: the page, "Hello World", and the page's WebSocket on the same port."""
    host, port = ctx.opts.host, ctx.opts.http_port
    on_upgrade = trionet.ws.handler(ctx.room.handle)
    serve = functools.partial(trionet.http.serve, http_app, port, host=host, on_upgrade=on_upgrade)
    server = await _start(ctx, "HTTP", *_port_option("--http-port", port), serve)
    url = f"http://{_url_host(host)}:{server.port}/"
    return Service(
        "HTTP + WebSocket",
        server,
        url,
        [f"curl {url}hello"],
        [f"open {url} in a browser: WebSocket echo, and a chat between tabs"],
    )


async def start_https(ctx: _Context) -> Service:
    """HTTPS on 8443 with a fresh private CA, written where the banner says."""
    from trionet import testing  # late: only the demo and tests need certificates

    host, port = ctx.opts.host, ctx.opts.https_port
    names = tuple(dict.fromkeys(("localhost", "127.0.0.1", "::1", host)))
    files = testing.write_certs(ctx.opts.workdir / "certs", hosts=names)
    serve = functools.partial(
        trionet.https.serve, http_app, port, host=host, key=files.key, cert=files.cert,
        on_upgrade=trionet.ws.handler(ctx.room.handle),
    )  # fmt: skip
    server = await _start(ctx, "HTTPS", *_port_option("--https-port", port), serve)
    url = f"https://{_url_host(host)}:{server.port}/"
    return Service(
        "HTTPS + WebSocket",
        server,
        url,
        [f"curl --cacert {files.ca} {url}hello"],
        [f"the CA certificate is {files.ca} (trust it in a browser to open {url})"],
    )


#: The services, in the order they start.
STARTERS: list[Callable[[_Context], Awaitable[Service]]] = [
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


async def start_all(ctx: _Context) -> list[Service]:
    """Start the services in :data:`STARTERS` order; the first that fails stops the lot."""
    return [await start(ctx) for start in STARTERS]


# -- running and stopping ------------------------------------------------------------
async def run(opts: Options, say: Say = _say) -> None:
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
                services = await start_all(_Context(nursery, opts, say, room))
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
