"""TCP (深入浅出Node.js 7.2): a server that greets and answers 你好, and its client."""

from functools import partial

import trio

import trionet


async def handler(sock: trionet.net.Socket) -> None:
    """One client: Node's createServer callback, with the events turned into awaits."""
    await sock.send("欢迎光临《深入浅出Node.js》示例：\n")
    async for _data in sock:  # socket.on('data', ...)
        await sock.send("你好")
    print("连接断开")  # socket.on('end', ...): the loop ended, the client is done


async def client(port: int) -> None:
    """The chapter's client: say world!, print the answer, end."""
    sock = await trionet.net.connect(port, "127.0.0.1")  # net.connect({port: 8124})
    print("client connected")
    print((await sock.receive()).decode(), end="")
    await sock.send("world!\r\n")  # client.write('world!\r\n')
    print((await sock.receive()).decode())
    await sock.send_eof()  # client.end()
    assert await sock.receive() == b""  # client.on('end', ...)
    print("client disconnected")


async def main() -> None:
    async with trio.open_nursery() as nursery:
        # Node listens on 8124; port 0 picks a free port so this runs anywhere.
        serve = partial(trionet.net.serve, handler, 0, host="127.0.0.1")
        server = await nursery.start(serve)
        print("server bound")
        await client(server.port)
        await server.aclose()


if __name__ == "__main__":
    trio.run(main)
