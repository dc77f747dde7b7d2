"""UDP (深入浅出Node.js 7.3): a server that prints what arrives, and a client."""

from functools import partial

import trio

import trionet

received = trio.Event()


async def on_message(
    msg: bytes, rinfo: trionet.dgram.RemoteInfo, sock: trionet.dgram.UDPSocket
) -> None:
    """server.on('message', ...): runs for every datagram."""
    print(f"server got: {msg.decode()} from {rinfo.address}:{rinfo.port}")
    received.set()


async def client(port: int) -> None:
    """The chapter's client: send one datagram, close."""
    message = "深入浅出Node.js".encode()
    sock = await trionet.dgram.bind(0, "127.0.0.1")  # dgram.createSocket('udp4')
    await sock.send(message, ("127.0.0.1", port))  # client.send(message, ..., 41234, ...)
    await sock.aclose()  # client.close()


async def main() -> None:
    async with trio.open_nursery() as nursery:
        # Node binds 41234; port 0 picks a free port so this runs anywhere.
        server = await nursery.start(partial(trionet.dgram.serve, on_message, 0, host="127.0.0.1"))
        host, port = server.address
        print(f"server listening {host}:{port}")  # server.on('listening', ...)
        await client(port)
        with trio.fail_after(5):
            await received.wait()
        server.close()


if __name__ == "__main__":
    trio.run(main)
