"""Behind a proxy: the client's address from X-Forwarded-For and from a PROXY protocol header."""

from functools import partial

import trio

import trionet


async def app(req: trionet.http.Request, res: trionet.http.Response) -> None:
    host, _port = req.remote_address  # a TCP server: (host, port)
    await res.end(f"client {host}, asked for {req.scheme}://{req.host}/\n")


async def main() -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
                 "X-Forwarded-Host": "shop.example.com"}  # fmt: skip
    serve = partial(trionet.http.serve, app, 0, host="127.0.0.1")
    async with trio.open_nursery() as nursery:
        # What nginx sends: believed from 127.0.0.1 (trusted by default) ...
        behind = await nursery.start(partial(serve, proxy_headers=True))
        # ... and ignored when the peer is not on the trust list.
        strict = await nursery.start(
            partial(serve, proxy_headers=True, forwarded_allow_ips=["10.0.0.0/8"])
        )
        for server in (behind, strict):
            url = f"http://127.0.0.1:{server.port}/"
            res = await trionet.http.request(url, headers=forwarded, agent=False)
            print(res.text().replace(str(server.port), "PORT"), end="")

        # What HAProxy's send-proxy sends: a line before the first byte.
        haproxy = await nursery.start(partial(serve, proxy_protocol=True))
        sock = await trionet.net.connect(haproxy.port, "127.0.0.1")
        await sock.send(b"PROXY TCP4 198.51.100.4 127.0.0.1 51000 80\r\n"
                        b"GET / HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")  # fmt: skip
        response = b"".join([chunk async for chunk in sock])
        print(response.partition(b"\r\n\r\n")[2].decode(), end="")
        await sock.aclose()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
