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

import errno
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
    #: The server certificate chain (PEM), for the ``hosts`` write_certs was given.
    cert: Path
    #: The server's private key (PEM, mode 0600).
    key: Path
    #: A client certificate from the same CA, for mutual TLS (``curl --cert``).
    client_cert: Path
    #: The client certificate's private key (PEM, mode 0600).
    client_key: Path


#: The names :func:`write_certs` issues the server certificate for by default:
#: what a local client dials (``localhost``, and both loopback addresses).
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


def write_certs(
    directory: str | os.PathLike[str],
    *,
    hosts: tuple[str, ...] = DEFAULT_HOSTS,
    overwrite: bool = True,
) -> CertFiles:
    """Write a fresh CA and certificates into ``directory``; returns their paths.

    Writes ``ca.pem``, ``server.pem`` and ``server.key`` (the server
    certificate is issued for ``hosts``: DNS names, ``*.`` wildcards or IP
    addresses), plus ``client.pem`` and ``client.key`` for mutual TLS. The
    directory is created if needed; keys are readable by their owner only.

    Raises:
      ValueError: a name in ``hosts`` is neither a host name nor an IP address
        (nothing is written).
      FileExistsError: ``overwrite=False`` and some of the files exist already
        (nothing is written; ``filename`` names the first, the message all).
    """
    # Issue first, so a bad name in ``hosts`` leaves no half-written directory.
    ca = trustme.CA()
    server = ca.issue_cert(*hosts)
    client = ca.issue_cert("client.localhost", common_name="client")
    root = Path(directory)
    files = CertFiles(
        ca=root / "ca.pem",
        cert=root / "server.pem",
        key=root / "server.key",
        client_cert=root / "client.pem",
        client_key=root / "client.key",
    )
    contents = [
        (files.ca, ca.cert_pem.bytes(), False),
        (files.cert, _chain(server), False),
        (files.key, server.private_key_pem.bytes(), True),
        (files.client_cert, _chain(client), False),
        (files.client_key, client.private_key_pem.bytes(), True),
    ]
    if not overwrite:
        # Checked for all files before writing any, so a refusal changes nothing;
        # O_EXCL below still refuses a file that appears in the meantime.
        taken = [path for path, _, _ in contents if os.path.lexists(path)]
        if taken:
            names = ", ".join(str(path) for path in taken)
            raise FileExistsError(errno.EEXIST, f"already exists: {names}", str(taken[0]))
    root.mkdir(parents=True, exist_ok=True)
    for path, data, private in contents:
        _write(path, data, private=private, overwrite=overwrite)
    return files


def _chain(leaf: trustme.LeafCert) -> bytes:
    return b"".join(blob.bytes() for blob in leaf.cert_chain_pems)


def _write(path: Path, data: bytes, *, private: bool, overwrite: bool) -> None:
    """Write ``path``; a private key is readable by its owner only, even if it existed."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(path, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        if private:
            os.fchmod(f.fileno(), 0o600)
        f.write(data)
