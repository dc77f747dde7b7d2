"""Placeholder: the connection pool (issue 4) replaces this module."""

from __future__ import annotations


class Agent:
    """The connection pool behind every client request (placeholder)."""

    def __init__(self, max_sockets: int = 5) -> None:
        self.max_sockets = max_sockets
