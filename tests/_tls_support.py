"""Helpers shared by the TLS tests: PEM material, Node peers, handshakes in memory."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
import trustme
from cryptography import x509
from OpenSSL import SSL


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


# -- handshakes in memory: no sockets, both peers in one thread -------------------------
def load_cert(blob: trustme.Blob) -> x509.Certificate:
    """A trustme PEM blob as a ``cryptography`` certificate."""
    return x509.load_pem_x509_certificate(blob.bytes())


class MemoryPeer:
    """One side of a handshake over memory BIOs: pyOpenSSL's or the stdlib's engine.

    ``step()`` runs the handshake as far as it can and returns the exception
    that ended it, or None while it goes on or once it is done (``done``).
    """

    def __init__(self, engine: SSL.Connection | ssl.SSLObject,
                 incoming: ssl.MemoryBIO | None = None,
                 outgoing: ssl.MemoryBIO | None = None) -> None:
        self.engine = engine
        self.incoming, self.outgoing = incoming, outgoing
        self.done = False
        self.error: Exception | None = None

    @classmethod
    def stdlib(cls, context: ssl.SSLContext, *, server_side: bool,
               server_hostname: str | None = None) -> MemoryPeer:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        engine = context.wrap_bio(incoming, outgoing, server_side=server_side,
                                  server_hostname=server_hostname)
        return cls(engine, incoming, outgoing)

    def step(self) -> None:
        if self.done or self.error is not None:
            return
        try:
            self.engine.do_handshake()
            self.done = True
        except (SSL.WantReadError, ssl.SSLWantReadError):
            pass
        except (SSL.Error, ssl.SSLError) as exc:
            self.error = exc

    def pending(self) -> bytes:
        if isinstance(self.engine, ssl.SSLObject):
            assert self.outgoing is not None
            return self.outgoing.read()
        try:
            return self.engine.bio_read(65536)
        except SSL.WantReadError:
            return b""

    def feed(self, data: bytes) -> None:
        if not data:
            return
        if isinstance(self.engine, ssl.SSLObject):
            assert self.incoming is not None
            self.incoming.write(data)
        else:
            self.engine.bio_write(data)


def memory_handshake(client: MemoryPeer, server: MemoryPeer, *, rounds: int = 10) -> None:
    """Pass the flights between two peers until both are done, one fails, or nothing moves.

    After a failure the alert the failing side queued is still delivered, so
    the other side fails with it (as over a socket).
    """
    for _ in range(rounds):
        client.step()
        server.feed(client.pending())
        server.step()
        client.feed(server.pending())
        client.step()
        if (client.done and server.done) or (client.error and server.error):
            return
        if client.error or server.error:
            server.feed(client.pending())
            server.step()
            client.feed(server.pending())
            client.step()
            return
