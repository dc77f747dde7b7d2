"""HTTP (深入浅出Node.js 7.4): Hello World on port 1337, and a request to it."""

from functools import partial

import trio

import trionet


async def app(req: trionet.http.Request, res: trionet.http.Response) -> None:
    """http.createServer(function (req, res) {...}): one call per request."""
    res.write_head(200, {"Content-Type": "text/plain"})
    await res.end("Hello World\n")


async def main() -> None:
    async with trio.open_nursery() as nursery:
        # Node listens on 1337; port 0 picks a free port so this runs anywhere.
        server = await nursery.start(partial(trionet.http.serve, app, 0, host="127.0.0.1"))
        print(f"Server running at http://127.0.0.1:{server.port}/")

        res = await trionet.http.request(f"http://127.0.0.1:{server.port}/")
        print(res.status, res.reason, res.headers["content-type"], res.body)
        await server.aclose()


if __name__ == "__main__":
    trio.run(main)
