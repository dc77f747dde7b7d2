"""A browser on a Starlette app served by trionet.asgi: a page and its WebSocket.

Headless Chromium loads an HTML page from the app; the page's script opens a
WebSocket back to the same server (a Starlette WebSocket endpoint), sends a
message and writes the echo into the DOM, which Chromium dumps. Chromium runs
in a worker thread while the server runs on the test's Trio loop. Skips when
Chromium is not installed (``dump_dom`` asks for it).
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import pytest
import trio
from _http_server_support import HOST
from test_demo import dump_dom

import trionet.asgi

pytest.importorskip("starlette")

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>asgi ws</title></head>
<body>
<p id="echo" data-state="waiting">waiting</p>
<p id="closed">open</p>
<script>
  const echo = document.getElementById("echo");
  const ws = new WebSocket(`ws://${location.host}/ws`, ["echo"]);
  ws.onopen = () => ws.send("你好, " + ws.protocol);
  ws.onmessage = (event) => {
    echo.textContent = event.data;
    echo.dataset.state = "echoed";
  };
  ws.onclose = (event) => {
    document.getElementById("closed").textContent = `closed: ${event.code} ${event.reason}`;
  };
  ws.onerror = () => { echo.dataset.state = "error"; };
</script>
</body></html>
"""

#: The page's paragraph once the echo came back over its WebSocket.
ECHOED = re.compile(r'<p id="echo" data-state="echoed">echo: 你好, echo</p>')


def page_app() -> Starlette:
    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE)

    async def ws_echo(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol="echo")
        text = await websocket.receive_text()
        await websocket.send_text(f"echo: {text}")
        await websocket.close(code=4000, reason="bye, browser")

    return Starlette(routes=[Route("/", page), WebSocketRoute("/ws", ws_echo)])


async def test_a_page_echoes_through_a_starlette_websocket_in_chromium(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    serve = partial(trionet.asgi.serve, page_app(), 0, host=HOST)
    server = await nursery.start(serve)
    url = f"http://{HOST}:{server.port}/"
    dom = await trio.to_thread.run_sync(partial(dump_dom, tmp_path, url, until=(ECHOED,)))
    # The page's script ran, reached the Starlette endpoint on the same server
    # with the subprotocol it asked for, and wrote the echo into the DOM. (The
    # app's close that follows is not waited for: headless Chromium's virtual
    # time does not wait for WebSocket frames, so the dump may come first.)
    assert ECHOED.search(dom), dom
