"""An echo server on a Unix domain socket: ``path=`` instead of a port, ``pipe`` for the echo."""

import tempfile
from functools import partial
from pathlib import Path

import trio

import trionet


async def echo(sock: trionet.net.Socket) -> None:
    await trionet.net.pipe(sock, sock)  # socket.pipe(socket)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "echo.sock"
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(trionet.net.serve, echo, path=path))
            print("listening on", Path(server.address).name)
            sock = await trionet.net.connect(path=path)
            await sock.send("hello through a Unix socket")
            print((await sock.receive()).decode())
            await sock.aclose()
            await server.aclose()
        print("socket file removed:", not path.exists())


if __name__ == "__main__":
    trio.run(main)
