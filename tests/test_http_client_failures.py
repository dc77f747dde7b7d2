"""How trionet.http.request fails, and when it doesn't: real peers on loopback.

- A server that answers before it has read the upload (a ``413``), then closes,
  resets or just stops reading: the client returns that response, as curl and
  Node do, instead of the send error.
- A server that resets without answering: :class:`trionet.ConnectionLost`.
- A response with both Content-Length and Transfer-Encoding:
  :class:`trionet.ProtocolError`, and the connection is not reused.
- ``max_body_size``: :class:`trionet.MessageSizeError`, pointing to ``stream()``.
- Every error the client raises is exported from ``trionet`` and
  ``trionet.http`` and named in ``request``'s docstring.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
import trio
from _tls_support import Identity
from http_client_support import read_head, serve_raw

import trionet
from trionet import http
from trionet.agent import Agent
from trionet.testing import ServeFixture

#: Bigger than what loopback's kernel buffers take at once (megabytes), so the
#: server's answer arrives while the upload is still going out.
BIG = 8 * 1024 * 1024

#: The early answer of the servers below.
TOO_LARGE = (
    b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\n"
    b"too large"
)


def url(port: int, path: str = "/") -> str:
    return f"http://127.0.0.1:{port}{path}"


class Accepts:
    """Counts a raw server's connections."""

    def __init__(self) -> None:
        self.count = 0


async def answer_early_then(after: str, sock: trionet.net.Socket) -> None:
    """Read the head, answer 413, then read a little and close (RST: data unread),
    or stop reading and keep the connection open."""
    await read_head(sock)
    await sock.send(TOO_LARGE)
    received = 0
    while received < 100_000:
        data = await sock.receive()
        if not data:
            return
        received += len(data)
    if after == "stall":
        await trio.sleep_forever()
    await sock.aclose()


async def chunks(count: int, sent: list[int]) -> AsyncIterator[bytes]:
    """``count`` chunks of 1 MiB, counting in ``sent`` how many went out."""
    piece = b"x" * (1024 * 1024)
    for _ in range(count):
        yield piece
        sent[0] += 1


# -- the response the server already sent -------------------------------------------------------
@pytest.mark.parametrize("after", ["close", "stall"])
async def test_early_413_during_an_upload_is_returned(after: str) -> None:
    agent = Agent()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, partial(answer_early_then, after))
            res = await http.request(url(port), method="POST", body=b"x" * BIG, agent=agent)
            assert (res.status, res.reason, res.body) == (413, "Payload Too Large", b"too large")
            assert agent.sockets == {} and agent.free_sockets == {}  # never reused
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("after", ["close", "stall"])
async def test_early_413_stops_a_streamed_upload(after: str) -> None:
    sent = [0]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, partial(answer_early_then, after))
            res = await http.request(
                url(port), method="PUT", body=chunks(256, sent), agent=Agent()
            )
            assert res.status == 413 and res.body == b"too large"
            assert sent[0] < 256  # the upload stopped when the answer came
            nursery.cancel_scope.cancel()


async def test_early_2xx_lets_the_upload_finish() -> None:
    """A success sent early (a server that streams its reply) does not cut the body short."""
    got = trio.Event()
    received = [0]

    async def ok_then_read_all(sock: trionet.net.Socket) -> None:
        head = await read_head(sock)
        received[0] = len(head) - head.index(b"\r\n\r\n") - 4
        await sock.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        while received[0] < BIG and (data := await sock.receive()):
            received[0] += len(data)
        got.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, ok_then_read_all)
            res = await http.request(url(port), method="POST", body=b"x" * BIG, agent=Agent())
            assert (res.status, res.body) == (200, b"ok")
            await got.wait()
            assert received[0] == BIG
            nursery.cancel_scope.cancel()


async def echo_length(req: http.Request, res: http.Response) -> None:
    await res.end(str(len(await req.read())).encode())


async def test_trionet_server_over_its_limit_answers_413_to_the_client(
    serve: ServeFixture,
) -> None:
    server = await serve(http.serve, echo_length, max_body_size=1024)
    with trio.fail_after(10):
        res = await http.request(url(server.port), method="POST", body=b"x" * BIG, agent=Agent())
        assert res.status == 413
        res = await http.request(url(server.port), method="POST", body=b"x" * 1024, agent=Agent())
        assert (res.status, res.body) == (200, b"1024")


