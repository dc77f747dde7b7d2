"""Refuse WebSockets from other sites' pages: check Origin in accept= (ws's verifyClient)."""

from functools import partial

import trio

import trionet

#: The pages allowed to open a WebSocket here.
ALLOWED_ORIGINS = {"https://chat.example.com"}


def same_site(req: trionet.http.Request) -> bool | tuple[int, dict[str, str], bytes]:
    """A browser always sends Origin; a page from elsewhere gets 403 instead of 101."""
    if req.headers.get("origin") in ALLOWED_ORIGINS:
        return True
    return 403, {"Content-Type": "text/plain"}, b"not from this site\n"


async def greet(ws: trionet.ws.WebSocket) -> None:
    await ws.send(f"hello, page from {ws.request.headers['origin']}")


async def main() -> None:
    async with trio.open_nursery() as nursery:
        serve = partial(trionet.ws.serve, greet, 0, host="127.0.0.1", accept=same_site)
        server = await nursery.start(serve)
        url = f"ws://127.0.0.1:{server.port}/"
        async with trionet.ws.connect(url, headers={"Origin": "https://chat.example.com"}) as ws:
            print(await ws.receive())
        try:
            async with trionet.ws.connect(url, headers={"Origin": "https://evil.example"}):
                pass
        except trionet.ws.HandshakeError as refused:
            print("refused:", refused.status, refused.body.decode(), end="")
        await server.aclose()


if __name__ == "__main__":
    trio.run(main)
