"""``trionet demo`` as a user runs it: a subprocess, poked with real clients.

The demo runs with every port set to 0 (so tests never collide with each other
or with a demo someone left running) and prints, per service, the command to
try it; the tests read those commands back and use them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from trionet._demo import GREETING

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0

# The lines of the banner a user copies; each regex captures what a test needs.
TCP = re.compile(r"\$ nc (\S+) (\d+)$", re.M)
UNIX = re.compile(r"\$ nc -U (\S+)$", re.M)
UDP = re.compile(r"\$ echo hello \| nc -u -w1 (\S+) (\d+)$", re.M)
HTTP = re.compile(r"\$ curl (http://\S+/)hello$", re.M)
HTTPS = re.compile(r"\$ (curl --cacert (\S+) (https://\S+/)hello)$", re.M)


class Demo:
    """A running ``trionet demo`` process, with its output collected line by line."""

    def __init__(self, *args: str) -> None:
        # stderr goes to a file: a pipe nobody reads could fill up and stall the demo.
        self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trionet", "demo", *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 5.0) -> re.Match[str]:
        """Wait until a line of output matches ``pattern``; fail with the output so far."""
        regex = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        with self._changed:
            while (found := regex.search("\n".join(self.lines))) is None:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    pytest.fail(f"no {pattern!r} in the demo's output:\n{self.output_unlocked}")
                self._changed.wait(min(left, 0.1))
        return found

    def find(self, regex: re.Pattern[str]) -> tuple[str, ...]:
        """The groups of the banner line that ``regex`` matches."""
        found = regex.search(self.output)
        if found is None:
            pytest.fail(f"no {regex.pattern!r} in the demo's output:\n{self.output}")
        return found.groups()

    @property
    def output_unlocked(self) -> str:
        return "\n".join(self.lines)

    def stop(self, signum: int = signal.SIGINT) -> tuple[int, float]:
        """Send ``signum``; return the exit status and how long the exit took."""
        start = time.monotonic()
        self.proc.send_signal(signum)
        status = self.proc.wait(timeout=STOP_TIMEOUT + 5)
        self._reader.join(timeout=5)
        return status, time.monotonic() - start

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()


def start_demo(tmp_path: Path, *extra: str) -> Demo:
    demo = Demo(
        "--tcp-port", "0", "--udp-port", "0", "--http-port", "0", "--https-port", "0",
        "--workdir", str(tmp_path), *extra,
    )  # fmt: skip
    demo.wait_for(r"^Press Ctrl-C", timeout=START_TIMEOUT)
    return demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """One demo shared by the tests that only talk to it."""
    running = start_demo(tmp_path_factory.mktemp("demo"))
    yield running
    running.kill()


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


# -- every service answers ---------------------------------------------------------
def test_tcp_greets_then_echoes(demo: Demo) -> None:
    host, port = demo.find(TCP)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        greeting = GREETING.encode()
        assert _receive_exactly(sock, len(greeting)) == greeting
        sock.sendall("你好\n".encode())
        assert _receive_exactly(sock, len("你好\n".encode())).decode() == "你好\n"


def test_unix_socket_greets_then_echoes(demo: Demo) -> None:
    path = demo.find(UNIX)[0]
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(path)
        assert _receive_exactly(sock, len(GREETING.encode())) == GREETING.encode()
        sock.sendall(b"ping")
        assert _receive_exactly(sock, 4) == b"ping"


def test_udp_prints_what_arrives_and_echoes_it(demo: Demo) -> None:
    host, port = demo.find(UDP)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.bind(("127.0.0.1", 0))
        sock.sendto(b"hello", (host, int(port)))
        message, sender = sock.recvfrom(100)
        me = sock.getsockname()
    assert (message, sender) == (b"hello", (host, int(port)))
    demo.wait_for(rf"^udp: server got: hello from {re.escape(me[0])}:{me[1]}$")


def test_http_serves_the_page_and_hello_world(demo: Demo) -> None:
    url = demo.find(HTTP)[0]
    with urllib.request.urlopen(url, timeout=5) as res:
        assert res.headers["Content-Type"] == "text/html; charset=utf-8"
        html = res.read().decode()
    assert "<title>trionet demo</title>" in html
    assert "new WebSocket(" in html
    # Self-contained: no scripts, styles or images from anywhere else.
    assert re.findall(r"""(?:src|href)\s*=""", html) == []
    with urllib.request.urlopen(url + "hello", timeout=5) as res:
        assert res.read() == b"Hello World\n"


def _ws_url(http_url: str) -> str:
    return http_url.replace("http", "ws", 1) + "ws"


def _receive_kind(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """Read messages until one of ``kind`` arrives (welcome and online come first)."""
    while True:
        message: dict[str, Any] = json.loads(ws.recv(timeout=5))
        if message["kind"] == kind:
            return message


def test_websocket_on_the_http_port_echoes(demo: Demo) -> None:
    url = _ws_url(demo.find(HTTP)[0])
    with connect(url, open_timeout=5) as ws:
        assert _receive_kind(ws, "welcome")["name"]
        ws.send(json.dumps({"kind": "echo", "text": "你好"}))
        assert _receive_kind(ws, "echo") == {"kind": "echo", "text": "你好"}
        ws.send("plain text is echoed too")
        assert _receive_kind(ws, "echo")["text"] == "plain text is echoed too"


def test_websocket_chat_reaches_every_tab(demo: Demo) -> None:
    url = _ws_url(demo.find(HTTP)[0])
    with connect(url, open_timeout=5) as alice, connect(url, open_timeout=5) as bob:
        alice_name = _receive_kind(alice, "welcome")["name"]
        _receive_kind(bob, "welcome")
        alice.send(json.dumps({"kind": "chat", "text": "hi all"}))
        expected = {"kind": "chat", "from": alice_name, "text": "hi all"}
        assert _receive_kind(alice, "chat") == expected
        assert _receive_kind(bob, "chat") == expected
    demo.wait_for(rf"^ws: {alice_name}: hi all$")


def test_https_answers_the_printed_curl_command(demo: Demo) -> None:
    command, ca, url = demo.find(HTTPS)
    assert Path(ca).read_text().startswith("-----BEGIN CERTIFICATE-----")
    context = ssl.create_default_context(cafile=ca)
    with urllib.request.urlopen(url + "hello", timeout=5, context=context) as res:
        assert res.read() == b"Hello World\n"
    curl = require_tool("curl", "curl")
    done = subprocess.run(
        [curl, *shlex.split(command)[1:], "--silent", "--show-error", "--max-time", "5"],
        capture_output=True,
        timeout=15,
    )
    assert (done.returncode, done.stdout) == (0, b"Hello World\n"), done.stderr


def test_websocket_over_https_with_the_written_ca(demo: Demo) -> None:
    _, ca, url = demo.find(HTTPS)
    context = ssl.create_default_context(cafile=ca)
    with connect(_ws_url(url), ssl=context, open_timeout=5) as ws:
        ws.send(json.dumps({"kind": "echo", "text": "over TLS"}))
        assert _receive_kind(ws, "echo")["text"] == "over TLS"


def test_https_refuses_a_client_that_does_not_trust_the_ca(demo: Demo) -> None:
    url = demo.find(HTTPS)[2]
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(url + "hello", timeout=5, context=ssl.create_default_context())


def test_host_moves_every_service_to_ipv6_loopback(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    demo = start_demo(tmp_path, "--host", "::1")
    try:
        host, port = demo.find(TCP)
        assert host == "::1"
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            assert _receive_exactly(sock, len(GREETING.encode())) == GREETING.encode()
        host, port = demo.find(UDP)
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(b"v6", (host, int(port)))
            assert sock.recvfrom(100)[0] == b"v6"
        url = demo.find(HTTP)[0]
        assert url.startswith("http://[::1]:")
        with urllib.request.urlopen(url + "hello", timeout=5) as res:
            assert res.read() == b"Hello World\n"
        assert demo.stop()[0] == 0
    finally:
        demo.kill()


# -- stopping ------------------------------------------------------------------------
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_everything_cleanly(tmp_path: Path, signum: int) -> None:
    demo = Demo("--tcp-port", "0", "--udp-port", "0", "--http-port", "0", "--https-port", "0")
    try:
        demo.wait_for(r"^Press Ctrl-C", timeout=START_TIMEOUT)
        workdir = Path(demo.find(UNIX)[0]).parent
        host, port = demo.find(TCP)
        with socket.create_connection((host, int(port)), timeout=5) as idle_client:
            _receive_exactly(idle_client, len(GREETING.encode()))
            status, seconds = demo.stop(signum)
            assert idle_client.recv(100) == b""  # the server hung up on us
    finally:
        demo.kill()
    assert status == 0, demo.stderr()
    assert seconds < STOP_TIMEOUT
    assert demo.lines[-1] == "trionet demo: stopped"
    assert not workdir.exists(), "the temporary directory is removed on exit"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=5)


def test_a_second_sigint_stops_at_once(tmp_path: Path) -> None:
    demo = start_demo(tmp_path, "--grace", "60")
    try:
        host, port = demo.find(TCP)
        # An idle client keeps the TCP server busy through the shutdown grace period.
        with socket.create_connection((host, int(port)), timeout=5):
            demo.proc.send_signal(signal.SIGINT)
            demo.wait_for(r"^SIGINT: shutting down$")
            status, seconds = demo.stop(signal.SIGINT)
    finally:
        demo.kill()
    assert status == 0
    assert "stopping now" in demo.lines
    assert seconds < STOP_TIMEOUT


def test_sigint_says_goodbye_to_open_websockets(tmp_path: Path) -> None:
    demo = start_demo(tmp_path)
    try:
        url = _ws_url(demo.find(HTTP)[0])
        with connect(url, open_timeout=5) as ws:
            _receive_kind(ws, "welcome")
            status, seconds = demo.stop(signal.SIGINT)
            with pytest.raises(ConnectionClosed) as closed:
                _receive_kind(ws, "never")
    finally:
        demo.kill()
    assert closed.value.rcvd is not None
    assert (status, closed.value.rcvd.code) == (0, 1001)
    assert seconds < STOP_TIMEOUT


@pytest.mark.parametrize("verbose", [True, False], ids=["-v", "quiet"])
def test_v_logs_what_the_library_says(tmp_path: Path, verbose: bool) -> None:
    """A plain-text client on the HTTPS port: with -v the failed handshake is logged."""
    demo = start_demo(tmp_path, *(["-v"] if verbose else []))
    try:
        url = demo.find(HTTPS)[2]
        port = int(url.rsplit(":", 1)[1].rstrip("/"))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
            with contextlib.suppress(ConnectionResetError):
                sock.recv(100)  # the server hangs up
        assert demo.stop()[0] == 0
    finally:
        demo.kill()
    logged = re.search(r"INFO trionet[.\w]*: TLS handshake with .* failed", demo.stderr())
    assert bool(logged) == verbose, demo.stderr()


def test_a_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "trionet", "demo", "--tcp-port", str(port),
             "--workdir", str(tmp_path)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"TCP echo: port {port} is already in use" in done.stderr
    assert "--tcp-port" in done.stderr
    assert "Traceback" not in done.stderr


# -- the page in a real browser ----------------------------------------------------------
def chromium_command(tmp_path: Path, *args: str, budget_ms: int | None = 5000) -> list[str]:
    """Headless Chromium with a fresh profile and nothing that phones home.

    ``--virtual-time-budget`` lets the page run that long (in the browser's
    virtual time) before Chromium dumps or draws it; with ``budget_ms=None``
    it dumps or draws once the page's load event fired, in real time.
    """
    chromium = require_tool("chromium", "chromium")
    return [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
        *([] if budget_ms is None else [f"--virtual-time-budget={budget_ms}"]), *args,
    ]  # fmt: skip


ECHOED = re.compile(r'<p id="echo" data-state="echoed">echo: 你好, trionet!')


#: The page's chat list once its own message came back through the room.
CHATTED = re.compile(r"<li><b>(guest \d+)</b>: 大家好</li>")


def dump_dom(
    tmp_path: Path, url: str, *flags: str, until: tuple[re.Pattern[str], ...] = (ECHOED,)
) -> str:
    """The page's DOM once everything in ``until`` shows (more time on a slow machine).

    The echo and the chat broadcast arrive separately: waiting for the echo alone
    let the dump catch the page before the broadcast (about one run in four).
    """
    for budget_ms in (5000, 15000, 30000):
        done = subprocess.run(
            chromium_command(tmp_path, *flags, "--dump-dom", url, budget_ms=budget_ms),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        if all(pattern.search(done.stdout) for pattern in until):
            break
    return done.stdout


def test_the_page_echoes_through_its_websocket_in_chromium(demo: Demo, tmp_path: Path) -> None:
    dom = dump_dom(tmp_path, demo.find(HTTP)[0] + "?say=大家好", until=(ECHOED, CHATTED))
    assert '<span id="status" class="status" data-state="open">open</span>' in dom
    # The page sent 你好 over its WebSocket and wrote the echo into the DOM...
    assert ECHOED.search(dom), dom
    # ...and its chat message came back through the room's broadcast, under the
    # name the room gave this page (found in the DOM: a retry with a longer budget
    # loads the page again, as another guest).
    chatted = CHATTED.search(dom)
    assert chatted, dom
    demo.wait_for(rf"^ws: {chatted.group(1)}: 大家好$")


def test_the_https_page_talks_over_wss_in_chromium(demo: Demo, tmp_path: Path) -> None:
    """Over HTTPS the page opens wss:// to the same port (Chromium told to skip the CA check)."""
    url = demo.find(HTTPS)[2]
    dom = dump_dom(tmp_path, url, "--ignore-certificate-errors")
    assert ECHOED.search(dom), dom


def test_screenshot_of_the_page(demo: Demo, tmp_path: Path) -> None:
    """Chromium draws the page; TRIONET_SCREENSHOT=1 keeps it as docs/demo.png."""
    url = demo.find(HTTP)[0]
    shot = tmp_path / "demo.png"
    done = subprocess.run(
        chromium_command(
            tmp_path,
            "--hide-scrollbars",
            "--window-size=900,560",
            f"--screenshot={shot}",
            url + "?say=大家好",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("TRIONET_SCREENSHOT"):
        shutil.copyfile(shot, ROOT / "docs" / "demo.png")
