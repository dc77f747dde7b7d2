"""The client's response: status, headers, body, and the connection's fate after it.

:class:`ClientResponse` is what :func:`trionet.http.request` returns and
:func:`trionet.http.stream` yields. It owns the connection until its body has
been read: read to the end, the connection goes back to the agent's pool (when
h11 says both sides are done and nothing followed the declared end); cut
short, abandoned or over ``max_body_size``, it is closed. Kept apart from the
request code so that each module stays readable on its own.
"""

from __future__ import annotations

import json as _json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import h11
import trio

from .._errors import MessageSizeError, ProtocolError, TimeoutError
from .._pool import Slot
from ._client_conn import HTTPConnection
from ._headers import Headers

if TYPE_CHECKING:
    from ..agent import Agent

__all__ = ["ClientResponse"]


class ClientResponse:
    """A response: status line and headers, and the body once read.

    From :func:`request` the body is already read into :attr:`body`. From
    :func:`stream` it is not: ``await res.read()`` or ``async for chunk in res``.
    """

    __slots__ = (
        "_agent",
        "_complete",
        "_conn",
        "_headers",
        "_raw",
        "_read_timeout",
        "_slot",
        "body",
        "http_version",
        "method",
        "reason",
        "reused_socket",
        "status",
    )

    def __init__(
        self,
        event: h11.Response | h11.InformationalResponse,
        conn: HTTPConnection | None,
        agent: Agent | None,
        slot: Slot | None,
        method: str,
    ) -> None:
        #: The status code, e.g. 200 (Node's ``statusCode``).
        self.status: int = event.status_code
        #: The reason phrase, e.g. ``"OK"`` (Node's ``statusMessage``).
        self.reason: str = event.reason.decode("latin-1")
        #: ``"1.1"`` or ``"1.0"``.
        self.http_version: str = event.http_version.decode("ascii")
        #: The body; ``b""`` until read when streaming.
        self.body = b""
        self.method = method
        #: True when the request went over a kept-alive connection (Node's ``reusedSocket``).
        self.reused_socket = slot.reused if slot is not None else False
        self._raw = event.headers
        self._headers: Headers | None = None
        self._conn = conn
        self._agent = agent
        self._slot = slot
        self._complete = conn is None
        self._read_timeout: float | None = None

    def __repr__(self) -> str:
        return f"<ClientResponse {self.status} {self.reason}>"

    # -- headers -------------------------------------------------------------------
    @property
    def headers(self) -> Headers:
        """Lower-case names to values, as Node's ``res.headers``."""
        if self._headers is None:
            self._headers = Headers(self._raw)
        return self._headers

    @property
    def headers_distinct(self) -> dict[str, list[str]]:
        """Lower-case names to every value, one per header line (Node's ``headersDistinct``)."""
        result: dict[str, list[str]] = {}
        for name, value in self._raw:
            result.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
        return result

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """Every header line as sent, name case kept (Node's ``rawHeaders``, paired)."""
        return [(bytes(name), bytes(value)) for name, value in self._raw.raw_items()]

    # -- body ------------------------------------------------------------------------
    def text(self, encoding: str | None = None) -> str:
        """The body decoded with ``encoding``, else the Content-Type charset, else UTF-8."""
        if encoding is None:
            encoding = "utf-8"
            for param in self.headers.get("content-type", "").split(";")[1:]:
                name, _, value = param.strip().partition("=")
                if name.lower() == "charset" and value:
                    encoding = value.strip('"')
        return self.body.decode(encoding, errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return _json.loads(self.body)

    async def read(self) -> bytes:
        """Read the rest of the body, store it in :attr:`body` and return it."""
        if self._complete:
            return self.body
        chunks = []
        while (chunk := await self._next_chunk()) is not None:
            chunks.append(chunk)
        self.body = b"".join(chunks)
        return self.body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """Yield the body in chunks as they arrive."""
        while (chunk := await self._next_chunk()) is not None:
            yield chunk

    async def aclose(self) -> None:
        """Stop reading: an unfinished response closes its connection."""
        self._abandon()
        await trio.lowlevel.checkpoint()

    async def _next_chunk(self) -> bytes | None:
        """The next piece of the body, or None at its end (which frees the connection)."""
        if self._complete:
            return None
        conn = self._conn
        assert conn is not None
        try:
            if self._read_timeout is None:
                event = await conn.next_event()
            else:
                with trio.move_on_after(self._read_timeout) as scope:
                    event = await conn.next_event()
                if scope.cancelled_caught:
                    raise TimeoutError(
                        f"no data from {conn.origin.name} for {self._read_timeout}s"
                    )
            while True:
                kind = type(event)
                if kind is h11.Data:
                    return bytes(event.data)
                if kind is h11.EndOfMessage:
                    self._finish()
                    return None
                event = await conn.next_event()
        except BaseException:
            self._abandon()
            raise

    async def _read_all(self, max_body_size: int | None = None) -> None:
        """Read the whole body (the :func:`request` path: no per-chunk bytes copies).

        Over ``max_body_size``: :class:`MessageSizeError`, raised before the
        body is read when Content-Length declares it, else as soon as the
        bytes received pass the limit; the connection is closed either way.
        """
        conn = self._conn
        assert conn is not None
        chunks = []
        try:
            if max_body_size is None:
                while True:
                    event = await conn.next_event()
                    kind = type(event)
                    if kind is h11.Data:
                        chunks.append(event.data)
                    elif kind is h11.EndOfMessage:
                        break
            else:
                declared = self._declared_length()
                if declared is not None and declared > max_body_size:
                    raise self._too_large(max_body_size, f"declares {declared} bytes")
                received = 0
                while True:
                    event = await conn.next_event()
                    kind = type(event)
                    if kind is h11.Data:
                        received += len(event.data)
                        if received > max_body_size:
                            raise self._too_large(max_body_size, f"passed {received} bytes")
                        chunks.append(event.data)
                    elif kind is h11.EndOfMessage:
                        break
        except BaseException:
            self._abandon()
            raise
        self.body = b"".join(chunks)
        self._finish()

    def _declared_length(self) -> int | None:
        """The body length Content-Length declares, when the response has a body."""
        if self.method == "HEAD" or self.status in (204, 304):
            return None
        value = self._raw_header(b"content-length")
        return int(value) if value is not None else None  # h11 checked it is digits

    def _too_large(self, limit: int, how: str) -> MessageSizeError:
        conn = self._conn
        name = conn.origin.name if conn is not None else "the server"
        return MessageSizeError(
            f"response body from {name} {how}, over max_body_size={limit}; "
            "read large bodies in pieces with trionet.http.stream()"
        )

    # -- the connection's fate ---------------------------------------------------------
    def _finish(self) -> None:
        """The body ended: give the connection back if it can carry another exchange."""
        self._complete = True
        conn = self._conn
        assert conn is not None
        h = conn.h11
        extra = h.trailing_data[0]
        if extra:
            self._drop()
            raise ProtocolError(
                f"response from {conn.origin.name} is longer than it declared: "
                f"{len(extra)} bytes after its end"
            )
        if h.our_state is not h11.DONE or h.their_state is not h11.DONE:
            self._drop()
            return
        if conn.requests == 1:
            # The server's idle timeout is per server, not per response: read
            # its Keep-Alive hint once per connection.
            hint = self._raw_header(b"keep-alive")
            if hint is not None:
                conn.keep_alive_hint = _keep_alive_timeout(hint)
        if self._agent is None or self._slot is None:
            self._drop()
        else:
            self._agent.release(self._slot)
        self._conn = None

    def _abandon(self) -> None:
        """The body was not read to the end: the connection cannot be reused."""
        if not self._complete:
            self._complete = True
            self._drop()

    def _drop(self) -> None:
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        if self._agent is not None and self._slot is not None:
            self._agent.discard(self._slot)
        else:
            conn.close()

    def _raw_header(self, name: bytes) -> bytes | None:
        for key, value in self._raw:
            if key == name:
                return bytes(value)
        return None


def _keep_alive_timeout(value: bytes) -> float | None:
    """The ``timeout=N`` of a ``Keep-Alive`` header, in seconds."""
    for part in value.split(b","):
        name, _, number = part.strip().partition(b"=")
        if name.strip().lower() == b"timeout":
            try:
                return float(number.strip())
            except ValueError:
                return None
    return None
