"""Answer the WebSocket handshake yourself: accept with a subprotocol, or reject with a status."""

from functools import partial

import trio

import trionet

ROOMS = {"/lobby", "/games"}


async def page(req: trionet.http.Request, res: trionet.http.Response) -> None:
    await res.end("plain HTTP\n")


async def on_upgrade(req: trionet.http.Request, sock: trionet.net.Socket, head: bytes) -> None:
    """ws's handleUpgrade, one decision at a time (what an ASGI server does for an app)."""
    handshake = await trionet.ws.server_handshake(req, sock, head)
    if handshake is None:
        return  # no valid WebSocket handshake: it got its 400, 405 or 426 already
    if handshake.path not in ROOMS:
        rooms = ",".join(sorted(ROOMS))
        await handshake.reject(404, headers={"X-Rooms": rooms}, body="no such room\n")
        return
    chosen = "chat.v2" if "chat.v2" in handshake.subprotocols else None
    async with handshake.accept(subprotocol=chosen, headers={"X-Room": handshake.path}) as ws:
        async for message in ws:
            await ws.send(f"{handshake.path} ({ws.subprotocol}): {message}")


async def main() -> None:
    async with trio.open_nursery() as nursery:
        serve = partial(trionet.http.serve, page, 0, host="127.0.0.1", on_upgrade=on_upgrade)
        server = await nursery.start(serve)
        base = f"ws://127.0.0.1:{server.port}"
        async with trionet.ws.connect(f"{base}/lobby", subprotocols=["chat.v1", "chat.v2"]) as ws:
            print("room header:", dict(ws.request.extra_headers)[b"x-room"].decode())
            await ws.send("hello")
            print(await ws.receive())
        try:
            async with trionet.ws.connect(f"{base}/attic"):
                pass
        except trionet.ws.HandshakeError as refused:
            print("refused:", refused.status, refused.body.decode(), end="")
            print("rooms:", dict(refused.headers)[b"x-rooms"].decode())
        await server.aclose()


if __name__ == "__main__":
    trio.run(main)
