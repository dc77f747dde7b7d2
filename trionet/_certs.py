"""Throwaway certificates: :func:`write_certs` and the one place that imports trustme.

trustme is imported here, late, by :func:`load_trustme`, and nowhere at module
top. The reason is the pytest plugin: ``trionet.testing`` is registered
through the ``pytest11`` entry point, so pytest imports it in *every* run of
every project whose environment has trionet installed, tests of trionet or
not. A module-top ``import trustme`` there meant that an environment where
trustme cannot be imported (installed with ``--no-deps``, a distribution
package that split it out, a cryptography build that fails to load) could not
run pytest at all, with a traceback about a module the user never asked for.
Imported late, a missing trustme costs only what needs it: a certificate
fixture fails with the line below, ``trionet certs`` says the same.

trustme stays a dependency of trionet (rather than moving to the ``test``
extra): ``trionet certs`` and the HTTPS part of ``trionet demo`` need it, and
those commands are meant to work right after ``pip install trionet``. It is a
small pure-Python package over cryptography, which trionet requires anyway
(pyOpenSSL). Rejected: moving it to an extra with a message in each command,
which would save one small package and cost a failed first run of the demo.
"""

from __future__ import annotations

import errno
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import trustme

__all__ = ["DEFAULT_HOSTS", "CertFiles", "MissingDependencyError", "load_trustme", "write_certs"]

#: What to install when trustme cannot be imported: trionet depends on it, and
#: the ``test`` extra brings pytest-trio beside it.
TRUSTME_INSTALL = "pip install trustme (or pip install 'trionet[test]')"


class MissingDependencyError(ImportError):
    """A package trionet's testing helpers need cannot be imported; the message says what
    to install. An ``ImportError``, so code that guards an optional import still works."""


def load_trustme(needed_by: str) -> ModuleType:
    """Import trustme, or raise :class:`MissingDependencyError` naming ``needed_by``.

    Raises:
      MissingDependencyError: trustme is not installed or fails to import.
    """
    try:
        return importlib.import_module("trustme")
    except ImportError as exc:
        raise MissingDependencyError(
            f"{needed_by} needs trustme, which cannot be imported here ({exc}); "
            f"install it: {TRUSTME_INSTALL}",
            name="trustme",
        ) from exc


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
      MissingDependencyError: trustme cannot be imported (nothing is written).
    """
    ca_class: type[trustme.CA] = load_trustme("trionet.testing.write_certs").CA
    # Issue first, so a bad name in ``hosts`` leaves no half-written directory.
    ca = ca_class()
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
