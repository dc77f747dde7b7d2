"""A browser on a Starlette app served by trionet.asgi: a page and its WebSocket.

Headless Chromium loads an HTML page from the app; the page's script opens a
WebSocket back to the same server (a Starlette WebSocket endpoint), sends a
message and writes the echo into the DOM, which Chromium dumps. Chromium runs
in a worker thread while the server runs on the test's Trio loop. Skips when
Chromium is not installed (``chromium_command`` asks for it).

When to dump: headless Chromium's virtual time (``--virtual-time-budget``)
jumps ahead whenever no fetch is pending, and a WebSocket is not a fetch, so
on a busy machine the dump came before the echo (the page unloaded and closed
its WebSocket with 1001); and while a fetch is pending, virtual time holds the
page's WebSocket events back too. So this test runs in real time: the page's
last element is an image the app serves only once the page has acknowledged
the echo over its WebSocket, and Chromium dumps the DOM at the load event,
which waits for that image.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import pytest
import trio
from _http_server_support import HOST
from test_demo import chromium_command

import trionet.asgi

pytest.importorskip("starlette")

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
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
    ws.send("shown");
  };
  ws.onclose = (event) => {
    document.getElementById("closed").textContent = `closed: ${event.code} ${event.reason}`;
  };
  ws.onerror = () => { echo.dataset.state = "error"; };
</script>
<img src="/shown.gif" alt="">
</body></html>
"""

#: The page's paragraph once the echo came back over its WebSocket.
ECHOED = re.compile(r'<p id="echo" data-state="echoed">echo: 你好, echo</p>')


#: A 1x1 transparent GIF.
GIF = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c"
    "00000000010001000002024401003b"
)


def page_app() -> Starlette:
    shown = trio.Event()

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE)

    async def shown_gif(request: Request) -> Response:
        with trio.move_on_after(20):  # the page's load event waits for this
            await shown.wait()
        return Response(GIF, media_type="image/gif")

    async def ws_echo(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol="echo")
        text = await websocket.receive_text()
        await websocket.send_text(f"echo: {text}")
        if await websocket.receive_text() == "shown":
            shown.set()
        await websocket.close(code=4000, reason="bye, browser")

    routes = [Route("/", page), Route("/shown.gif", shown_gif), WebSocketRoute("/ws", ws_echo)]
    return Starlette(routes=routes)


async def test_a_page_echoes_through_a_starlette_websocket_in_chromium(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    serve = partial(trionet.asgi.serve, page_app(), 0, host=HOST)
    server = await nursery.start(serve)
    url = f"http://{HOST}:{server.port}/"
    command = chromium_command(tmp_path, "--dump-dom", url, budget_ms=None)
    with trio.fail_after(60):
        done = await trio.run_process(command, capture_stdout=True, capture_stderr=True)
    dom = done.stdout.decode()
    # The page's script ran, reached the Starlette endpoint on the same server
    # with the subprotocol it asked for, and wrote the echo into the DOM. (The
    # app's close that follows is not waited for: Chromium dumps at the load
    # event, which may come first.)
    assert ECHOED.search(dom), dom
