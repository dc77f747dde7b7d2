"""Interop with independent WebSocket implementations, both directions.

* Node's ``ws`` (npm) as a client of our server and as a server for our client
  (tests/peers/ws_client.js and ws_server.js);
* the ``websockets`` package (an independent Python implementation) as a client,
  with and without permessage-deflate.
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from trionet import ws


async def echo(sock: ws.WebSocket) -> None:
    async for message in sock:
        await sock.send("yakexi" if message == "hello world!" else message)


async def start(nursery: trio.Nursery, **options: Any) -> Any:
    serve = functools.partial(ws.serve, echo, 0, host="127.0.0.1", **options)
    return await nursery.start(serve)


# -- Node ws as the client -----------------------------------------------------------


@pytest.mark.parametrize("compression", [False, True], ids=["plain", "deflate"])
async def test_node_ws_client_talks_to_our_server(
    nursery: trio.Nursery, node: str, node_peers: Path, compression: bool
) -> None:
    server = await start(nursery, subprotocols=["superchat", "chat"], compression=compression)
    url = f"ws://127.0.0.1:{server.port}/interop"
    with trio.fail_after(20):
        done = await trio.run_process(
            [node, str(node_peers / "ws_client.js"), "interop", url],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    seen = json.loads(done.stdout)
    assert seen["protocol"] == "superchat"
    assert ("permessage-deflate" in seen["extensions"]) is compression
    assert seen["seed"] == "yakexi"
    assert seen["binary"] is True
    assert seen["text"] == "héllo ✓ ünïcode"
    assert seen["pong"] == "are you there"
    assert seen["close"] == [1000, "bye"]


# -- Node ws as the server -----------------------------------------------------------


@pytest.fixture
async def node_server(node: str, node_peers: Path) -> AsyncIterator[Any]:
    """Start tests/peers/ws_server.js; yields a function making its URL."""

    async def start_node(*flags: str) -> str:
        proc = await trio.lowlevel.open_process(
            [node, str(node_peers / "ws_server.js"), "0", *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        processes.append(proc)
        assert proc.stdout is not None
        line = b""
        with trio.fail_after(10):
            while not line.endswith(b"\n"):
                line += await proc.stdout.receive_some(1)
        return f"ws://127.0.0.1:{int(line.split()[1])}"

    processes: list[trio.Process] = []
    yield start_node
    for proc in processes:
        proc.kill()
        await proc.wait()


async def test_our_client_talks_to_node_ws(node_server: Any) -> None:
    base = await node_server()
    with trio.fail_after(10):
        async with ws.connect(f"{base}/some/path?x=1", subprotocols=["chat"]) as client:
            assert client.subprotocol == "chat"
            await client.send("hello world!")
            assert await client.receive() == "yakexi"
            await client.send("path")
            assert await client.receive() == "/some/path?x=1"
            payload = bytes(range(256)) * 1000
            await client.send(payload)
            assert await client.receive() == payload
            await client.ping(b"ping from trionet")
            assert await client.receive() == "ping:ping from trionet"
            await client.send("close:4001:bye")
            with pytest.raises(ws.ConnectionClosed) as closed:
                await client.receive()
    assert (closed.value.code, closed.value.reason) == (4001, "bye")


async def test_our_client_compresses_with_node_ws(node_server: Any) -> None:
    base = await node_server("--deflate")
    text = "compress me please " * 5000
    with trio.fail_after(10):
        async with ws.connect(base, compression=True) as client:
            assert [e.name for e in client.extensions] == ["permessage-deflate"]
            for _ in range(3):  # context takeover across messages
                await client.send(text)
                assert await client.receive() == text
            assert client.socket.bytes_written < len(text)


async def test_our_client_closes_normally_with_node_ws(node_server: Any) -> None:
    base = await node_server()
    with trio.fail_after(10):
        async with ws.connect(base) as client:
            await client.send("hi")
            assert await client.receive() == "hi"
        assert client.close_code == 1000


# -- websockets as the client --------------------------------------------------------


def websockets_client(url: str, compression: str | None) -> dict[str, Any]:
    """A blocking session with websockets' sync client (run in a thread)."""
    from websockets.sync.client import connect

    seen: dict[str, Any] = {}
    with connect(url, subprotocols=["chat"], compression=compression, max_size=None) as conn:
        seen["subprotocol"] = conn.subprotocol
        conn.send("hello world!")
        seen["seed"] = conn.recv(timeout=5)
        big = b"\x01\x02" * 300_000
        conn.send(big)
        seen["binary"] = conn.recv(timeout=5) == big
        conn.send(["frag", "mented ", "text"])
        seen["fragmented"] = conn.recv(timeout=5)
        conn.ping(b"hi").wait(5)
        seen["pong"] = True
        conn.close(1000, "done")
        seen["close"] = (conn.close_code, conn.close_reason)
    return seen


@pytest.mark.parametrize("compression", [None, "deflate"], ids=["plain", "deflate"])
async def test_websockets_client_talks_to_our_server(
    nursery: trio.Nursery, compression: str | None
) -> None:
    server = await start(nursery, subprotocols=["chat"], compression=compression is not None)
    url = f"ws://127.0.0.1:{server.port}/"
    with trio.fail_after(20):
        seen = await trio.to_thread.run_sync(websockets_client, url, compression)
    assert seen == {
        "subprotocol": "chat",
        "seed": "yakexi",
        "binary": True,
        "fragmented": "fragmented text",
        "pong": True,
        "close": (1000, "done"),
    }
