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
(``curl --cacert ca.pem``). This module imports without pytest; the fixtures
are defined only when pytest is importable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import trustme

__all__ = ["CertFiles", "write_certs"]

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


@dataclass(frozen=True)
class CertFiles:
    """The paths :func:`write_certs` wrote."""

    #: The CA certificate: pass to ``curl --cacert`` or ``tls.connect(ca=...)``.
    ca: Path
    #: The server certificate chain (PEM) for localhost, 127.0.0.1 and ::1.
    cert: Path
    #: The server's private key (PEM, mode 0600).
    key: Path
    #: A client certificate from the same CA, for mutual TLS (``curl --cert``).
    client_cert: Path
    #: The client certificate's private key (PEM, mode 0600).
    client_key: Path


def write_certs(
    directory: str | os.PathLike[str], *, hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
) -> CertFiles:
    """Write a fresh CA and certificates into ``directory``; returns their paths.

    Writes ``ca.pem``, ``server.pem`` and ``server.key`` (the server
    certificate is issued for ``hosts``), plus ``client.pem`` and
    ``client.key`` for mutual TLS. The directory is created if needed.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert(*hosts)
    client = ca.issue_cert("client.localhost", common_name="client")
    files = CertFiles(
        ca=root / "ca.pem",
        cert=root / "server.pem",
        key=root / "server.key",
        client_cert=root / "client.pem",
        client_key=root / "client.key",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    _write_chain(server, files.cert)
    _write_private(server.private_key_pem.bytes(), files.key)
    _write_chain(client, files.client_cert)
    _write_private(client.private_key_pem.bytes(), files.client_key)
    return files


def _write_chain(leaf: trustme.LeafCert, path: Path) -> None:
    path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))


def _write_private(data: bytes, path: Path) -> None:
    """Write a private key readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
