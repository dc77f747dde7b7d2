"""The docs: every example runs and prints what the page shows, and the site builds.

Each Python example on the site is a file in docs/examples/ that a page shows
in a fenced block titled with its path (```python title="docs/examples/name.py"),
copied exactly: ``python tests/test_docs.py --sync`` copies the files into the
pages after an edit (tests/_docs_sync.py says why copies, not includes). Its
output, when the page shows one, is ``name.txt`` beside it, in a block titled
``output: docs/examples/name.txt``. Ports that vary from run to run are written ``PORT``.
The chapter's complete Node programs shown beside them (docs/examples/node/)
run too, each against its trionet counterpart; the Node fragments (the agent
options, the browser's WebSocket, the upgrade listener) are quoted, not run.
"""

from __future__ import annotations

import importlib.util
import os
import re
import runpy
import shlex
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from _docs_sync import SYNC_COMMAND, blocks, drift, relative, sync_text

import trionet
import trionet.testing
from trionet._cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = sorted((DOCS / "examples").glob("*.py"))
PAGES = sorted(DOCS.rglob("*.md"))

#: How long one example may take; they all talk over loopback and finish in a second.
EXAMPLE_TIMEOUT = 60


def normalize(output: str) -> str:
    """Replace ephemeral port numbers (4-5 digits after a colon) with PORT."""
    return re.sub(r"(?<=:)\d{4,5}\b", "PORT", output)


def fenced_blocks(page: Path) -> list[tuple[str, str]]:
    """``(language, body)`` of each fenced code block on a page."""
    return [(block.language, block.body) for block in blocks(page.read_text().split("\n"))]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_and_prints_what_the_page_shows(example: Path, tmp_path: Path) -> None:
    if example.name.startswith("test_"):
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(example)]
    else:
        command = [sys.executable, str(example)]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # this checkout's trionet
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    expected = example.with_suffix(".txt")
    if expected.exists():
        assert normalize(done.stdout) == expected.read_text()


def shown_files() -> set[Path]:
    """Every file a page shows in a titled block."""
    return {
        block.file
        for page in PAGES
        for block in blocks(page.read_text().split("\n"))
        if block.file is not None
    }


def test_every_example_is_on_a_page() -> None:
    shown = shown_files()
    for example in EXAMPLES:
        assert example in shown, f"{relative(example)} is on no page"
        output = example.with_suffix(".txt")
        if output.exists():
            assert output in shown, f"{relative(output)} is on no page"


def test_the_pages_show_the_examples_exactly() -> None:
    """A block titled with a file's path holds that file, so the pages cannot drift."""
    problems = [problem for page in PAGES for problem in drift(page)]
    assert not problems, (
        "the pages and docs/examples/ differ (edit the example, not the page), "
        f"then run `{SYNC_COMMAND}`:\n" + "\n".join(problems)
    )


def test_python_on_the_pages_comes_from_the_examples() -> None:
    """A ```python block names its file, so no code on the site goes untested."""
    for page in PAGES:
        for block in blocks(page.read_text().split("\n")):
            if block.language in ("python", "py"):
                assert block.file is not None and block.file.parent.name == "examples", (
                    f"{relative(page)}:{block.start + 1}: inline Python; move it to "
                    f"docs/examples/ and title the block with its path:\n{block.body}"
                )


# -- the sync: pure text in, text out ------------------------------------------------
EXAMPLE = DOCS / "examples" / "net_server.py"
OUTPUT = DOCS / "examples" / "net_server.txt"


def test_sync_inlines_an_include_and_names_the_file_in_the_title() -> None:
    page = (
        "Intro.\n\n"
        '```python title="docs/examples/net_server.py"\n--8<-- "net_server.py"\n```\n\n'
        'It prints:\n\n```text\n--8<-- "net_server.txt"\n```\n\n'
        '```js title="Node (ports vary)"\n--8<-- "node/net_server.js"\n```\n'
    )
    synced = sync_text(page)
    node = DOCS / "examples" / "node" / "net_server.js"
    assert synced == (
        f'Intro.\n\n```python title="docs/examples/net_server.py"\n{EXAMPLE.read_text()}```\n\n'
        f'It prints:\n\n```text title="output: docs/examples/net_server.txt"\n'
        f"{OUTPUT.read_text()}```\n\n"
        f'```js title="Node (ports vary): docs/examples/node/net_server.js"\n'
        f"{node.read_text()}```\n"
    )
    assert sync_text(synced) == synced, "a synced page stays as it is"


