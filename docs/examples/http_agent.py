"""An Agent caps connections per host:port; further requests wait in line (Node's maxSockets)."""

from functools import partial

import trio

import trionet

release = trio.Event()


async def slow(req: trionet.http.Request, res: trionet.http.Response) -> None:
    await release.wait()  # hold every request until main() has looked at the pool
    await res.end("done\n")


async def main() -> None:
    agent = trionet.http.Agent(max_sockets=2)  # new http.Agent({maxSockets: 2})
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(trionet.http.serve, slow, 0, host="127.0.0.1"))
        url = f"http://127.0.0.1:{server.port}/"
        async with trio.open_nursery() as requests:
            for _ in range(5):
                requests.start_soon(partial(trionet.http.request, url, agent=agent))
            await trio.sleep(0.2)
            print("sockets: ", agent.sockets)  # connections in use
            print("requests:", agent.requests)  # requests waiting for one
            release.set()
        print("free:    ", agent.free_sockets)  # kept alive for the next request
        await agent.aclose()
        await server.aclose()


if __name__ == "__main__":
    trio.run(main)
