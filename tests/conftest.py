"""Shared fixtures and helpers for trionet's tests.

Rules every test follows: only loopback addresses, port 0, every wait bounded
with ``trio.fail_after``, real sockets to real peers (our own client and server,
curl, openssl, Node, the ``websockets`` package).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from _tls_support import Identity

PEERS = Path(__file__).parent / "peers"


def open_fds() -> int:
    """How many file descriptors this process has open now."""
    return len(os.listdir("/proc/self/fd"))


def _apt_install(package: str) -> bool:
    """Install a Debian package when we are root and apt-get exists; True on success."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
    ):
        done = subprocess.run(cmd, env=env, capture_output=True, timeout=600)
        if done.returncode == 0 and cmd[1] == "install":
            return True
    return False


def require_tool(name: str, debian_package: str | None = None) -> str:
    """The path of command ``name``, installing its Debian package if needed, else skip."""
    path = shutil.which(name)
    if path is None and debian_package is not None and _apt_install(debian_package):
        path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {debian_package or name})")
    return path


@pytest.fixture(scope="session")
def node() -> str:
    """The ``node`` executable (tests that need Node skip without it)."""
    return require_tool("node", "nodejs")


@pytest.fixture(scope="session")
def node_peers(node: str) -> Iterator[Path]:
    """``tests/peers`` with its npm packages installed (``ws``), for Node peer scripts."""
    npm = require_tool("npm", "npm")
    if (PEERS / "package.json").exists() and not (PEERS / "node_modules").exists():
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent"],
            cwd=PEERS,
            capture_output=True,
            timeout=300,
        )
        if done.returncode != 0:
            pytest.skip(f"npm install failed: {done.stderr.decode(errors='replace')[-500:]}")
    yield PEERS


@contextlib.asynccontextmanager
async def node_process(node: str, script: str, *args: str) -> AsyncIterator[Any]:
    """Run a Node peer script; yields the JSON it prints on its first line.

    The script exits when its stdin closes; it is killed if it lingers.
    """
    proc = await trio.lowlevel.open_process(
        [node, str(PEERS / script), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = b""
        with trio.fail_after(10):
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some()
                assert chunk, f"{script} exited before printing its address"
                line += chunk
        yield json.loads(line)
    finally:
        with trio.CancelScope(shield=True):
            assert proc.stdin is not None
            await proc.stdin.aclose()
            with trio.move_on_after(5):
                await proc.wait()
            proc.kill()
            await proc.wait()


async def silent_peer(nursery: trio.Nursery) -> tuple[int, list[bytes]]:
    """A TCP server on 127.0.0.1 that reads but never answers: a handshake hangs on it.

    Returns its port and, per connection, what it read before the client
    closed (so a test can see the client gave up and closed its socket).
    """
    seen: list[bytes] = []

    async def swallow(stream: trio.SocketStream) -> None:
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
        seen.append(data)

    listeners = await nursery.start(functools.partial(trio.serve_tcp, swallow, 0, host="127.0.0.1"))
    return listeners[0].socket.getsockname()[1], seen


# -- TLS material from the plugin's CA (tls_ca, tls_server_cert) ------------------------
@pytest.fixture
def server_identity(tls_server_cert: trustme.LeafCert) -> Identity:
    """The server certificate chain and key as PEM bytes: what key=/cert= take."""
    return Identity.of(tls_server_cert)


@pytest.fixture
def ca_pem(tls_ca: trustme.CA) -> bytes:
    """The test CA's certificate as PEM bytes: what ca= takes."""
    return tls_ca.cert_pem.bytes()
