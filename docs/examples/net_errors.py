"""Node's 'error' and 'timeout' events: an exception to catch, an option to set."""

from functools import partial

import trio

import trionet


async def silent(sock: trionet.net.Socket) -> None:
    await sock.receive()  # waits for a client that never speaks
    print("unreachable: idle_timeout cancels the wait")


async def main() -> None:
    # 'error' on connect becomes ConnectError (also an OSError), naming the address.
    try:
        await trionet.net.connect(1, "127.0.0.1")
    except trionet.ConnectError as exc:
        print("connect failed:", exc.strerror)

    async with trio.open_nursery() as nursery:
        # socket.setTimeout(100) + 'timeout' -> end(): here one option does both.
        serve = partial(trionet.net.serve, silent, 0, host="127.0.0.1", idle_timeout=0.1)
        server = await nursery.start(serve)
        sock = await trionet.net.connect(server.port, "127.0.0.1")
        with trio.fail_after(5):
            print("server closed the idle connection:", await sock.receive() == b"")
        await server.aclose()


if __name__ == "__main__":
    trio.run(main)
