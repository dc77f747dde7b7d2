"""Placeholder: the HTTP client (issue 4) replaces this module."""

from __future__ import annotations

from typing import Any

from ..agent import Agent


class ClientResponse:
    """A response received by the client (placeholder)."""


#: The agent used when a request names none (Node's ``http.globalAgent``).
global_agent = Agent(max_sockets=5)


async def request(*args: Any, **kwargs: Any) -> ClientResponse:
    raise NotImplementedError("trionet.http.request is not written yet")


def stream(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("trionet.http.stream is not written yet")


async def connect_tunnel(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("trionet.http.connect_tunnel is not written yet")