async def test_https_upload_over_the_server_limit_gets_413(
    serve: ServeFixture, server_identity: Identity, ca_pem: bytes
) -> None:
    server = await serve(
        trionet.https.serve, echo_length, max_body_size=1024, **server_identity.options()
    )
    with trio.fail_after(10):
        res = await trionet.https.request(
            f"https://localhost:{server.port}/", method="POST", body=b"x" * BIG,
            ca=ca_pem, agent=False,
        )
        assert res.status == 413


@pytest.mark.parametrize("size", [10, BIG], ids=["small-body", "large-body"])
async def test_reset_without_an_answer_raises_connection_lost(size: int) -> None:
    async def reset(sock: trionet.net.Socket) -> None:
        await read_head(sock)
        await sock.aclose()  # request bytes unread: the kernel sends RST

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, reset)
            with pytest.raises(trionet.ConnectionLost, match=f"127.0.0.1:{port}") as info:
                await http.request(url(port), method="POST", body=b"x" * size, agent=Agent())
            assert isinstance(info.value, trionet.ConnectError)  # retry-able like one
            nursery.cancel_scope.cancel()


# -- Content-Length with Transfer-Encoding --------------------------------------------------------
async def test_content_length_with_transfer_encoding_is_a_protocol_error() -> None:
    agent = Agent()
    accepts = Accepts()

    async def both_then_good(sock: trionet.net.Socket) -> None:
        accepts.count += 1
        await read_head(sock)
        await sock.send(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n"
        )
        await read_head(sock)  # on a reused connection: the next request
        await sock.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await read_head(sock)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, both_then_good)
            with pytest.raises(trionet.ProtocolError, match="Content-Length and Transfer-Enc"):
                await http.request(url(port), agent=agent)
            assert agent.free_sockets == {}
            with pytest.raises(trionet.ProtocolError):
                await http.request(url(port), agent=agent)
            assert accepts.count == 2  # the second request came on a new connection
            nursery.cancel_scope.cancel()


# -- max_body_size ----------------------------------------------------------------------------
async def send_chunked(total: int, sock: trionet.net.Socket) -> None:
    await read_head(sock)
    await sock.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"4000\r\n" + b"y" * 0x4000 + b"\r\n"
    for _ in range(total // 0x4000):
        await sock.send(piece)
    await sock.send(b"0\r\n\r\n")
    await read_head(sock)


async def test_max_body_size_stops_a_body_that_grows_past_it() -> None:
    agent = Agent()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, partial(send_chunked, 1024 * 1024))
            res = await http.request(url(port), agent=agent, max_body_size=1024 * 1024)
            assert len(res.body) == 1024 * 1024  # at the limit: fine
            with pytest.raises(trionet.MessageSizeError, match=r"max_body_size=1000.*stream\(\)"):
                await http.request(url(port), agent=agent, max_body_size=1000)
            assert agent.sockets == {} and agent.free_sockets == {}  # closed, not pooled
            nursery.cancel_scope.cancel()


async def test_max_body_size_refuses_a_declared_length_before_reading_it() -> None:
    async def declare_a_lot(sock: trionet.net.Socket) -> None:
        head = await read_head(sock)
        await sock.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n")
        if not head.startswith(b"HEAD"):
            await sock.send(b"the first bytes")
            await trio.sleep_forever()  # the rest never comes: reading it would hang
        await read_head(sock)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, declare_a_lot)
            with pytest.raises(trionet.MessageSizeError, match="declares 10000000 bytes"):
                await http.request(url(port), agent=Agent(), max_body_size=65536)
            # HEAD: the length describes a body that is not sent.
            res = await http.request(url(port), method="HEAD", agent=Agent(), max_body_size=10)
            assert (res.status, res.body) == (200, b"")
            nursery.cancel_scope.cancel()


