"""The chapter's HTTP server for ``trionet demo``: the page, "Hello World", and its WebSocket.

:func:`http_app` is shared with :mod:`.https`, which serves the same app over
TLS. The page is package data (``index.html`` beside this file, listed in
pyproject's ``package-data`` as ``_demo/*``), read once through
:mod:`importlib.resources` so it is found in a wheel as well as in a checkout.
"""

from __future__ import annotations

import functools
import importlib.resources

import trionet

from .service import Context, Service, listen, port_option, url_host

__all__ = ["http_app", "page", "start_http"]


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


async def start_http(ctx: Context) -> Service:
    """HTTP on 1337: the page, "Hello World", and the page's WebSocket on the same port."""
    host, port = ctx.opts.host, ctx.opts.http_port
    on_upgrade = trionet.ws.handler(ctx.websocket)
    serve = functools.partial(trionet.http.serve, http_app, port, host=host, on_upgrade=on_upgrade)
    server = await listen(ctx, "HTTP", *port_option("--http-port", port), serve)
    url = f"http://{url_host(host)}:{server.port}/"
    return Service(
        "HTTP + WebSocket",
        server,
        url,
        [f"curl {url}hello"],
        [f"open {url} in a browser: WebSocket echo, and a chat between tabs"],
    )
