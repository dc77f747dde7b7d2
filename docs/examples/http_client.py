"""The chapter's http.request client: Node's options dict, status, headers, body chunks."""

from functools import partial

import trio

import trionet


async def app(req: trionet.http.Request, res: trionet.http.Response) -> None:
    res.write_head(200, {"Content-Type": "text/plain; charset=utf-8"})
    await res.write("深入浅出")
    await res.end("Node.js\n")


async def main() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(trionet.http.serve, app, 0, host="127.0.0.1"))
        options = {
            "hostname": "127.0.0.1",
            "port": server.port,
            "path": "/",
            "method": "GET",
        }
        # http.request(options, function (res) {...}); req.end();
        async with trionet.http.stream(options) as res:
            print("STATUS:", res.status)
            print("CONTENT-TYPE:", res.headers["content-type"])
            chunks = [chunk async for chunk in res]  # res.on('data', ...) until 'end'
            print("BODY:", b"".join(chunks).decode(), end="")
        await server.aclose()


if __name__ == "__main__":
    trio.run(main)