async def test_https_request_takes_max_body_size(
    serve: ServeFixture, server_identity: Identity, ca_pem: bytes
) -> None:
    async def app(req: http.Request, res: http.Response) -> None:
        await res.end(b"z" * 5000)

    server = await serve(trionet.https.serve, app, **server_identity.options())
    with trio.fail_after(10), pytest.raises(trionet.MessageSizeError):
        await trionet.https.request(
            f"https://localhost:{server.port}/", ca=ca_pem, agent=False, max_body_size=4999
        )


# -- every error is public -------------------------------------------------------------------
CLIENT_ERRORS = (
    trionet.ConnectError,
    trionet.ConnectionLost,
    trionet.TLSError,
    trionet.ProtocolError,
    trionet.MessageSizeError,
    trionet.TimeoutError,
    trionet.PoolTimeout,
)


def test_client_errors_are_exported_from_trionet_and_trionet_http() -> None:
    for cls in CLIENT_ERRORS:
        assert cls.__name__ in trionet.__all__ and cls.__name__ in http.__all__
        assert getattr(http, cls.__name__) is cls
        assert cls.__name__ in (http.request.__doc__ or "")  # in its Raises section
    assert issubclass(trionet.ConnectionLost, trionet.ConnectError)


CLIENT_MODULES = (
    "trionet._url",
    "trionet.agent",
    "trionet.http._client",
    "trionet.http._client_conn",
    "trionet.http._client_exchange",
    "trionet.http._client_request",
    "trionet.http._client_response",
    "trionet.http._client_upgrade",
)


@pytest.mark.parametrize("module_name", CLIENT_MODULES)
def test_every_raise_site_of_the_client_uses_a_public_error(module_name: str) -> None:
    """Walk the client's ``raise X(...)``: X is a trionet error or ValueError (bad arguments).

    A ``raise helper(...)`` counts by the helper's return annotation.
    """
    module = __import__(module_name, fromlist=["_"])
    tree = ast.parse(Path(inspect.getfile(module)).read_text())
    allowed = {cls.__name__ for cls in CLIENT_ERRORS} | {"ValueError"}
    raised: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            func = node.exc.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            target = getattr(module, name, None)
            if target is None:
                target = next(
                    (vars(cls)[name] for cls in vars(module).values()
                     if isinstance(cls, type) and name in vars(cls)), None)
            if inspect.isfunction(target):
                name = str(inspect.signature(target).return_annotation)
            raised.add(name)
    assert raised, "no raise sites found"
    assert raised <= allowed, raised - allowed


# -- the upload's task stays out of sight ---------------------------------------------------------
async def test_a_failing_body_iterator_raises_its_own_error() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        raise RuntimeError("the caller's data source failed")

    async def read_forever(sock: trionet.net.Socket) -> None:
        while await sock.receive():
            pass

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, read_forever)
            with pytest.raises(RuntimeError, match="data source failed"):
                await http.request(url(port), method="POST", body=broken(), agent=Agent())
            nursery.cancel_scope.cancel()


async def test_timeout_during_a_stalled_upload_raises_timeout_error() -> None:
    async def never_read(sock: trionet.net.Socket) -> None:
        await read_head(sock)
        await trio.sleep_forever()

    sent = [0]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, never_read)
            with pytest.raises(trionet.TimeoutError, match=r"timed out after 0\.5s"):
                await http.request(
                    url(port), method="PUT", body=chunks(1024, sent), agent=Agent(), timeout=0.5
                )
            nursery.cancel_scope.cancel()


# -- a body that ends with the connection -----------------------------------------------------
async def test_a_body_read_until_close_never_returns_its_connection_to_the_pool() -> None:
    """No Content-Length, no chunking: the body ends when the server closes (RFC 9112 §6.3 (8)),
    so that connection is spent even though the response did not say ``Connection: close``."""
    agent = Agent()

    async def body_until_close(sock: trionet.net.Socket) -> None:
        await read_head(sock)
        await sock.send(b"HTTP/1.1 200 OK\r\n\r\nall of it")
        await sock.aclose()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_raw(nursery, body_until_close)
            res = await http.request(url(port), agent=agent)
            assert res.body == b"all of it"
            assert agent.free_sockets == {}
            nursery.cancel_scope.cancel()
