"""trionet.asgi.serve with raw ASGI apps: the http scope, body streaming, errors, lifespan.

Each app here is a plain ``async def app(scope, receive, send)``, so every
test sees exactly what the server hands an app and what goes on the wire.
Framework apps (Starlette, FastAPI, Quart-Trio) are in test_asgi_frameworks.py;
WebSockets in test_asgi_websocket.py.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from _http_server_support import (
    HOST,
    WAIT,
    RawClient,
    exchange,
    fetch_with_trailers,
    get,
    parse_all,
)

import trionet
import trionet.asgi
from trionet.asgi import Message, Receive, Scope, Send


async def start(nursery: trio.Nursery, app: Any, **options: Any) -> trionet.net.Server:
    """Start ``trionet.asgi.serve(app)`` on 127.0.0.1, a free port (lifespan off by default:
    these apps answer every scope as an http one)."""
    options.setdefault("lifespan", "off")
    server: trionet.net.Server = await nursery.start(
        partial(trionet.asgi.serve, app, 0, host=HOST, **options)
    )
    return server


async def respond(send: Send, body: bytes, status: int = 200, **headers: str) -> None:
    pairs = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": pairs})
    await send({"type": "http.response.body", "body": body})


# -- the scope ---------------------------------------------------------------------
async def test_http_scope_has_every_key_of_spec_2_4(nursery: trio.Nursery) -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)
        await respond(send, b"ok")

    server = await start(nursery, app, root_path="/api")
    client = await RawClient.connect(server.port)
    await client.send(get("/caf%C3%A9/a%2Fb?x=1&y=%20", "X-Custom: Value", "x-custom: second"))
    assert (await client.response()).body == b"ok"
    await client.aclose()
    scope = scopes[0]
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    # Decoded as UTF-8 (an encoded slash decodes too, as in uvicorn); raw_path stays raw.
    assert scope["path"] == "/api/café/a/b"
    assert scope["raw_path"] == b"/api/caf%C3%A9/a%2Fb"
    assert scope["root_path"] == "/api"
    assert scope["query_string"] == b"x=1&y=%20"
    headers = scope["headers"]
    assert (b"host", b"localhost") in headers
    # Names lower-cased, values untouched, repeated headers kept in order.
    assert [v for n, v in headers if n == b"x-custom"] == [b"Value", b"second"]
    assert scope["client"][0] == "127.0.0.1" and isinstance(scope["client"][1], int)
    assert tuple(scope["server"]) == ("127.0.0.1", server.port)
    assert scope["state"] == {}
    assert "http.response.pathsend" in scope["extensions"]


async def test_unix_socket_scope_names_the_path(nursery: trio.Nursery, tmp_path: Path) -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)
        await respond(send, b"unix")

    sock_path = str(tmp_path / "asgi.sock")
    await nursery.start(partial(trionet.asgi.serve, app, path=sock_path, lifespan="off"))
    res = await trionet.http.request({"socket_path": sock_path, "path": "/"}, timeout=WAIT)
    assert res.body == b"unix"
    assert scopes[0]["client"] is None
    assert tuple(scopes[0]["server"]) == (sock_path, None)


# -- request bodies ----------------------------------------------------------------
async def test_body_arrives_piece_by_piece_with_more_body(nursery: trio.Nursery) -> None:
    events: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            event = await receive()
            events.append(event)
            if not event.get("more_body"):
                break
        await respond(send, b"".join(e["body"] for e in events))

    server = await start(nursery, app)
    client = await RawClient.connect(server.port)
    await client.send(get("/", "Transfer-Encoding: chunked", method="POST"))
    for piece in (b"one ", b"two ", b"three"):
        await client.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        await trio.sleep(0.05)
    await client.send(b"0\r\n\r\n")
    assert (await client.response()).body == b"one two three"
    await client.aclose()
    assert all(e["type"] == "http.request" for e in events)
    assert len(events) >= 3
    assert [e["more_body"] for e in events][-1] is False
    assert all(e["more_body"] for e in events[:-1])


async def test_a_sized_body_ends_with_its_last_bytes_not_an_extra_event(
    nursery: trio.Nursery,
) -> None:
    events: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        events.append(await receive())
        await respond(send, events[0]["body"])

    server = await start(nursery, app)
    res = await trionet.http.request(
        f"http://{HOST}:{server.port}/", method="POST", body=b"12345", timeout=WAIT
    )
    assert res.body == b"12345"
    assert events == [{"type": "http.request", "body": b"12345", "more_body": False}]


async def test_a_slow_app_holds_the_client_back(nursery: trio.Nursery) -> None:
    """Backpressure: while the app does not receive, the server reads no more of the body."""
    go_on = trio.Event()
    total = 0

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal total
        more = True
        first = True
        while more:
            event = await receive()
            total += len(event["body"])
            more = event["more_body"]
            if first:
                first = False
                await go_on.wait()
        await respond(send, str(total).encode())

    server = await start(nursery, app)
    size = 64 * 1024 * 1024
    client = await RawClient.connect(server.port)
    await client.send(get("/", f"Content-Length: {size}", method="POST"))
    block = b"x" * (1024 * 1024)
    sent = 0
    with trio.move_on_after(1.0):
        while sent < size:
            await client.sock.send(block)
            sent += len(block)
    # The kernel's buffers hold a few MiB at most: the rest had to wait for the app.
    assert sent < size // 2
    go_on.set()
    with trio.fail_after(WAIT * 3):
        while sent < size:
            await client.sock.send(block)
            sent += len(block)
    assert (await client.response()).body == str(size).encode()
    await client.aclose()


async def test_expect_100_continue_is_sent_when_the_app_first_receives(
    nursery: trio.Nursery,
) -> None:
    go_on = trio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await go_on.wait()
        body = (await receive())["body"]
        await respond(send, body)

    server = await start(nursery, app)
    client = await RawClient.connect(server.port)
    await client.send(get("/", "Content-Length: 4", "Expect: 100-continue", method="PUT"))
    with trio.move_on_after(0.3):
        early = await client.sock.receive()
        pytest.fail(f"the server answered before the app received: {early!r}")
    go_on.set()
    interim = await client.response()
    assert interim.status == 100
    await client.send(b"data")
    assert (await client.response()).body == b"data"
    await client.aclose()


async def test_body_over_max_body_size_gets_413_even_if_the_app_answers_500(
    nursery: trio.Nursery,
) -> None:
    seen: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            event = await receive()
            if event["type"] == "http.disconnect":
                seen.append(event)
                break
            if not event["more_body"]:
                break
        try:
            await respond(send, b"oops", status=500)
        except OSError as exc:
            seen.append(exc)

    server = await start(nursery, app, max_body_size=10)
    data = get("/", "Transfer-Encoding: chunked", method="POST") + b"64\r\n" + b"x" * 100
    raw = await exchange(server.port, data + b"\r\n0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 413 ")
    assert seen[0] == {"type": "http.disconnect"}
    assert isinstance(seen[1], trionet.asgi.ClientDisconnected)


async def test_a_malformed_request_gets_400_and_never_reaches_the_app(
    nursery: trio.Nursery,
) -> None:
    called = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        called.append(scope)

    server = await start(nursery, app)
    raw = await exchange(server.port, b"GET / HTTP/1.1\r\nHost localhost\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 ")
    assert called == []


# -- disconnects -----------------------------------------------------------------
async def test_http_disconnect_is_delivered_when_the_client_leaves(
    nursery: trio.Nursery,
) -> None:
    got: list[Message] = []
    done = trio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["more_body"] is False
        got.append(await receive())  # waits: the body is done, the client still there
        done.set()

    server = await start(nursery, app)
    client = await RawClient.connect(server.port)
    await client.send(get("/"))
    await trio.sleep(0.2)
    assert got == []
    await client.aclose()
    with trio.fail_after(WAIT):
        await done.wait()
    assert got == [{"type": "http.disconnect"}]


async def test_receive_after_the_response_returns_disconnect_at_once(
    nursery: trio.Nursery,
) -> None:
    got: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await respond(send, b"done")
        with trio.fail_after(1):
            got.append(await receive())

    server = await start(nursery, app)
    res = await trionet.http.request(f"http://{HOST}:{server.port}/", timeout=WAIT)
    assert res.body == b"done"
    assert got == [{"type": "http.disconnect"}]


async def test_send_after_the_client_left_raises_oserror_and_logs_no_error(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caught: list[BaseException] = []
    done = trio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            with trio.fail_after(WAIT):
                while True:
                    await send({"type": "http.response.body", "body": b"x" * 65536,
                                "more_body": True})  # fmt: skip
                    await trio.sleep(0.01)
        except OSError as exc:
            caught.append(exc)
            raise
        finally:
            done.set()

    server = await start(nursery, app)
    client = await RawClient.connect(server.port)
    await client.send(get("/"))
    await client.response(head_only=True)
    await client.aclose()
    with trio.fail_after(WAIT):
        await done.wait()
    await trio.sleep(0.1)
    assert isinstance(caught[0], trionet.asgi.ClientDisconnected)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- the app's errors --------------------------------------------------------------
async def test_an_app_that_raises_before_start_gets_500_and_a_logged_traceback(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise ZeroDivisionError("the app's bug")

    server = await start(nursery, app)
    res = await trionet.http.request(f"http://{HOST}:{server.port}/", timeout=WAIT)
    assert res.status == 500
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], ZeroDivisionError)


async def test_an_app_that_raises_mid_body_aborts_the_connection(nursery: trio.Nursery) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("failed half way")

    server = await start(nursery, app)
    raw = await exchange(server.port, get("/"))
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert b"partial" in raw
    # Never passed off as complete: no last chunk before the close.
    assert not raw.endswith(b"0\r\n\r\n")


async def test_an_app_that_returns_without_a_response_gets_500(nursery: trio.Nursery) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    server = await start(nursery, app)
    res = await trionet.http.request(f"http://{HOST}:{server.port}/", timeout=WAIT)
    assert res.status == 500


async def test_an_app_that_returns_mid_body_aborts(nursery: trio.Nursery) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})

    server = await start(nursery, app)
    raw = await exchange(server.port, get("/"))
    assert b"half" in raw and not raw.endswith(b"0\r\n\r\n")


@pytest.mark.parametrize(
    ("messages", "complaint"),
    [
        ([{"type": "http.response.body", "body": b"x"}], "before http.response.start"),
        ([{"type": "http.response.start", "status": 200},
          {"type": "http.response.start", "status": 200}], "after http.response.start"),
        ([{"type": "http.response.start", "status": 200},
          {"type": "http.response.body", "body": b"x"},
          {"type": "http.response.body", "body": b"y"}], "after the response was complete"),
        ([{"type": "http.response.mystery"}], "'http.response.mystery'"),
    ],
)  # fmt: skip
async def test_protocol_misuse_raises_a_clear_error_in_the_app(
    nursery: trio.Nursery, messages: list[Message], complaint: str
) -> None:
    errors: list[Exception] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            for message in messages:
                await send(message)
        except trionet.asgi.ASGIProtocolError as exc:
            errors.append(exc)
            raise

    server = await start(nursery, app)
    await trionet.http.request(f"http://{HOST}:{server.port}/", timeout=WAIT)
    assert len(errors) == 1
    assert complaint in str(errors[0])
    assert isinstance(errors[0], RuntimeError)


# -- responses ---------------------------------------------------------------------
async def test_repeated_response_headers_each_get_a_line(nursery: trio.Nursery) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"x-one", b"1")]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": b"made"})

    server = await start(nursery, app)
    raw = await exchange(server.port, get("/", "Connection: close"))
    head = raw.split(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 201 Created")
    assert b"set-cookie: a=1\r\nset-cookie: b=2" in head
    assert b"Content-Length: 4" in head


async def test_streamed_response_is_chunked_and_keeps_the_connection(
    nursery: trio.Nursery,
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"a", b"b", b""):
            await send({"type": "http.response.body", "body": part, "more_body": bool(part)})

    server = await start(nursery, app)
    client = await RawClient.connect(server.port)
    for _ in range(2):
        await client.send(get("/"))
        res = await client.response()
        assert res.headers["transfer-encoding"] == "chunked"
        assert res.body == b"ab"
    await client.aclose()


async def test_pathsend_sends_the_file(nursery: trio.Nursery, tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000
    (tmp_path / "data.bin").write_bytes(data)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert "http.response.pathsend" in scope["extensions"]
        headers = [(b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": str(tmp_path / "data.bin")})

    server = await start(nursery, app)
    raw = await exchange(server.port, get("/", "Connection: close") + get("/", method="HEAD"))
    responses = parse_all(raw)
    assert responses[0].body == data


async def test_pathsend_without_a_length_gets_one_and_keeps_the_connection(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    data = b"x" * 300_000
    (tmp_path / "big.txt").write_bytes(data)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": str(tmp_path / "big.txt")})

    server = await start(nursery, app)
    client = await RawClient.connect(server.port)
    await client.send(get("/") + get("/"))
    first, second = await client.response(), await client.response()
    await client.aclose()
    assert first.headers["content-length"] == "300000"  # sent whole, not chunked
    assert first.body == second.body == data


async def test_response_trailers_follow_the_chunked_body(nursery: trio.Nursery) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert "http.response.trailers" in scope["extensions"]
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"trailer", b"x-digest")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"part 1, ", "more_body": True})
        await send({"type": "http.response.body", "body": b"part 2"})
        await send({"type": "http.response.trailers", "headers": [(b"x-digest", b"abc")],
                    "more_trailers": True})  # fmt: skip
        await send({"type": "http.response.trailers", "headers": [(b"x-count", b"2")]})

    server = await start(nursery, app)
    head, body, trailers = await fetch_with_trailers(server.port, get("/"))
    assert head.status_code == 200
    assert body == b"part 1, part 2"
    assert trailers == [(b"x-digest", b"abc"), (b"x-count", b"2")]


async def test_trailers_without_asking_for_them_is_misuse(nursery: trio.Nursery) -> None:
    errors: list[Exception] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200})
        try:
            await send({"type": "http.response.trailers", "headers": []})
        except trionet.asgi.ASGIProtocolError as exc:
            errors.append(exc)
        await send({"type": "http.response.body", "body": b"ok"})

    server = await start(nursery, app)
    res = await trionet.http.request(f"http://{HOST}:{server.port}/", timeout=WAIT)
    assert res.body == b"ok"
    assert "did not ask for trailers" in str(errors[0])


async def test_access_log_in_common_log_format(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, b"12345", status=404)

    caplog.set_level(logging.INFO, logger="trionet.access")
    server = await start(nursery, app, access_log=True)
    await trionet.http.request(f"http://{HOST}:{server.port}/x?y=1", timeout=WAIT)
    lines = [r.getMessage() for r in caplog.records if r.name == "trionet.access"]
    assert len(lines) == 1
    assert lines[0].startswith("127.0.0.1 - - [")
    assert lines[0].endswith('] "GET /x?y=1 HTTP/1.1" 404 5')


async def test_handler_puts_an_asgi_app_on_an_http_serve_port(nursery: trio.Nursery) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, scope["path"].encode())

    h = trionet.asgi.handler(app)
    server = await nursery.start(
        partial(trionet.http.serve, h, 0, host=HOST, on_upgrade=h.on_upgrade)
    )  # a bare handler runs no lifespan: the app sees http scopes only
    res = await trionet.http.request(f"http://{HOST}:{server.port}/via-handler", timeout=WAIT)
    assert res.body == b"/via-handler"


# -- lifespan ----------------------------------------------------------------------
def lifespan_app(log: list[str], *, fail_startup: str | None = None) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            assert (await receive())["type"] == "lifespan.startup"
            if fail_startup is not None:
                await send({"type": "lifespan.startup.failed", "message": fail_startup})
                return
            scope["state"]["db"] = "connected"
            log.append("startup")
            await send({"type": "lifespan.startup.complete"})
            assert (await receive())["type"] == "lifespan.shutdown"
            log.append("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return
        await respond(send, scope["state"]["db"].encode())

    return app


async def test_lifespan_state_reaches_every_scope_and_shutdown_runs() -> None:
    log: list[str] = []
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            server = await start(nursery, lifespan_app(log), lifespan="auto")
            assert log == ["startup"]
            res = await trionet.http.request(f"http://{HOST}:{server.port}/", timeout=WAIT)
            assert res.body == b"connected"
            nursery.cancel_scope.cancel()
    assert log == ["startup", "shutdown"]


async def test_failed_startup_stops_the_server_with_the_apps_message(
    nursery: trio.Nursery,
) -> None:
    with pytest.raises(trionet.asgi.LifespanFailure, match="no database"):
        await start(nursery, lifespan_app([], fail_startup="no database"), lifespan="auto")


async def test_lifespan_auto_tolerates_an_app_without_it(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"unsupported scope {scope['type']}")
        await respond(send, b"plain")

    caplog.set_level(logging.INFO, logger="trionet")
    server = await start(nursery, app, lifespan="auto")
    res = await trionet.http.request(f"http://{HOST}:{server.port}/", timeout=WAIT)
    assert res.body == b"plain"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with pytest.raises(trionet.asgi.LifespanFailure):
        await start(nursery, app, lifespan="on")


async def test_lifespan_off_never_calls_the_app_for_it(nursery: trio.Nursery) -> None:
    scopes: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope["type"])
        await respond(send, b"")

    server = await start(nursery, app, lifespan="off")
    await trionet.http.request(f"http://{HOST}:{server.port}/", timeout=WAIT)
    assert scopes == ["http"]
