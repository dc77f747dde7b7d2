"""The chapter's UDP server for ``trionet demo``: print every datagram, and send it back."""

from __future__ import annotations

import functools
from typing import Literal

import trionet

from .service import Context, Say, Service, listen, port_option, print_line, url_host

__all__ = ["start_udp", "udp_printer"]


def udp_printer(say: Say = print_line) -> trionet.dgram.Handler:
    """A datagram handler that prints what arrives, as the chapter's UDP server, and echoes it."""

    async def handler(
        message: bytes, rinfo: trionet.dgram.RemoteInfo, sock: trionet.dgram.UDPSocket
    ) -> None:
        text = message.decode(errors="replace").rstrip("\n")
        say(f"udp: server got: {text} from {rinfo.address}:{rinfo.port}")
        await sock.send(message, (rinfo.address, rinfo.port))

    return handler


async def start_udp(ctx: Context) -> Service:
    """The chapter's UDP server, printing what arrives (and echoing it)."""
    host, port = ctx.opts.host, ctx.opts.udp_port
    family: Literal["udp4", "udp6"] = "udp6" if ":" in host else "udp4"
    serve = functools.partial(
        trionet.dgram.serve, udp_printer(ctx.say), port, host=host, family=family
    )
    server = await listen(ctx, "UDP", *port_option("--udp-port", port), serve)
    where = f"{url_host(host)}:{server.port}"
    return Service("UDP", server, where, [f"echo hello | nc -u -w1 {host} {server.port}"])
