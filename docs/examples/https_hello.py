"""HTTPS (深入浅出Node.js 7.6): hello world over TLS, and a client that trusts our CA."""

import tempfile
from functools import partial

import trio

import trionet
import trionet.testing


async def app(req: trionet.http.Request, res: trionet.http.Response) -> None:
    res.write_head(200)
    await res.end("hello world\n")


async def main() -> None:
    with tempfile.TemporaryDirectory() as keys:
        files = trionet.testing.write_certs(keys)  # ca.pem, server.pem, server.key, ...
        async with trio.open_nursery() as nursery:
            serve = partial(
                trionet.https.serve, app, 0, host="127.0.0.1", key=files.key, cert=files.cert
            )
            server = await nursery.start(serve)
            url = f"https://localhost:{server.port}/"

            res = await trionet.https.request(url, ca=files.ca)  # ca: [ca.crt]
            print(res.status, res.text(), end="")

            try:
                await trionet.https.request(url)  # the system's CAs do not know ours
            except trionet.TLSError as exc:
                print("without our CA:", type(exc).__name__)
            await server.aclose()


if __name__ == "__main__":
    trio.run(main)
