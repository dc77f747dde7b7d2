"""An upload over max_body_size: the client gets the 413, by default or from a hook."""

import json
from functools import partial

import trio

import trionet


async def app(req: trionet.http.Request, res: trionet.http.Response) -> None:
    body = await req.read()
    await res.end(f"stored {len(body)} bytes\n")


async def json_refusal(exc: trionet.http.ClientError, sock: trionet.net.Socket) -> None:
    """Node's 'clientError' listener: write the whole answer; the server then closes."""
    body = json.dumps({"status": exc.status, "error": str(exc)}).encode()
    head = (
        f"HTTP/1.1 {exc.status} Refused\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    await sock.send(head.encode() + body)


async def main() -> None:
    upload = b"x" * (4 << 20)  # 4 MiB to a server that takes 1 MiB
    serve = partial(trionet.http.serve, app, 0, host="127.0.0.1", max_body_size=1 << 20)
    async with trio.open_nursery() as nursery:
        plain = await nursery.start(serve)
        hooked = await nursery.start(partial(serve, on_client_error=json_refusal))
        for server in (plain, hooked):
            url = f"http://127.0.0.1:{server.port}/upload"
            res = await trionet.http.request(url, method="POST", body=upload, agent=False)
            print(res.status, res.headers["content-type"], res.text().strip())
        res = await trionet.http.request(url, method="POST", body=b"small", agent=False)
        print(res.status, res.text(), end="")
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
