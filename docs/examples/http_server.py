"""A request's parts, a body read in full, and a response streamed in chunks."""

import json
from functools import partial

import trio

import trionet


async def app(req: trionet.http.Request, res: trionet.http.Response) -> None:
    if req.method == "POST" and req.path == "/echo":
        body = await req.read()  # req.on('data') + req.on('end'), in one await
        res.set_header("Content-Type", "application/json")
        await res.end(json.dumps({"query": req.query, "got": body.decode()}))
    elif req.path == "/count":
        res.write_head(200, {"Content-Type": "text/plain"})
        for n in range(3):  # no Content-Length: sent chunked
            await res.write(f"{n}\n")
        await res.end()
    else:
        res.write_head(404)
        await res.end(f"no page at {req.path}\n")


async def main() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(trionet.http.serve, app, 0, host="127.0.0.1"))
        base = f"http://127.0.0.1:{server.port}"

        res = await trionet.http.request(f"{base}/echo?lang=zh", method="POST", body="你好")
        print(res.status, res.json())

        res = await trionet.http.request(f"{base}/count")
        print(res.status, res.headers["transfer-encoding"], repr(res.text()))

        res = await trionet.http.request(f"{base}/nowhere")
        print(res.status, res.reason, res.text(), end="")
        await server.aclose()


if __name__ == "__main__":
    trio.run(main)
