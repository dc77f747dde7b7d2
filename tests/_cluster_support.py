"""Running a trionet.cluster program as a real process tree in tests, and cleaning it up."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import trio

import trionet

REPO = Path(trionet.__file__).resolve().parent.parent

#: A cluster of HTTP workers on 127.0.0.1: ``python app.py PORT WORKERS [fail]``.
#: Each worker prints "worker ID pid PID port PORT" once it listens; the
#: response names the worker; /slow?s=N answers after N seconds.
APP = '''
import functools, logging, os, sys
import trio
from trionet import cluster, http

logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")

async def app(req, res):
    if req.path == "/slow":
        await trio.sleep(float(req.query["s"][0]))
    body = await req.read()
    await res.end(f"worker {cluster.worker_id} pid {os.getpid()} got {len(body)}".encode())

async def main(port, fail):
    if fail:
        raise RuntimeError("this worker cannot start")
    async with trio.open_nursery() as nursery:
        server = await nursery.start(functools.partial(http.serve, app, port, host="127.0.0.1"))
        print(f"worker {cluster.worker_id} pid {os.getpid()} port {server.port}", flush=True)

port, workers = int(sys.argv[1]), int(sys.argv[2])
cluster.run(main, port, len(sys.argv) > 3, workers=workers, shutdown_timeout=10)
'''

# APP's line, and ``trionet serve --workers``'s "worker 1 (pid 123) on unix:/path".
_WORKER_LINE = re.compile(r"worker (\d+) \(?pid (\d+)\)? (?:port|on) (\S+)$", re.M)


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


class ClusterProcess:
    """One primary started from a script; its output collected in files."""

    def __init__(self, tmp_path: Path, args: list[str], script: str = APP) -> None:
        self.tmp_path = tmp_path
        path = tmp_path / "app.py"
        path.write_text(script)
        self.out_path = tmp_path / "out.txt"
        self._out = open(self.out_path, "wb")  # noqa: SIM115 (closed by cleanup())
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        command = args if args[:1] == ["-m"] else [str(path), *args]
        self.proc = subprocess.Popen(
            [sys.executable, *command],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=env,
        )
        self.seen_pids: set[int] = set()

    @property
    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def workers(self) -> dict[int, tuple[int, str]]:
        """Every worker that ever listened: id -> (pid, port or address)."""
        found = {int(m[1]): (int(m[2]), m[3]) for m in _WORKER_LINE.finditer(self.output)}
        self.seen_pids.update(pid for pid, _ in found.values())
        return found

    def live_workers(self) -> dict[int, int]:
        """The workers listening now: id -> pid."""
        return {wid: pid for wid, (pid, _) in self.workers().items() if alive(pid)}

    async def wait_for(
        self, what: Callable[[], object], timeout: float, poll: float = 0.05
    ) -> None:
        with trio.fail_after(timeout):
            while not what():
                self.seen_pids.update(children(self.proc.pid))
                await trio.sleep(poll)

    async def wait_for_workers(self, count: int, timeout: float = 20) -> dict[int, int]:
        await self.wait_for(lambda: len(self.live_workers()) >= count, timeout)
        return self.live_workers()

    @property
    def port(self) -> int:
        ports = {port for _, port in self.workers().values()}
        assert len(ports) == 1, ports
        return int(ports.pop())

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    async def wait_exit(self, timeout: float) -> int:
        with trio.fail_after(timeout):
            while self.proc.poll() is None:
                await trio.sleep(0.05)
        return self.proc.returncode

    def cleanup(self) -> None:
        """Kill the primary and every worker it had, whatever state the test left."""
        self.workers()
        if self.proc.poll() is None:
            self.seen_pids.update(children(self.proc.pid))
            self.proc.kill()
            self.proc.wait(10)
        for pid in self.seen_pids:
            if alive(pid) and self._is_ours(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._out.close()

    def _is_ours(self, pid: int) -> bool:
        """A worker of this primary (not a process that reused a dead worker's pid)."""
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            return False
        return f"TRIONET_CLUSTER_PRIMARY_PID={self.proc.pid}".encode() in environ
