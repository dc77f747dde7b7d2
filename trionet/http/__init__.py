"""trionet.http: HTTP/1.1 server and client on h11, as Node's ``http`` module.

    async def app(req: trionet.http.Request, res: trionet.http.Response) -> None:
        await res.end(b"Hello World\\n")

    server = await nursery.start(trionet.http.serve, app, 1337)
    res = await trionet.http.request(f"http://127.0.0.1:{server.port}/")
"""

from __future__ import annotations

from ..agent import Agent as Agent
from ._client import ClientResponse as ClientResponse
from ._client import connect_tunnel as connect_tunnel
from ._client import global_agent as global_agent
from ._client import request as request
from ._client import stream as stream
from ._server import ClientError as ClientError
from ._server import Request as Request
from ._server import Response as Response
from ._server import serve as serve

__all__ = [
    "Agent",
    "ClientError",
    "ClientResponse",
    "Request",
    "Response",
    "connect_tunnel",
    "global_agent",
    "request",
    "serve",
    "stream",
]
