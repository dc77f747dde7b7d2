"""A chat room: every message goes to every open connection (ws's wss.clients.forEach)."""

from functools import partial

import trio

import trionet


async def main() -> None:
    async def chat(ws: trionet.ws.WebSocket) -> None:
        async for message in ws:
            # Queues the message on each open connection and returns at once:
            # a member that stopped reading slows nobody down.
            trionet.ws.broadcast(server.clients, f"{ws.path[1:]}: {message}")

    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(trionet.ws.serve, chat, 0, host="127.0.0.1"))
        room = f"ws://127.0.0.1:{server.port}"
        async with (
            trionet.ws.connect(f"{room}/ann") as ann,
            trionet.ws.connect(f"{room}/bob") as bob,
        ):
            while len(server.clients) < 2:  # both handshakes done
                await trio.sleep(0.01)
            print("online:", len(server.clients))
            await ann.send("hello, room")
            print("bob got:", await bob.receive())
            print("ann got:", await ann.receive())
            await bob.send("hi ann")
            print("ann got:", await ann.receive())
        await server.aclose()
        print("online:", len(server.clients))


if __name__ == "__main__":
    trio.run(main)
