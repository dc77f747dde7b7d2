"""TLS (深入浅出Node.js 7.6): a server that asks for client certificates, and a client."""

import tempfile
from functools import partial

import trio

import trionet
import trionet.testing


async def handler(stream: trionet.tls.TLSSocket) -> None:
    print("server connected", "authorized" if stream.authorized else "unauthorized")
    await stream.send("welcome!\n")
    await trionet.net.pipe(stream, stream)  # stream.pipe(stream)


async def main() -> None:
    with tempfile.TemporaryDirectory() as keys:
        # The chapter makes keys with openssl; write_certs makes a CA, a server
        # certificate for localhost and a client certificate, all signed by the CA.
        files = trionet.testing.write_certs(keys)
        async with trio.open_nursery() as nursery:
            serve = partial(
                trionet.tls.serve,
                handler,
                0,
                host="127.0.0.1",
                key=files.key,
                cert=files.cert,
                request_cert=True,
                ca=files.ca,
            )
            server = await nursery.start(serve)
            print("server bound")
            stream = await trionet.tls.connect(
                server.port,
                "localhost",
                key=files.client_key,
                cert=files.client_cert,
                ca=files.ca,
            )
            welcome = await stream.receive()
            print("client connected", "authorized" if stream.authorized else "unauthorized")
            print(welcome.decode(), end="")
            await stream.send("hello over TLS\n")
            print((await stream.receive()).decode(), end="")
            await stream.aclose()
            await server.aclose()


if __name__ == "__main__":
    trio.run(main)
