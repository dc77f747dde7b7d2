"""FastAPI on Trio: trionet.asgi.serve runs the app; a request and a WebSocket talk to it."""

import contextlib
from collections.abc import AsyncIterator
from functools import partial

import trio
from fastapi import FastAPI, WebSocket
from pydantic import BaseModel

import trionet
import trionet.asgi


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
    print("startup")
    yield {"greeting": "hello"}  # the lifespan state: request.state.greeting
    print("shutdown")


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float


@app.post("/items/{item_id}")
async def create(item_id: int, item: Item) -> dict[str, object]:
    return {"id": item_id, "name": item.name, "price": item.price}


@app.websocket("/ws")
async def shout(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text.upper())


async def main() -> None:
    async with trio.open_nursery() as nursery:
        # `trionet serve example:app --port 8000` does the same from the shell.
        server = await nursery.start(partial(trionet.asgi.serve, app, 0, host="127.0.0.1"))
        base = f"127.0.0.1:{server.port}"

        res = await trionet.http.request(
            f"http://{base}/items/1", method="POST", body='{"name": "pen", "price": 1.5}',
            headers={"content-type": "application/json"},
        )  # fmt: skip
        print(res.status, res.json())
        res = await trionet.http.request(f"http://{base}/items/one", method="POST", body="{}")
        print(res.status, res.json()["detail"][0]["type"])

        async with trionet.ws.connect(f"ws://{base}/ws") as ws:
            await ws.send("hello trio")
            print(await ws.receive())
        nursery.cancel_scope.cancel()  # the app's lifespan shutdown still runs


if __name__ == "__main__":
    trio.run(main)
