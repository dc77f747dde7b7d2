"""trionet.run: a stop (Ctrl-C, SIGTERM or trionet.stop()) lets the request in flight finish."""

from functools import partial

import trio

import trionet


async def app(req: trionet.http.Request, res: trionet.http.Response) -> None:
    if req.url == "/stop":
        trionet.stop()  # what Ctrl-C or `kill -TERM` does to a program under trionet.run
        await res.end("stopping\n")
        return
    await trio.sleep(0.5)  # a slow request: still in flight when the stop comes
    await res.end("slow request done\n")


async def slow_client(port: int) -> None:
    res = await trionet.http.request(f"http://127.0.0.1:{port}/slow")
    print("GET /slow:", res.status, res.text(), end="")
    print("  Connection:", res.headers["connection"])  # the server is closing


async def main() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(trionet.http.serve, app, 0, host="127.0.0.1"))
        nursery.start_soon(slow_client, server.port)
        await trio.sleep(0.1)
        res = await trionet.http.request(f"http://127.0.0.1:{server.port}/stop")
        print("GET /stop:", res.status, res.text(), end="")
        print("stopping:", await trionet.stopping())
        await trio.sleep_forever()  # cancelled by trionet.run once the server is done


if __name__ == "__main__":
    trionet.run(main, shutdown_timeout=10)
    print("trionet.run returned: exit status 0")
