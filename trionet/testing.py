"""trionet.testing: trustme certificates and servers for tests, as a pytest plugin.

Installed with trionet and registered through the ``pytest11`` entry point, so
every project that installs trionet gets these fixtures without a conftest:

- ``tls_ca``: a throwaway ``trustme.CA``;
- ``tls_server_cert``: issued by it for ``localhost``, ``127.0.0.1`` and ``::1``;
- ``tls_client_cert``: issued by it for mutual TLS;
- ``server_ssl_context`` / ``client_ssl_context``: ``ssl.SSLContext`` objects
  built from them (the client one trusts ``tls_ca``);
- ``serve``: ``server = await serve(trionet.http.serve, app)`` starts any
  trionet ``serve`` on 127.0.0.1 port 0 in the test's nursery (pytest-trio).

    async def test_hello(serve, server_ssl_context, tls_ca):
        server = await serve(trionet.https.serve, app, ssl_context=server_ssl_context)
        res = await trionet.https.request(
            f"https://localhost:{server.port}/", ca=tls_ca.cert_pem.bytes()
        )

:func:`write_certs` writes the same kind of files for command-line use
(``curl --cacert ca.pem``).

Because pytest imports this module in every run of every project that has
trionet installed, it imports only trionet and pytest at its top: trustme is
imported when a certificate fixture or :func:`write_certs` is used, and
pytest-trio is only looked for (``serve`` needs its ``nursery``). Without
them, the tests that use those fixtures fail with what to install, and every
other test runs as if the plugin were not there. This module also imports
without pytest (the command line uses :func:`write_certs`); the fixtures are
defined only when pytest is importable.
"""

from __future__ import annotations

from ._certs import DEFAULT_HOSTS as DEFAULT_HOSTS
from ._certs import CertFiles as CertFiles
from ._certs import MissingDependencyError as MissingDependencyError
from ._certs import write_certs as write_certs

__all__ = ["DEFAULT_HOSTS", "CertFiles", "MissingDependencyError", "write_certs"]

try:
    from ._testing_plugin import ServeFixture as ServeFixture
    from ._testing_plugin import client_ssl_context as client_ssl_context
    from ._testing_plugin import serve as serve
    from ._testing_plugin import server_ssl_context as server_ssl_context
    from ._testing_plugin import tls_ca as tls_ca
    from ._testing_plugin import tls_client_cert as tls_client_cert
    from ._testing_plugin import tls_server_cert as tls_server_cert
except ImportError as exc:  # pragma: no cover - only without pytest
    if exc.name not in ("pytest", "_pytest"):
        raise
else:
    from ._testing_plugin import __all__ as _fixture_names

    __all__ += _fixture_names
