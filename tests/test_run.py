"""``trionet.run(main)``: a program stopped by a signal, as systemd or Ctrl-C stops it.

The programs are real child processes (a script written to ``tmp_path``),
sent real signals; their clients are plain sockets on 127.0.0.1. Every wait
is bounded: a child that does not exit in time is killed and the test fails.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

import trionet

ROOT = Path(__file__).resolve().parents[1]
WAIT = 10.0

# An HTTP server whose app sleeps ?s=SECONDS before answering, run by trionet.run.
PROGRAM = """
import functools, logging, sys, trio, trionet

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

async def app(req, res):
    seconds = float(req.url.partition("?s=")[2] or 0)
    print("request", req.url, flush=True)
    if req.url.startswith("/stop"):
        trionet.stop()
    await trio.sleep(seconds)
    await res.end(b"slept")

async def watch():
    reason = await trionet.stopping()
    print("stopping:", reason, flush=True)

async def main(timeout_word):
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trionet.http.serve, app, 0, host="127.0.0.1")
        server = await nursery.start(serve)
        nursery.start_soon(watch)
        print("port", server.port, flush=True)
        if timeout_word == "raise":
            raise ValueError("main failed on purpose")
        await trio.sleep_forever()

timeout = None if sys.argv[1] in ("none", "raise") else float(sys.argv[1])
trionet.run(main, sys.argv[1], shutdown_timeout=timeout)
"""


class Program:
    """The child process, its stdout lines in a queue and its stderr in a file."""

    def __init__(self, tmp_path: Path, shutdown_timeout: str = "30") -> None:
        script = tmp_path / "program.py"
        script.write_text(PROGRAM)
        self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, str(script), shutdown_timeout],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, prefix: str) -> str:
        """The next stdout line, which must start with ``prefix``."""
        try:
            line = self.lines.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail(f"no {prefix!r} line from the program; stderr:\n{self.stderr()}")
        assert line.startswith(prefix), f"{line!r}; stderr:\n{self.stderr()}"
        return line

    def port(self) -> int:
        return int(self.expect("port ").split()[1])

    def wait(self, timeout: float = WAIT) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the program did not exit within {timeout}s:\n{self.stderr()}")

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def send_request(port: int, path: str) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    client.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return client


def read_all(client: socket.socket) -> bytes:
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    return data


def assert_clean(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert "never awaited" not in stderr, stderr
    assert "ExceptionGroup" not in stderr, stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_lets_the_request_in_flight_finish_then_exits_0(
    tmp_path: Path, signum: signal.Signals
) -> None:
    program = Program(tmp_path)
    try:
        with send_request(program.port(), "/slow?s=2") as client:
            program.expect("request /slow")
            sent_at = time.monotonic()
            program.proc.send_signal(signum)
            program.expect(f"stopping: {signum.name}")
            answer = read_all(client)
        status = program.wait()
    finally:
        program.kill()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    assert b"Connection: close\r\n" in answer
    assert answer.endswith(b"\r\n\r\nslept")
    assert status == 0, program.stderr()
    assert time.monotonic() - sent_at < 2 + 5, "it exits once the request is done, not at 30s"
    stderr = program.stderr()
    assert f"INFO trionet.run: {signum.name}: stopping gracefully (30s)" in stderr
    assert_clean(stderr)


def test_a_second_signal_cuts_a_long_request_short(tmp_path: Path) -> None:
    program = Program(tmp_path)
    try:
        with send_request(program.port(), "/long?s=60") as client:
            program.expect("request /long")
            program.proc.send_signal(signal.SIGINT)
            program.expect("stopping: SIGINT")
            started = time.monotonic()
            program.proc.send_signal(signal.SIGINT)
            status = program.wait()
            answer = read_all(client)
    finally:
        program.kill()
    assert time.monotonic() - started < 5
    assert (status, answer) == (0, b"")
    assert "SIGINT again: cancelling what is left" in program.stderr()
    assert_clean(program.stderr())


def test_the_shutdown_timeout_cancels_what_is_left(tmp_path: Path) -> None:
    program = Program(tmp_path, shutdown_timeout="0.5")
    try:
        with send_request(program.port(), "/long?s=60") as client:
            program.expect("request /long")
            started = time.monotonic()
            program.proc.send_signal(signal.SIGTERM)
            status = program.wait()
            answer = read_all(client)
    finally:
        program.kill()
    assert 0.5 <= time.monotonic() - started < 5
    assert (status, answer) == (0, b"")
    stderr = program.stderr()
    assert "SIGTERM: stopping gracefully (0.5s)" in stderr
    assert "SIGTERM after 0.5s: cancelling 1 connections still open" in stderr
    assert_clean(stderr)


def test_stop_from_a_task_stops_gracefully(tmp_path: Path) -> None:
    program = Program(tmp_path)
    try:
        with send_request(program.port(), "/stop?s=0.5") as client:
            program.expect("request /stop")
            program.expect("stopping: stop()")
            answer = read_all(client)
        status = program.wait()
    finally:
        program.kill()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"slept")
    assert status == 0
    assert "stop(): stopping gracefully (30s)" in program.stderr()
    assert_clean(program.stderr())


def test_an_exception_from_main_comes_out_as_itself(tmp_path: Path) -> None:
    program = Program(tmp_path, shutdown_timeout="raise")
    try:
        status = program.wait()
    finally:
        program.kill()
    stderr = program.stderr()
    assert status == 1
    assert stderr.rstrip().endswith("ValueError: main failed on purpose"), stderr
    assert "ExceptionGroup" not in stderr
    assert "never awaited" not in stderr


async def test_keep_alive_clients_in_a_loop_lose_no_request_to_sigterm(tmp_path: Path) -> None:
    """The issue's measurement, in small: clients that send request after request
    on keep-alive connections, through a SIGTERM. A request may find the port
    closed (a proxy tries the next upstream), but none that was sent is lost."""
    program = Program(tmp_path)
    port = program.port()
    counts = {"answered": 0, "lost": 0, "refused": 0}
    request = b"GET /?s=0 HTTP/1.1\r\nHost: x\r\n\r\n"

    async def client_loop(stop: trio.Event) -> None:
        sock: trio.socket.SocketType | None = None
        while not stop.is_set():
            if sock is None:
                sock = trio.socket.socket()
                try:
                    await sock.connect(("127.0.0.1", port))
                except OSError:
                    counts["refused"] += 1
                    sock.close()
                    sock = None
                    await trio.sleep(0.01)
                    continue
            answer = b""
            try:
                await sock.send(request)
                while not answer.endswith(b"slept") and (chunk := await sock.recv(4096)):
                    answer += chunk
            except OSError:
                pass
            if answer.endswith(b"slept"):
                counts["answered"] += 1
            else:
                counts["lost"] += 1
            if not answer.endswith(b"slept") or b"Connection: close" in answer:
                sock.close()
                sock = None
        if sock is not None:
            sock.close()

    try:
        with trio.fail_after(WAIT):
            stop = trio.Event()
            async with trio.open_nursery() as nursery:
                for _ in range(30):
                    nursery.start_soon(client_loop, stop)
                await trio.sleep(0.5)
                program.proc.send_signal(signal.SIGTERM)
                await trio.sleep(1.5)  # past the stop: the clients find the port closed
                stop.set()
        status = program.wait()
    finally:
        program.kill()
    assert counts["answered"] > 100
    assert counts["refused"] > 0, "the clients ran past the stop"
    assert (counts["lost"], status) == (0, 0), (counts, program.stderr())


# -- in this process ------------------------------------------------------------------
def run_bounded(main: Callable[[], Awaitable[None]], shutdown_timeout: float = 30) -> None:
    """``trionet.run(main)``, failed by a watchdog task if it hangs (it fails the run)."""

    async def watchdog() -> None:
        await trio.sleep(WAIT)
        raise trio.TooSlowError(f"the run did not end within {WAIT}s")

    async def bounded() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watchdog)
            await main()
            nursery.cancel_scope.cancel()

    trionet.run(bounded, shutdown_timeout=shutdown_timeout)


async def _echo(sock: trionet.net.Socket) -> None:
    async for data in sock:
        await sock.send(data)


async def _ignore(data: bytes, rinfo: trionet.dgram.RemoteInfo, sock: object) -> None:
    pass


def test_stop_closes_every_kind_of_server_and_returns() -> None:
    servers: list[trionet.net.Server] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            servers.append(await nursery.start(trionet.net.serve, _echo, 0))
            servers.append(await nursery.start(trionet.dgram.serve, _ignore, 0))
            ws = await nursery.start(trionet.ws.serve, _echo, 0)
            servers.append(ws.http_server)
            # A live TCP connection: the graceful stop waits for it, up to the timeout.
            client = await trionet.net.connect(servers[0].port, "127.0.0.1")
            await client.send(b"hi")
            assert await client.receive() == b"hi"
            trionet.stop()
            trionet.stop()  # again: nothing more
            assert await trionet.stopping() == "stop()"
            await trio.sleep_forever()

    started = time.monotonic()
    run_bounded(main, shutdown_timeout=0.5)
    assert time.monotonic() - started < 5
    assert [repr(s).split()[-3] for s in servers] == ["closed,"] * 3


async def test_stop_outside_trionet_run_says_so() -> None:
    with pytest.raises(RuntimeError, match=r"trionet.stop\(\) works inside trionet.run\(\) only"):
        trionet.stop()
    with pytest.raises(RuntimeError, match=r"trionet.stopping\(\) works inside"):
        await trionet.stopping()


def test_a_server_started_during_the_stop_is_closed_at_once() -> None:
    late: list[trionet.net.Server] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(trionet.net.serve, _echo, 0)
            trionet.stop()
            await trionet.stopping()
            late.append(await nursery.start(trionet.net.serve, _echo, 0))

    started = time.monotonic()
    run_bounded(main)
    assert time.monotonic() - started < 5
    assert repr(late[0]).endswith("closed, 0 connections>")


def test_a_negative_shutdown_timeout_is_a_value_error() -> None:
    async def main() -> None:
        raise AssertionError("main does not run")

    with pytest.raises(ValueError, match="shutdown_timeout must be >= 0 or None, not -1"):
        trionet.run(main, shutdown_timeout=-1)
