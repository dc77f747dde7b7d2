"""trionet.http: HTTP/1.1 server and client on h11, as Node's ``http`` module.

    async def app(req: trionet.http.Request, res: trionet.http.Response) -> None:
        await res.end(b"Hello World\\n")

    server = await nursery.start(trionet.http.serve, app, 1337)
    res = await trionet.http.request(f"http://127.0.0.1:{server.port}/")

The client's errors are re-exported here (the same classes as
``trionet.ConnectError`` and the others), so one import serves a module that
only does HTTP:

- :class:`~trionet.ConnectError`: the server could not be reached.
- :class:`~trionet.ConnectionLost`: it closed or reset the connection without
  answering (a ``ConnectError``).
- :class:`~trionet.TLSError`: the TLS handshake of an ``https`` URL failed.
- :class:`~trionet.ProtocolError`: the response broke HTTP/1.1.
- :class:`~trionet.MessageSizeError`: the body is over ``max_body_size``.
- :class:`~trionet.TimeoutError`, :class:`~trionet.PoolTimeout`: ``timeout``
  or the agent's ``pool_timeout`` ran out.
"""

from __future__ import annotations

from .._errors import ConnectError as ConnectError
from .._errors import ConnectionLost as ConnectionLost
from .._errors import MessageSizeError as MessageSizeError
from .._errors import PoolTimeout as PoolTimeout
from .._errors import ProtocolError as ProtocolError
from .._errors import TimeoutError as TimeoutError
from .._errors import TLSError as TLSError
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
    "ConnectError",
    "ConnectionLost",
    "MessageSizeError",
    "PoolTimeout",
    "ProtocolError",
    "Request",
    "Response",
    "TLSError",
    "TimeoutError",
    "connect_tunnel",
    "global_agent",
    "request",
    "serve",
    "stream",
]
