"""A chat room: every line a client sends goes to all the others.

Any handler may send on any client's socket, as in Node. But send() returns
once the kernel has taken the bytes, so a handler that writes to every client
in turn waits for the slowest reader. Here each client has a bounded outbox
and a writer task: a broadcast drops the line in every outbox without
waiting, and a client whose outbox is full has fallen too far behind and is
disconnected, so it never holds up the room.
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

import trio

import trionet

#: Lines a client may fall behind before the room drops it.
OUTBOX_SIZE = 16
#: Lines alice sends: 1 MB, far more than the kernel buffers for a client that stopped reading.
FLOOD = 1000


@dataclass
class Client:
    name: str
    outbox: trio.MemorySendChannel[bytes]
    #: Cancelling it ends the client's handler, which closes its connection.
    scope: trio.CancelScope


class Room:
    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}

    def join(self, client: Client) -> None:
        self.broadcast(f"* {client.name} joined")
        self.clients[client.name] = client
        client.outbox.send_nowait(f"welcome, {client.name}\n".encode())

    def leave(self, name: str) -> None:
        if self.clients.pop(name, None) is not None:
            self.broadcast(f"* {name} left")

    def broadcast(self, line: str, sender: str | None = None) -> None:
        """Queue ``line`` for everyone but ``sender``; never waits."""
        data = f"{line}\n".encode()
        too_slow = []
        for client in self.clients.values():
            if client.name != sender:
                try:
                    client.outbox.send_nowait(data)
                except trio.WouldBlock:  # OUTBOX_SIZE lines behind
                    too_slow.append(client)
        for client in too_slow:
            print(f"server: {client.name} fell {OUTBOX_SIZE} lines behind; dropped")
            del self.clients[client.name]
            client.scope.cancel()
        for client in too_slow:
            self.broadcast(f"* {client.name} was too slow and was dropped")


async def lines(sock: trionet.net.Socket) -> AsyncIterator[str]:
    """The lines ``sock`` receives, until the peer ends its side."""
    buffer = b""
    async for chunk in sock:
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            yield line.decode()


async def write_outbox(sock: trionet.net.Socket, inbox: trio.MemoryReceiveChannel[bytes]) -> None:
    """The only task that sends to this client: its pace is the client's alone."""
    async for data in inbox:
        await sock.send(data)


async def handler(room: Room, sock: trionet.net.Socket) -> None:
    incoming = lines(sock)
    name = await anext(incoming, None)  # a client says its name first
    if name is None:
        return
    outbox, inbox = trio.open_memory_channel[bytes](OUTBOX_SIZE)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(write_outbox, sock, inbox)
        room.join(Client(name, outbox, nursery.cancel_scope))
        try:
            async for line in incoming:
                room.broadcast(f"{name}: {line}", sender=name)
        finally:
            room.leave(name)
            nursery.cancel_scope.cancel()  # the writer too: nobody to write to


async def join(port: int, name: str) -> tuple[trionet.net.Socket, AsyncIterator[str]]:
    sock = await trionet.net.connect(port, "127.0.0.1")
    await sock.send(f"{name}\n")
    incoming = lines(sock)
    print(f"{name} reads: {await anext(incoming)}")
    return sock, incoming


async def main() -> None:
    room = Room()
    async with trio.open_nursery() as nursery:
        serve = partial(trionet.net.serve, partial(handler, room), 0, host="127.0.0.1")
        server = await nursery.start(serve)
        alice, _ = await join(server.port, "alice")
        bob, bob_reads = await join(server.port, "bob")
        carol, carol_reads = await join(server.port, "carol")  # and then she stops reading

        # alice talks and bob answers each line; carol reads none of them.
        for i in range(FLOOD):
            await alice.send(f"line {i} " + "." * 1000 + "\n")
            while not (line := await anext(bob_reads)).startswith("alice: "):
                print(f"bob reads: {line}")  # the room's notices
        print(f"bob reads: all {FLOOD} of alice's lines")

        # carol reads what the kernel still held for her, then the end of the connection.
        async for _ in carol_reads:
            pass
        print("carol reads: nothing more, the server closed her connection")

        await alice.aclose()
        print(f"bob reads: {await anext(bob_reads)}")
        await bob.aclose()
        await carol.aclose()
        await server.aclose()


if __name__ == "__main__":
    trio.run(main)
