"""The fixtures of the ``trionet.testing`` pytest plugin (imported only when pytest is).

Kept apart from :mod:`trionet.testing` so that module imports without pytest
(``write_certs`` serves the command line); pytest finds these fixtures because
:mod:`trionet.testing` re-exports them and is registered as a ``pytest11`` plugin.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import pytest
import trio
import trustme

from ._server import Server

__all__ = [
    "ServeFixture",
    "client_ssl_context",
    "serve",
    "server_ssl_context",
    "tls_ca",
    "tls_client_cert",
    "tls_server_cert",
]

#: The names the server certificate is issued for: what a test dials on loopback.
SERVER_IDENTITIES = ("localhost", "127.0.0.1", "::1")


class ServeFixture(Protocol):
    """The ``serve`` fixture: ``server = await serve(trionet.http.serve, app, **kwargs)``."""

    def __call__(
        self, serve_function: Callable[..., Awaitable[None]], handler: Any, **kwargs: Any
    ) -> Awaitable[Server]: ...


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A throwaway certificate authority (``trustme.CA``) trusted by the other fixtures."""
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_server_cert(tls_ca: trustme.CA) -> trustme.LeafCert:
    """A server certificate from ``tls_ca`` for localhost, 127.0.0.1 and ::1."""
    return tls_ca.issue_cert(*SERVER_IDENTITIES)


@pytest.fixture(scope="session")
def tls_client_cert(tls_ca: trustme.CA) -> trustme.LeafCert:
    """A client certificate from ``tls_ca`` (common name ``client``), for mutual TLS."""
    return tls_ca.issue_cert("client.localhost", common_name="client")


@pytest.fixture
def server_ssl_context(tls_server_cert: trustme.LeafCert) -> ssl.SSLContext:
    """A server-side ``ssl.SSLContext`` presenting ``tls_server_cert``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls_server_cert.configure_cert(context)
    return context


@pytest.fixture
def client_ssl_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A client-side ``ssl.SSLContext`` that trusts ``tls_ca`` (hostname checks on)."""
    context = ssl.create_default_context()
    tls_ca.configure_trust(context)
    return context


@pytest.fixture
def serve(nursery: trio.Nursery) -> ServeFixture:
    """Start any trionet ``serve`` on 127.0.0.1, port 0, in the test's nursery.

    ``server = await serve(trionet.http.serve, app, **kwargs)`` returns the
    :class:`~trionet._server.Server`; ``port`` and ``host`` may be overridden
    through ``kwargs``. The server stops when the test ends.
    """

    async def start(
        serve_function: Callable[..., Awaitable[None]], handler: Any, **kwargs: Any
    ) -> Server:
        port = kwargs.pop("port", 0)
        kwargs.setdefault("host", "127.0.0.1")
        server: Server = await nursery.start(
            functools.partial(serve_function, handler, port, **kwargs)
        )
        return server

    return start
