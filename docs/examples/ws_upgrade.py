"""HTTP and WebSocket on one port: the 'upgrade' event is the on_upgrade hook."""

from functools import partial

import trio

import trionet


async def page(req: trionet.http.Request, res: trionet.http.Response) -> None:
    await res.end("plain HTTP here; WebSocket at /updates\n")


async def updates(ws: trionet.ws.WebSocket) -> None:
    """Push updates, as the chapter's page polls getUpdateData() every 50 ms."""
    for n in range(3):
        await ws.send(f"update {n} for {ws.path}")
        await trio.sleep(0.05)
    await ws.aclose(1000, "that is all")


async def main() -> None:
    async with trio.open_nursery() as nursery:
        serve = partial(
            trionet.http.serve, page, 0, host="127.0.0.1", on_upgrade=trionet.ws.handler(updates)
        )
        server = await nursery.start(serve)
        res = await trionet.http.request(f"http://127.0.0.1:{server.port}/")
        print(res.text(), end="")
        async with trionet.ws.connect(f"ws://127.0.0.1:{server.port}/updates") as ws:
            try:
                while True:
                    print(await ws.receive())
            except trionet.ws.ConnectionClosed as closed:
                print("closed:", closed.code, closed.reason)
        await server.aclose()


if __name__ == "__main__":
    trio.run(main)