def test_sync_refreshes_a_block_that_drifted_and_keeps_its_indentation() -> None:
    page = (
        "- a list item:\n\n"
        '    ```text title="output: docs/examples/net_server.txt"\n    old output\n    ```\n'
        "\n```js\nconsole.log('quoted, not a file: left alone')\n```\n"
    )
    indented = "".join(
        f"    {line}" if line.strip() else line for line in OUTPUT.read_text().splitlines(True)
    )
    assert sync_text(page) == (
        "- a list item:\n\n"
        f'    ```text title="output: docs/examples/net_server.txt"\n{indented}    ```\n'
        "\n```js\nconsole.log('quoted, not a file: left alone')\n```\n"
    )


def test_drift_names_the_page_line_and_file(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        '# t\n\n```python title="docs/examples/net_server.py"\nprint("edited")\n```\n\n'
        '```text\n--8<-- "net_server.txt"\n```\n\n'
        '```text title="output: docs/examples/gone.txt"\n```\n'
    )
    assert drift(page) == [
        f"{page}:3: differs from docs/examples/net_server.py",
        f"{page}:7: an include of net_server.txt; inline it",
        f"{page}:11: the title names docs/examples/gone.txt, which does not exist",
    ]


def test_python_in_the_readme_is_from_the_examples() -> None:
    """The README quotes the examples verbatim, so its code runs when they do."""
    sources = [example.read_text() for example in EXAMPLES]
    blocks = [body for language, body in fenced_blocks(ROOT / "README.md") if language == "python"]
    assert blocks
    for body in blocks:
        assert any(body in source for source in sources), f"README block not in an example:\n{body}"


def test_trionet_commands_on_the_pages_parse() -> None:
    """Every ``$ trionet ...`` line in a console block is a valid command line."""
    parser = build_parser()
    seen = 0
    for page in PAGES:
        for language, body in fenced_blocks(page):
            if language != "console":
                continue
            for line in body.splitlines():
                if line.startswith("$ trionet "):
                    parser.parse_args(shlex.split(line)[2:])
                    seen += 1
    assert seen >= 3


def test_the_site_builds_without_warnings(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # Material's banner about its future
    )
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr
    page = (tmp_path / "guide" / "net" / "index.html").read_text()
    assert "欢迎光临《深入浅出Node.js》示例" in page  # the examples are on the page
    assert (tmp_path / "demo.png").exists()
    benchmarks = (tmp_path / "benchmarks" / "index.html").read_text()
    charts = re.findall(r'<img alt="[^"]*" src="../(results/[^"]+\.svg)"', benchmarks)
    assert charts, "the benchmark charts are on the page"
    for chart in charts:
        assert (tmp_path / chart).is_file()
    # Every public attribute of a net.Socket has its entry in the API reference.
    reference = (tmp_path / "reference" / "net" / "index.html").read_text()
    sock = trionet.net.Socket(trio.testing.memory_stream_pair()[0])
    public = {name for name in dir(sock) if not name.startswith("_")}
    missing = {name for name in public if f'id="trionet.net.Socket.{name}"' not in reference}
    assert not missing, f"not in docs/reference/net.md: {sorted(missing)}"
    # The reference lists what the guides point to, and shows the docstrings'
    # Sphinx roles (":func:`trionet.run`") as code, not verbatim.
    for page, names in {
        "cluster": ["run", "is_primary", "worker_id", "ready"],
        "trionet": ["run", "stop", "stopping"],
        "http": ["Request.scheme", "Request.host", "Request.forwarded",
                 "Response.wait_closed", "Response.client_gone"],
    }.items():  # fmt: skip
        text = (tmp_path / "reference" / page / "index.html").read_text()
        module = "trionet" if page == "trionet" else f"trionet.{page}"
        for name in names:
            assert f'id="{module}.{name}"' in text, f"{module}.{name} not in docs/reference"
        roles = re.findall(r":(?:attr|class|data|func|meth|mod):<code>", text)
        assert not roles, f"docs/reference/{page}.md shows Sphinx roles verbatim: {roles[:3]}"


# -- the chapter's Node programs, against trionet ------------------------------------
# The guide shows Node's code from the chapter beside trionet's. The complete
# programs among them live in docs/examples/node/; here each one talks to its
# trionet counterpart, with the chapter's fixed port swapped for a free one.
NODE_EXAMPLES = DOCS / "examples" / "node"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_program(tmp_path: Path, name: str, chapter_port: int, port: int) -> Path:
    """The chapter's Node program ``name`` with its port replaced by ``port``."""
    source = (NODE_EXAMPLES / name).read_text()
    assert str(chapter_port) in source
    path = tmp_path / name
    path.write_text(source.replace(str(chapter_port), str(port)))
    return path


