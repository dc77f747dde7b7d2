"""Helpers for the deployment tests: real nginx, HAProxy and trionet processes.

The configurations are the files that docs/deploy.md shows
(docs/examples/deploy/): a test reads one, replaces the production addresses
(``listen 80;``, ``/run/trionet/app.sock``, ``127.0.0.1:8001``...) with its
own through :func:`fill`, which fails when a string it replaces is gone, so
the page and the tests cannot drift apart. What only the tests need (pid
file, temporary directories, logs under the test's tmp dir, no daemon) is the
small main configuration here, around the page's file.

Every process listens on 127.0.0.1 only, is started per test and is stopped
(then killed) when its ``async with`` block ends, even when the test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio
from conftest import require_tool

import trionet

HOST = "127.0.0.1"
#: Every wait for a process or a peer is bounded by this many seconds.
WAIT = 10.0
ROOT = Path(__file__).resolve().parents[1]
#: The configurations docs/deploy.md shows, which the tests run.
DEPLOY = ROOT / "docs" / "examples" / "deploy"


def free_port() -> int:
    """A port nobody listens on now (nginx and HAProxy cannot be handed a bound socket)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def deploy_file(name: str) -> str:
    """The text of ``docs/examples/deploy/NAME``."""
    return (DEPLOY / name).read_text()


def fill(text: str, replacements: Mapping[str, str]) -> str:
    """``text`` with each key replaced by its value; every key must occur in it."""
    for old, new in replacements.items():
        assert old in text, f"{old!r} is no longer in the configuration: update the test"
        text = text.replace(old, new)
    return text


def python_env() -> dict[str, str]:
    """The environment for a Python child: it imports this checkout's trionet."""
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(paths)}


def sbin_tool(name: str) -> str:
    """A daemon's path: Debian installs them in /usr/sbin, which a user's PATH may lack."""
    sbin = Path("/usr/sbin") / name
    return str(sbin) if sbin.exists() else require_tool(name, name)


async def wait_until_listening(
    port: int | None, proc: trio.Process, log: Path, *, path: Path | None = None
) -> None:
    """Return once ``port`` (or the Unix socket ``path``) accepts; fail if ``proc`` exits."""
    with trio.fail_after(WAIT):
        while True:
            if proc.returncode is not None:
                raise AssertionError(f"exited at start ({proc.returncode}):\n{log.read_text()}")
            try:
                if path is not None:
                    sock = await trionet.net.connect(path=str(path))
                else:
                    sock = await trionet.net.connect(port, HOST)
            except (trionet.ConnectError, OSError):
                await trio.sleep(0.05)
            else:
                await sock.aclose()
                return


@asynccontextmanager
async def running(
    argv: Sequence[str],
    log: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stop: signal.Signals = signal.SIGTERM,
) -> AsyncIterator[trio.Process]:
    """Run ``argv`` with its output in ``log``; at the end ``stop`` it, then kill it."""
    with log.open("wb") as out:
        proc = await trio.lowlevel.open_process(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **(env or {})},
        )
    try:
        yield proc
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.send_signal(stop)
                with trio.move_on_after(WAIT):
                    await proc.wait()
            if proc.returncode is None:
                proc.kill()
                with trio.move_on_after(WAIT):
                    await proc.wait()


@dataclass
class Proxy:
    """A running nginx or HAProxy: where it listens and what it logged."""

    port: int
    log: Path
    proc: trio.Process

    def logged(self) -> str:
        return self.log.read_text(errors="replace")


NGINX_MAIN = """
daemon off;
master_process {master};
worker_processes {workers};
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/site.conf;
}}
"""


@asynccontextmanager
async def nginx(tmp_path: Path, site: str, *, user: str | None = None) -> AsyncIterator[Proxy]:
    """nginx serving ``site`` (a conf.d file whose ``listen 80;`` becomes a free port).

    Without ``user``: one process, no master (it runs as whoever starts it).
    With ``user``: a master and 2 workers that drop to ``user``, as a packaged
    nginx started by root does (its master stops them when it gets SIGTERM).
    """
    binary = sbin_tool("nginx")
    port = free_port()
    (tmp_path / "site.conf").write_text(fill(site, {"listen 80;": f"listen {HOST}:{port};"}))
    config = tmp_path / "nginx.conf"
    config.write_text(
        NGINX_MAIN.format(
            tmp=tmp_path,
            master="on" if user else "off",
            workers=2 if user else 1,
            user=f"user {user};" if user else "",
        )
    )
    log = tmp_path / "error.log"
    argv = [binary, "-p", str(tmp_path), "-c", str(config), "-e", str(log)]
    async with running(argv, tmp_path / "nginx.out") as proc:
        await wait_until_listening(port, proc, log)
        yield Proxy(port, log, proc)


@asynccontextmanager
async def haproxy(tmp_path: Path, config: str, log: Path) -> AsyncIterator[trio.Process]:
    """HAProxy in the foreground (``-db``) with ``config``; its output goes to ``log``."""
    binary = sbin_tool("haproxy")
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    check = subprocess.run(
        [binary, "-c", "-f", str(path)], capture_output=True, text=True, timeout=WAIT
    )
    assert check.returncode == 0, check.stdout + check.stderr
    async with running([binary, "-f", str(path), "-db"], log) as proc:
        yield proc
