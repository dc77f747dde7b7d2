"""Real ASGI frameworks on trionet.asgi.serve, driven by real clients.

Starlette and FastAPI run on Trio through anyio (FastAPI's sync endpoints
in anyio's worker threads); Quart-Trio natively. The clients are httpx
(through anyio on Trio too), curl, and the ``websockets`` package (its sync
client, in a thread).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import pytest
import trio
from _http_server_support import HOST, WAIT

import trionet
import trionet.asgi

starlette = pytest.importorskip("starlette")
fastapi = pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi import Depends, FastAPI, WebSocket  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.background import BackgroundTask  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import (  # noqa: E402
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    StreamingResponse,
)
from starlette.routing import Mount, Route, WebSocketRoute  # noqa: E402
from starlette.staticfiles import StaticFiles  # noqa: E402
from starlette.websockets import WebSocket as StarletteWebSocket  # noqa: E402


async def start(nursery: trio.Nursery, app: Any, **options: Any) -> str:
    """Serve ``app`` on 127.0.0.1; its base URL."""
    server = await nursery.start(partial(trionet.asgi.serve, app, 0, host=HOST, **options))
    return f"http://{HOST}:{server.port}"


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-s", "--max-time", str(WAIT), *args], capture_output=True, timeout=WAIT * 2
    )


# -- Starlette ---------------------------------------------------------------------
def starlette_app(static: Path, events: list[str]) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        events.append("startup")
        yield {"greeting": "hello from lifespan"}
        events.append("shutdown")

    async def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("plain text")

    async def as_json(request: Request) -> JSONResponse:
        return JSONResponse({"path": request.url.path, "q": request.query_params.get("q")})

    async def state(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.state.greeting)

    async def upload(request: Request) -> JSONResponse:
        size = 0
        pieces = 0
        async for chunk in request.stream():
            size += len(chunk)
            pieces += 1
        return JSONResponse({"size": size, "pieces": pieces})

    async def numbers(request: Request) -> StreamingResponse:
        async def gen() -> AsyncIterator[str]:
            for i in range(5):
                yield f"{i}\n"
                await trio.sleep(0.01)

        return StreamingResponse(gen(), media_type="text/plain")

    async def file(request: Request) -> FileResponse:
        return FileResponse(static / "page.html")

    async def background(request: Request) -> PlainTextResponse:
        def record() -> None:
            events.append("background ran")

        return PlainTextResponse("later", background=BackgroundTask(record))

    async def ws_echo(websocket: StarletteWebSocket) -> None:
        await websocket.accept(subprotocol="echo")
        async for text in websocket.iter_text():
            await websocket.send_text(text.upper())

    return Starlette(
        routes=[
            Route("/plain", plain),
            Route("/json", as_json),
            Route("/state", state),
            Route("/upload", upload, methods=["POST"]),
            Route("/numbers", numbers),
            Route("/file", file),
            Route("/background", background),
            WebSocketRoute("/ws", ws_echo),
            Mount("/static", StaticFiles(directory=static)),
        ],
        lifespan=lifespan,
    )


@pytest.fixture
def static(tmp_path: Path) -> Path:
    (tmp_path / "page.html").write_text("<h1>page</h1>\n" * 1000)
    return tmp_path


async def test_starlette_over_httpx(static: Path) -> None:
    events: list[str] = []
    with trio.fail_after(WAIT * 2):
        async with trio.open_nursery() as nursery:
            base = await start(nursery, starlette_app(static, events))
            assert events == ["startup"]
            async with httpx.AsyncClient(base_url=base) as client:
                assert (await client.get("/plain")).text == "plain text"
                res = await client.get("/json", params={"q": "trio"})
                assert res.json() == {"path": "/json", "q": "trio"}
                assert (await client.get("/state")).text == "hello from lifespan"
                res = await client.get("/numbers")
                assert res.text == "0\n1\n2\n3\n4\n"
                assert res.headers["transfer-encoding"] == "chunked"
                page = (static / "page.html").read_bytes()
                res = await client.get("/file")
                assert res.content == page
                assert res.headers["content-length"] == str(len(page))
                res = await client.get("/static/page.html")
                assert res.content == page
                assert (await client.get("/static/missing.html")).status_code == 404
                assert (await client.get("/background")).text == "later"
                # The task runs after the response went out (in a worker thread).
                with trio.fail_after(WAIT):
                    while "background ran" not in events:
                        await trio.sleep(0.01)

                async def body() -> AsyncIterator[bytes]:
                    for _ in range(4):
                        yield b"x" * 10000
                        await trio.sleep(0.02)

                res = await client.post("/upload", content=body())
                assert res.json()["size"] == 40000
                assert res.json()["pieces"] >= 2  # streamed, not gathered first
            nursery.cancel_scope.cancel()
    assert events[-1] == "shutdown"


async def test_starlette_with_curl_range_and_head(nursery: trio.Nursery, static: Path) -> None:
    base = await start(nursery, starlette_app(static, []))
    res = await trio.to_thread.run_sync(curl, "-i", "-r", "0-3", f"{base}/file")
    assert res.stdout.startswith(b"HTTP/1.1 206 ")
    assert res.stdout.endswith(b"\r\n\r\n<h1>")
    res = await trio.to_thread.run_sync(curl, "-I", f"{base}/static/page.html")
    assert res.stdout.startswith(b"HTTP/1.1 200 ")
    assert b"content-length: 14000" in res.stdout.lower()


async def test_starlette_websocket_with_the_websockets_package(
    nursery: trio.Nursery, static: Path
) -> None:
    from websockets.sync.client import connect

    base = await start(nursery, starlette_app(static, []))
    url = base.replace("http://", "ws://") + "/ws"

    def talk() -> tuple[str | None, str | bytes]:
        with connect(url, subprotocols=["echo"], open_timeout=WAIT) as ws:  # type: ignore[list-item]
            ws.send("shout")
            return ws.subprotocol, ws.recv(timeout=WAIT)

    assert await trio.to_thread.run_sync(talk) == ("echo", "SHOUT")


async def test_starlette_app_driven_by_node(
    nursery: trio.Nursery, static: Path, node: str, node_peers: Path
) -> None:
    # Node's http module and npm's ws, as a JavaScript client of the app would be.
    base = await start(nursery, starlette_app(static, []))
    with trio.fail_after(WAIT * 2):
        done = await trio.run_process(
            [node, str(node_peers / "asgi_client.js"), base],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    seen = json.loads(done.stdout)
    assert seen["get"]["status"] == 200
    assert seen["get"]["type"] == "application/json"
    assert json.loads(seen["get"]["body"]) == {"path": "/json", "q": "node"}
    # The POST body, written by Node in three pieces, all reached the app's stream.
    assert seen["post"]["status"] == 200
    assert json.loads(seen["post"]["body"])["size"] == 2500
    # The Starlette WebSocket endpoint picked the subprotocol and echoed in upper case.
    assert seen["ws"] == {
        "protocol": "echo",
        "echo": "HÉLLO FROM NODE",
        "binary": False,
        "close": [1000, "bye"],
    }


async def test_starlette_notices_a_client_that_left_mid_stream(nursery: trio.Nursery) -> None:
    stopped = trio.Event()
    sent: list[int] = []

    async def endless(request: Request) -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            try:
                for i in range(100_000):
                    sent.append(i)
                    yield b"x" * 16384
                    await trio.sleep(0.001)
            finally:
                stopped.set()

        return StreamingResponse(gen())

    async def watch(request: Request) -> PlainTextResponse:
        with trio.fail_after(WAIT):
            while not await request.is_disconnected():
                await trio.sleep(0.01)
        stopped.set()
        return PlainTextResponse("never read")

    app = Starlette(routes=[Route("/endless", endless), Route("/watch", watch)])
    base = await start(nursery, app, lifespan="off")
    async with httpx.AsyncClient() as client, client.stream("GET", f"{base}/endless") as res:
        async for _ in res.aiter_bytes():
            break
    with trio.fail_after(WAIT):
        await stopped.wait()
    assert len(sent) < 100_000
    stopped = trio.Event()
    sock = await trionet.net.connect(int(base.rsplit(":", 1)[1]), HOST)
    await sock.send(b"GET /watch HTTP/1.1\r\nHost: x\r\n\r\n")
    await trio.sleep(0.1)
    await sock.aclose()
    with trio.fail_after(WAIT):
        await stopped.wait()


async def test_starlette_oversized_body_is_413(nursery: trio.Nursery, static: Path) -> None:
    base = await start(nursery, starlette_app(static, []), max_body_size=1000)
    async with httpx.AsyncClient(base_url=base) as client:
        res = await client.post("/upload", content=b"x" * 5000)
        assert res.status_code == 413

        async def chunks(count: int) -> AsyncIterator[bytes]:
            for _ in range(count):
                yield b"x" * 100

        res = await client.post("/upload", content=chunks(5))  # chunked, under the limit
        assert res.json()["size"] == 500
        res = await client.post("/upload", content=chunks(50))  # chunked, over it
        assert res.status_code == 413


# -- FastAPI -----------------------------------------------------------------------
class Item(BaseModel):
    name: str
    price: float


def common(limit: int = 10) -> dict[str, int]:
    """A FastAPI dependency (module level: FastAPI resolves the string annotations here)."""
    return {"limit": limit}


def fastapi_app() -> FastAPI:
    app = FastAPI()
    thread_names: list[str] = []

    @app.get("/items/{item_id}")
    async def read_item(
        item_id: int, params: Annotated[dict[str, int], Depends(common)]
    ) -> dict[str, Any]:
        return {"item_id": item_id, **params}

    @app.post("/items")
    async def create_item(item: Item) -> Item:
        return item

    @app.get("/sync")
    def sync_endpoint() -> dict[str, Any]:
        thread_names.append(threading.current_thread().name)
        return {"main": threading.current_thread() is threading.main_thread()}

    @app.websocket("/ws/{name}")
    async def ws(websocket: WebSocket, name: str) -> None:
        await websocket.accept()
        data = await websocket.receive_json()
        await websocket.send_json({"hello": name, **data})
        await websocket.close(code=4000)

    return app


async def test_fastapi_validation_dependencies_and_sync_endpoints(nursery: trio.Nursery) -> None:
    base = await start(nursery, fastapi_app())
    async with httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("/items/3?limit=5")).json() == {"item_id": 3, "limit": 5}
        res = await client.get("/items/three")
        assert res.status_code == 422
        assert res.json()["detail"][0]["loc"] == ["path", "item_id"]
        res = await client.post("/items", json={"name": "pen", "price": 1.5})
        assert res.json() == {"name": "pen", "price": 1.5}
        assert (await client.post("/items", json={"name": "pen"})).status_code == 422
        # A sync endpoint runs in anyio's worker thread, not the event loop's.
        assert (await client.get("/sync")).json() == {"main": False}
        assert (await client.get("/openapi.json")).json()["info"]["title"] == "FastAPI"


async def test_fastapi_websocket_with_trionet_client(nursery: trio.Nursery) -> None:
    base = await start(nursery, fastapi_app())
    with trio.fail_after(WAIT):
        async with trionet.ws.connect(base.replace("http", "ws") + "/ws/ada") as ws:
            await ws.send(json.dumps({"n": 1}))
            assert json.loads(await ws.receive()) == {"hello": "ada", "n": 1}
            with pytest.raises(trionet.ws.ConnectionClosed) as info:
                await ws.receive()
            assert info.value.code == 4000


async def test_fastapi_with_curl(nursery: trio.Nursery) -> None:
    base = await start(nursery, fastapi_app())
    res = await trio.to_thread.run_sync(
        curl, "-H", "content-type: application/json", "-d", '{"name":"cup","price":"2"}',
        f"{base}/items",
    )  # fmt: skip
    assert json.loads(res.stdout) == {"name": "cup", "price": 2.0}


# -- Quart-Trio --------------------------------------------------------------------
async def test_quart_trio_app(nursery: trio.Nursery) -> None:
    quart_trio = pytest.importorskip("quart_trio")
    app = quart_trio.QuartTrio(__name__)
    started: list[bool] = []

    @app.before_serving
    async def startup() -> None:
        started.append(True)

    @app.route("/")
    async def index() -> dict[str, str]:
        return {"framework": "quart-trio"}

    @app.route("/echo", methods=["POST"])
    async def echo() -> bytes:
        from quart import request

        return await request.get_data()

    @app.websocket("/ws")
    async def ws() -> None:
        from quart import websocket

        message = await websocket.receive()
        await websocket.send(f"quart got {message}")

    base = await start(nursery, app)
    assert started == [True]
    async with httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("/")).json() == {"framework": "quart-trio"}
        assert (await client.post("/echo", content=b"abc")).content == b"abc"
    with trio.fail_after(WAIT):
        async with trionet.ws.connect(base.replace("http", "ws") + "/ws") as ws:
            await ws.send("hi")
            assert await ws.receive() == "quart got hi"