def example(name: str, attribute: str) -> Any:
    """A function from one of the trionet examples (loaded without running its main)."""
    return runpy.run_path(str(DOCS / "examples" / name), run_name="example")[attribute]


class NodeProcess:
    """A running Node program whose output the test waits on."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.output = b""

    async def expect(self, text: str, timeout: float = 10) -> None:
        """Wait until ``text`` has appeared in the program's output."""
        assert self.process.stdout is not None
        with trio.fail_after(timeout):
            while text.encode() not in self.output:
                chunk = await self.process.stdout.receive_some()
                assert chunk, f"node exited before printing {text!r}: {self.output.decode()}"
                self.output += chunk


@asynccontextmanager
async def node_running(
    node: str, script: Path, cwd: Path | None = None
) -> AsyncIterator[NodeProcess]:
    """Run ``node script`` for the block (stdin closed), then kill it."""
    process = await trio.lowlevel.open_process(
        [node, str(script)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=cwd,
    )
    try:
        yield NodeProcess(process)
    finally:
        process.kill()
        await process.wait()


async def wait_listening(port: int) -> None:
    """Node prints 'Server running' before it listens; wait for the port itself."""
    with trio.fail_after(10):
        while True:
            try:
                sock = await trionet.net.connect(port, "127.0.0.1")
            except trionet.ConnectError:
                await trio.sleep(0.05)
                continue
            await sock.aclose()
            return


async def test_node_tcp_server_answers_the_trionet_client(node: str, tmp_path: Path) -> None:
    port = free_port()
    async with node_running(node, node_program(tmp_path, "net_server.js", 8124, port)) as server:
        await server.expect("server bound")
        sock = await trionet.net.connect(port, "127.0.0.1")
        greeting = "欢迎光临《深入浅出Node.js》示例：\n".encode()
        received = b""
        with trio.fail_after(5):
            while len(received) < len(greeting):
                received += await sock.receive()
            assert received == greeting
            await sock.send("world!\r\n")
            assert (await sock.receive()).decode() == "你好"
        await sock.send_eof()
        await server.expect("连接断开")
        await sock.aclose()


async def test_node_tcp_client_talks_to_the_trionet_server(node: str, tmp_path: Path) -> None:
    handler = example("net_server.py", "handler")
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(trionet.net.serve, handler, 0, host="127.0.0.1"))
        script = node_program(tmp_path, "net_client.js", 8124, server.port)
        with trio.fail_after(20):
            done = await trio.run_process([node, str(script)], capture_stdout=True)
        output = done.stdout.decode().splitlines()
        assert output[:2] == ["client connected", "欢迎光临《深入浅出Node.js》示例："]
        assert output[-1] == "client disconnected"
        nursery.cancel_scope.cancel()


async def test_node_unix_echo_answers_the_trionet_client(node: str, tmp_path: Path) -> None:
    path = tmp_path / "echo.sock"
    source = (NODE_EXAMPLES / "net_unix.js").read_text()
    script = tmp_path / "net_unix.js"
    script.write_text(source.replace("/tmp/echo.sock", str(path)))
    async with node_running(node, script):
        with trio.fail_after(10):
            while not path.exists():
                await trio.sleep(0.05)
            sock = await trionet.net.connect(path=path)
            await sock.send("hello through a Unix socket")
            assert await sock.receive() == b"hello through a Unix socket"
        await sock.aclose()


async def test_node_udp_server_prints_a_trionet_datagram(node: str, tmp_path: Path) -> None:
    port = free_port(socket.SOCK_DGRAM)
    script = node_program(tmp_path, "dgram_server.js", 41234, port)
    async with node_running(node, script) as server:
        await server.expect("server listening")
        sock = await trionet.dgram.bind(0, "127.0.0.1")
        await sock.send("深入浅出Node.js", ("127.0.0.1", port))
        await server.expect(f"server got: 深入浅出Node.js from 127.0.0.1:{sock.port}")
        await sock.aclose()


async def test_node_udp_client_reaches_the_trionet_server(node: str, tmp_path: Path) -> None:
    got: list[bytes] = []
    arrived = trio.Event()

    async def on_message(msg: bytes, rinfo: Any, sock: Any) -> None:
        got.append(msg)
        arrived.set()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(trionet.dgram.serve, on_message, 0, host="127.0.0.1"))
        script = node_program(tmp_path, "dgram_client.js", 41234, server.port)
        with trio.fail_after(20):
            await trio.run_process([node, str(script)], capture_stderr=True)
            await arrived.wait()
        assert got == ["深入浅出Node.js".encode()]
        nursery.cancel_scope.cancel()


