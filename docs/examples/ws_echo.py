"""WebSocket (深入浅出Node.js 7.5): a server that echoes and a client that talks to it."""

from functools import partial

import trio

import trionet


async def echo(ws: trionet.ws.WebSocket) -> None:
    async for message in ws:  # ws.on('message', ...)
        await ws.send(message)


async def main() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(trionet.ws.serve, echo, 0, host="127.0.0.1"))
        # new WebSocket('ws://127.0.0.1:12010/updates')
        async with trionet.ws.connect(f"ws://127.0.0.1:{server.port}/updates") as ws:
            await ws.send("你好")  # socket.send(...): str is a text frame
            print("text:", await ws.receive())  # socket.onmessage
            await ws.send(b"\x00\x01")  # bytes are a binary frame
            print("binary:", await ws.receive())
        await server.aclose()


if __name__ == "__main__":
    trio.run(main)
