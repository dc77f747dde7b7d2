"""Placeholder: the HTTP server driver (issue 3) replaces this module."""

from __future__ import annotations

from typing import Any


class Request:
    """An incoming HTTP request (placeholder)."""


class Response:
    """The response to a Request (placeholder)."""


async def serve(*args: Any, **kwargs: Any) -> None:
    raise NotImplementedError("trionet.http.serve is not written yet")
