"""An event stream that stops when its client leaves: res.wait_closed() is res.on('close')."""

import itertools
from functools import partial

import trio

import trionet

stopped = trio.Event()


async def events(req: trionet.http.Request, res: trionet.http.Response) -> None:
    res.write_head(200, {"Content-Type": "text/event-stream"})
    async with trio.open_nursery() as nursery:

        async def stop_when_closed() -> None:
            await res.wait_closed()  # res.on('close'): the client left, or the response ended
            nursery.cancel_scope.cancel()

        nursery.start_soon(stop_when_closed)
        for tick in itertools.count():  # without the watcher: on until a write fails
            await res.write(f"data: tick {tick}\n\n")
            await trio.sleep(0.1)
    print("server: the client left; response finished:", res.finished)
    stopped.set()


async def main() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(trionet.http.serve, events, 0, host="127.0.0.1"))
        url = f"http://127.0.0.1:{server.port}/events"
        async with trionet.http.stream(url, agent=False) as res:
            async for chunk in res:
                print("client:", chunk.decode().strip())
                break  # leaving the block closes the connection
        with trio.fail_after(5):
            await stopped.wait()
        await server.aclose()


if __name__ == "__main__":
    trio.run(main)
