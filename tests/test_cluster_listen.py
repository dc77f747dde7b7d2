"""Listening sockets as a cluster needs them: Unix socket modes, and sockets from a provider.

``mode=`` is for every server's Unix socket (nginx's worker user must be able to
connect: ``connect() ... (13: Permission denied)`` with the default 0755). The
provider is how a cluster worker gets the primary's sockets; here the test
plays the primary in-process.
"""

from __future__ import annotations

import socket as stdlib_socket
import ssl
import stat
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from trionet import asgi, http, https, net, tls, ws
from trionet._listen import ListenSpec, set_listener_provider


async def hello(req: http.Request, res: http.Response) -> None:
    await res.end(b"hello")


async def echo_ws(sock: ws.WebSocket) -> None:
    async for message in sock:
        await sock.send(message)


async def asgi_hello(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


async def net_hello(sock: net.Socket) -> None:
    await sock.send(b"hello")


CA = trustme.CA()
IDENTITY = CA.issue_cert("localhost")
PEM = {"key": IDENTITY.private_key_pem.bytes(), "cert": IDENTITY.cert_chain_pems[0].bytes()}

SERVERS: dict[str, Callable[..., Any]] = {
    "net": partial(net.serve, net_hello),
    "tls": partial(tls.serve, net_hello, **PEM),
    "https": partial(https.serve, hello, **PEM),
    "http": partial(http.serve, hello),
    "ws": partial(ws.serve, echo_ws),
    "asgi": partial(asgi.serve, asgi_hello, lifespan="off"),
}


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("kind", sorted(SERVERS))
async def test_a_unix_socket_gets_the_mode_asked_for(kind: str, tmp_path: Path) -> None:
    path = tmp_path / f"{kind}.sock"
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(SERVERS[kind], path=path, mode=0o660))
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert file_mode(path) == 0o660
        with trio.fail_after(5):
            sock = await net.connect(path=path)
            await sock.aclose()
        await server.aclose()


async def test_http_over_a_unix_socket_with_mode_0o666_answers(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(http.serve, hello, path=path, mode=0o666))
        assert file_mode(path) == 0o666
        with trio.fail_after(5):
            res = await http.request({"socket_path": str(path), "path": "/"}, agent=False)
        assert res.body == b"hello"
        await server.aclose()


async def test_mode_on_a_tcp_port_is_refused() -> None:
    with pytest.raises(ValueError, match="mode is for Unix sockets"):
        await http.serve(hello, 0, host="127.0.0.1", mode=0o660)


@pytest.fixture
def provider_sockets() -> Iterator[list[ListenSpec]]:
    """Route listeners through a provider, as a cluster worker does; the specs it saw."""
    asked: list[ListenSpec] = []
    yield asked
    set_listener_provider(None)


async def test_a_server_takes_its_socket_from_the_provider(
    provider_sockets: list[ListenSpec],
) -> None:
    bound = stdlib_socket.socket()
    bound.bind(("127.0.0.1", 0))
    bound.listen(16)
    port = bound.getsockname()[1]

    async def provider(spec: ListenSpec) -> trio.socket.SocketType:
        provider_sockets.append(spec)
        return trio.socket.from_stdlib_socket(bound.dup())

    set_listener_provider(provider)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(http.serve, hello, 0, host="127.0.0.1", backlog=64))
        assert server.port == port
        with trio.fail_after(5):
            res = await http.request(f"http://127.0.0.1:{port}/", agent=False)
        assert res.body == b"hello"
        await server.aclose()
    assert provider_sockets == [ListenSpec(host="127.0.0.1", port=0, backlog=64)]
    # The provider's socket is still open after the server closed its copy.
    assert bound.getsockname()[1] == port
    bound.close()


async def test_closing_a_server_leaves_an_inherited_unix_socket_file_to_its_owner(
    provider_sockets: list[ListenSpec], tmp_path: Path
) -> None:
    path = tmp_path / "shared.sock"
    owner = stdlib_socket.socket(stdlib_socket.AF_UNIX)
    owner.bind(str(path))
    owner.listen(16)

    async def provider(spec: ListenSpec) -> trio.socket.SocketType:
        provider_sockets.append(spec)
        return trio.socket.from_stdlib_socket(owner.dup())

    set_listener_provider(provider)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(http.serve, hello, path=path, mode=0o660))
        await server.aclose()
    assert provider_sockets == [ListenSpec(path=str(path), mode=0o660)]
    # A worker stopping in a rolling restart must not unlink the primary's
    # socket file: the other workers still serve it.
    assert path.exists()
    with trio.fail_after(5):
        sock = await net.connect(path=path)
        await sock.aclose()
    owner.close()


async def test_tls_over_a_unix_socket_answers(tmp_path: Path) -> None:
    path = tmp_path / "tls.sock"
    context = ssl.create_default_context()
    CA.configure_trust(context)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(SERVERS["tls"], path=path, mode=0o660))
        with trio.fail_after(10):
            stream = trio.SSLStream(
                await trio.open_unix_socket(str(path)), context, server_hostname="localhost"
            )
            await stream.do_handshake()
            assert await stream.receive_some() == b"hello"
            await stream.aclose()
        server.close()
    assert not path.exists()
