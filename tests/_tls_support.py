"""Helpers shared by test_tls.py and test_https.py: PEM material and Node peers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
import trustme


@dataclass(frozen=True)
class Identity:
    """A certificate chain and its key as PEM bytes: what key=/cert= take."""

    cert: bytes
    key: bytes

    @classmethod
    def of(cls, leaf: trustme.LeafCert) -> Identity:
        return cls(
            cert=b"".join(blob.bytes() for blob in leaf.cert_chain_pems),
            key=leaf.private_key_pem.bytes(),
        )

    def options(self) -> dict[str, bytes]:
        return {"cert": self.cert, "key": self.key}


@dataclass(frozen=True)
class CertFiles:
    """The fixtures' CA and server certificate on disk, for curl, openssl and Node."""

    ca: Path
    cert: Path
    key: Path


def write_cert_files(directory: Path, ca: trustme.CA, server: trustme.LeafCert) -> CertFiles:
    files = CertFiles(ca=directory / "ca.pem", cert=directory / "server.pem",
                      key=directory / "server.key")
    ca.cert_pem.write_to_path(str(files.ca))
    files.cert.write_bytes(Identity.of(server).cert)
    server.private_key_pem.write_to_path(str(files.key))
    return files


@asynccontextmanager
async def node_server(node: str, script: Path, *args: str) -> AsyncIterator[int]:
    """Run a Node server script that prints ``{"port": N}``; yield the port, then stop it."""
    async with trio.open_nursery() as nursery:
        proc: trio.Process = await nursery.start(
            lambda task_status: trio.run_process(
                [node, str(script), *args],
                stdin=-1, stdout=-1, check=False, task_status=task_status,
            )
        )
        try:
            assert proc.stdout is not None
            line = b""
            with trio.fail_after(10):
                while not line.endswith(b"\n"):
                    chunk = await proc.stdout.receive_some(1)
                    assert chunk, "the Node server exited before listening"
                    line += chunk
            info: dict[str, Any] = json.loads(line)
            yield int(info["port"])
        finally:
            proc.kill()