async def test_node_http_server_answers_a_trionet_request(node: str, tmp_path: Path) -> None:
    port = free_port()
    async with node_running(node, node_program(tmp_path, "http_hello.js", 1337, port)) as server:
        await server.expect("Server running at http://127.0.0.1:")
        await wait_listening(port)
        res = await trionet.http.request(f"http://127.0.0.1:{port}/", agent=False)
        assert (res.status, res.headers["content-type"], res.body) == (
            200,
            "text/plain",
            b"Hello World\n",
        )


async def test_node_http_client_reads_the_trionet_server(node: str, tmp_path: Path) -> None:
    app = example("http_hello.py", "app")
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(trionet.http.serve, app, 0, host="127.0.0.1"))
        script = node_program(tmp_path, "http_client.js", 1334, server.port)
        with trio.fail_after(20):
            done = await trio.run_process([node, str(script)], capture_stdout=True)
        lines = done.stdout.decode().splitlines()
        assert lines[0] == "STATUS: 200"
        assert lines[1].startswith("HEADERS: {") and '"content-type":"text/plain"' in lines[1]
        assert "Hello World" in lines
        nursery.cancel_scope.cancel()


def chapter_keys(directory: Path) -> trionet.testing.CertFiles:
    """Certificates under the names the chapter's Node code reads (./keys/server.crt, ...)."""
    files = trionet.testing.write_certs(directory / "certs")
    keys = directory / "keys"
    keys.mkdir()
    for source, name in [
        (files.key, "server.key"),
        (files.cert, "server.crt"),
        (files.ca, "ca.crt"),
        (files.client_key, "client.key"),
        (files.client_cert, "client.crt"),
    ]:
        (keys / name).write_bytes(source.read_bytes())
    return files


async def test_node_tls_server_accepts_a_trionet_client(node: str, tmp_path: Path) -> None:
    files = chapter_keys(tmp_path)
    port = free_port()
    script = node_program(tmp_path, "tls_server.js", 8000, port)
    async with node_running(node, script, cwd=tmp_path) as server:
        await server.expect("server bound")
        sock = await trionet.tls.connect(
            port, "localhost", key=files.client_key, cert=files.client_cert, ca=files.ca
        )
        with trio.fail_after(5):
            assert await sock.receive() == b"welcome!\n"
            await sock.send("hello over TLS\n")
            assert await sock.receive() == b"hello over TLS\n"
        assert sock.authorized
        await server.expect("server connected authorized")
        await sock.aclose()


async def test_node_tls_client_trusts_the_trionet_server(node: str, tmp_path: Path) -> None:
    files = chapter_keys(tmp_path)
    handler = example("tls_server.py", "handler")
    serve = partial(
        trionet.tls.serve, handler, 0, host="127.0.0.1",
        key=files.key, cert=files.cert, request_cert=True, ca=files.ca,
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve)
        script = node_program(tmp_path, "tls_client.js", 8000, server.port)
        async with node_running(node, script, cwd=tmp_path) as client:
            await client.expect("client connected authorized")
            await client.expect("welcome!")
        nursery.cancel_scope.cancel()


async def test_node_https_server_answers_a_trionet_request(node: str, tmp_path: Path) -> None:
    files = chapter_keys(tmp_path)
    port = free_port()
    script = node_program(tmp_path, "https_server.js", 8000, port)
    async with node_running(node, script, cwd=tmp_path):
        await wait_listening(port)
        res = await trionet.https.request(f"https://localhost:{port}/", ca=files.ca, agent=False)
        assert (res.status, res.body) == (200, b"hello world\n")


async def test_node_https_client_reads_the_trionet_server(node: str, tmp_path: Path) -> None:
    files = chapter_keys(tmp_path)
    app = example("https_hello.py", "app")
    serve = partial(trionet.https.serve, app, 0, host="127.0.0.1", key=files.key, cert=files.cert)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve)
        script = node_program(tmp_path, "https_client.js", 8000, server.port)
        with trio.fail_after(20):
            done = await trio.run_process([node, str(script)], cwd=tmp_path, capture_stdout=True)
        assert done.stdout.decode().splitlines()[0] == "hello world"
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    # python tests/test_docs.py --sync: copy docs/examples/ into the pages (tests/_docs_sync.py).
    from _docs_sync import main

    sys.exit(main(sys.argv[1:]))
