"""The chapter's TCP server for ``trionet demo``: a greeting, then an echo (also on a Unix socket).

One handler, :func:`tcp_echo`, serves both listeners: the Unix socket is the
same example reached through a path instead of a port.
"""

from __future__ import annotations

import functools

import trionet

from .service import Context, Service, listen, port_option, url_host

__all__ = ["GREETING", "start_tcp", "start_unix", "tcp_echo"]

#: What the chapter's TCP server says first.
GREETING = "欢迎光临《深入浅出Node.js》示例：\n"


async def tcp_echo(sock: trionet.net.Socket) -> None:
    """Greet, then send back everything the peer sends until it hangs up."""
    await sock.send(GREETING)
    await trionet.net.pipe(sock, sock)


async def start_tcp(ctx: Context) -> Service:
    """The chapter's TCP server: greeting plus echo."""
    host, port = ctx.opts.host, ctx.opts.tcp_port
    serve = functools.partial(trionet.net.serve, tcp_echo, port, host=host)
    server = await listen(ctx, "TCP echo", *port_option("--tcp-port", port), serve)
    where = f"{url_host(host)}:{server.port}"
    return Service("TCP echo", server, where, [f"nc {host} {server.port}"])


async def start_unix(ctx: Context) -> Service:
    """The same echo on a Unix socket in the demo's temporary directory."""
    path = str(ctx.opts.unix_path)
    serve = functools.partial(trionet.net.serve, tcp_echo, path=path)
    server = await listen(ctx, "Unix echo", path, "--workdir", serve)
    return Service("Unix echo", server, path, [f"nc -U {path}"])
