"""The fixtures of the ``trionet.testing`` pytest plugin (imported only when pytest is).

Kept apart from :mod:`trionet.testing` so that module imports without pytest
(``write_certs`` serves the command line); pytest finds these fixtures because
:mod:`trionet.testing` re-exports them and is registered as a ``pytest11`` plugin.

Nothing here imports trustme or pytest-trio at module top: pytest loads this
plugin in every run of every project whose environment has trionet, and a
plugin that fails to import stops the whole run. A fixture that needs what is
missing fails its own tests instead, with what to install
(``pytest.fail(..., pytrace=False)``: one line, not a traceback into here).
Rejected: skipping those tests, which would turn a broken environment into a
green run.
"""

from __future__ import annotations

import functools
import importlib.util
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import pytest
import trio

from ._certs import DEFAULT_HOSTS, MissingDependencyError, load_trustme

if TYPE_CHECKING:
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

#: What to install when pytest-trio is missing: ``serve`` needs its ``nursery``.
PYTEST_TRIO_INSTALL = "pip install pytest-trio (or pip install 'trionet[test]')"


class ServeFixture(Protocol):
    """The ``serve`` fixture: ``server = await serve(trionet.http.serve, app, **kwargs)``."""

    def __call__(
        self, serve_function: Callable[..., Awaitable[None]], handler: Any, **kwargs: Any
    ) -> Awaitable[Server]: ...


def _fail(message: str) -> NoReturn:
    """Fail the test being set up with ``message`` alone (no traceback into the plugin)."""
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A throwaway certificate authority (``trustme.CA``) trusted by the other fixtures."""
    try:
        module = load_trustme("the tls_ca fixture")
    except MissingDependencyError as exc:
        missing = str(exc)
    else:
        ca: trustme.CA = module.CA()
        return ca
    _fail(missing)  # outside the except block: no chained tracebacks in the report


@pytest.fixture(scope="session")
def tls_server_cert(tls_ca: trustme.CA) -> trustme.LeafCert:
    """A server certificate from ``tls_ca`` for localhost, 127.0.0.1 and ::1."""
    return tls_ca.issue_cert(*DEFAULT_HOSTS)


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


def _serve(nursery: trio.Nursery) -> ServeFixture:
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


def _serve_needs_pytest_trio() -> ServeFixture:
    """Start any trionet ``serve`` in the test's nursery: needs pytest-trio, missing here."""
    _fail(f"the serve fixture needs pytest-trio (its nursery fixture): {PYTEST_TRIO_INSTALL}")


# Without pytest-trio there is no ``nursery`` fixture to ask for: asking would
# fail with "fixture 'nursery' not found", which does not say what to install.
# find_spec looks the package up without importing it.
serve = pytest.fixture(name="serve")(
    _serve if importlib.util.find_spec("pytest_trio") is not None else _serve_needs_pytest_trio
)
