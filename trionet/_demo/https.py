"""The chapter's HTTPS server for ``trionet demo``: :func:`.http.http_app` over TLS, private CA.

Certificates are made fresh at each start (:func:`trionet.testing.write_certs`)
into the demo's working directory, and the banner names the CA file so
``curl --cacert`` and a browser can trust it.
"""

from __future__ import annotations

import functools

import trionet

from .http import http_app
from .service import Context, Service, listen, port_option, url_host

__all__ = ["start_https"]


async def start_https(ctx: Context) -> Service:
    """HTTPS on 8443 with a fresh private CA, written where the banner says."""
    from trionet import testing  # late: only the demo and tests need certificates

    host, port = ctx.opts.host, ctx.opts.https_port
    names = tuple(dict.fromkeys(("localhost", "127.0.0.1", "::1", host)))
    files = testing.write_certs(ctx.opts.workdir / "certs", hosts=names)
    serve = functools.partial(
        trionet.https.serve, http_app, port, host=host, key=files.key, cert=files.cert,
        on_upgrade=trionet.ws.handler(ctx.websocket),
    )  # fmt: skip
    server = await listen(ctx, "HTTPS", *port_option("--https-port", port), serve)
    url = f"https://{url_host(host)}:{server.port}/"
    return Service(
        "HTTPS + WebSocket",
        server,
        url,
        [f"curl --cacert {files.ca} {url}hello"],
        [f"the CA certificate is {files.ca} (trust it in a browser to open {url})"],
    )
