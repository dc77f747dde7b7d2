"""One request, sent and answered: a connection from the agent, the exchange, one retry.

:func:`exchange` takes a prepared request (:mod:`trionet.http._client_request`)
and returns the response with its head read; the body is the
:class:`~trionet.http._client_response.ClientResponse`'s to read, and the
response gives the connection back to the agent when it is done.

The retry: a kept-alive connection the server closed while our request was on
the way (its idle timeout ran out as we reused it) fails with
:class:`ConnectionLost` before a byte of response. An idempotent request is
then sent once more, on a new connection: RFC 9110 §9.2.2, "the request can be
repeated automatically if a communication failure occurs before the client is
able to read the server's response". Others are not ("A client SHOULD NOT
automatically retry a request with a non-idempotent method"): the error says
so (Node leaves it to the application through ``reusedSocket``). A fresh
connection that fails is not retried either.

Rejected: retrying inside the connection (it does not know whether it was
reused, or which pool to get the next one from), and inside the agent (it
knows nothing of requests, idempotent or not).
"""

from __future__ import annotations

from .._errors import ConnectError, ConnectionLost
from .._pool import Slot
from ..agent import Agent
from ._client_conn import HTTPConnection, open_connection
from ._client_request import _Prepared
from ._client_response import ClientResponse

__all__ = ["exchange"]


async def exchange(prepared: _Prepared, pool: Agent | None) -> ClientResponse:
    """Send one request and read its response head, retrying a stale connection once.

    ``pool`` None opens a connection of the request's own (``agent=False``),
    closed once the response is read.

    Raises:
      ConnectError: the server could not be reached, or closed a kept-alive
        connection as a request that is not idempotent was sent.
      ConnectionLost: the server closed or reset the connection without
        answering (twice, for an idempotent request on a reused connection).
      TLSError, ProtocolError, PoolTimeout: as :func:`trionet.http.request`.
    """
    fresh = False
    while True:
        slot: Slot | None = None
        if pool is None:
            conn = await open_connection(prepared.origin)
        else:
            slot = await pool.acquire(prepared.origin, opener=open_connection, fresh=fresh)
            conn = slot.conn
        try:
            if prepared.wire is not None:
                head = await conn.exchange_whole(
                    prepared.wire, prepared.event.method, prepared.keep_alive
                )
            else:
                head = await conn.exchange(
                    prepared.event, prepared.body, prepared.body_iter, prepared.expect_continue
                )
        except ConnectionLost as exc:
            _drop(pool, slot, conn)
            if slot is None or not slot.reused:
                raise
            if not prepared.retryable:
                raise ConnectError(
                    f"{prepared.origin.name} closed a kept-alive connection as "
                    f"{prepared.method} was sent; not retried (not idempotent)"
                ) from exc
            if fresh:
                raise
            fresh = True
            continue
        except BaseException:
            _drop(pool, slot, conn)
            raise
        return ClientResponse(head, conn, pool, slot, prepared.method)


def _drop(pool: Agent | None, slot: Slot | None, conn: HTTPConnection) -> None:
    """Close a connection that failed mid-exchange, freeing its room in the pool."""
    if pool is not None and slot is not None:
        pool.discard(slot)
    else:
        conn.close()
