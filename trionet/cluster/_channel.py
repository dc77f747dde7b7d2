"""Sending and receiving wire packets, with descriptors, over a SEQPACKET socket.

The one place that knows ``sendmsg``/``recvmsg`` with ``SCM_RIGHTS``; the
primary and the worker both use it (see :mod:`trionet.cluster._wire` for why
the channel is a ``SOCK_SEQPACKET`` socketpair).
"""

from __future__ import annotations

import array
import os
import socket as _stdlib_socket
from collections.abc import Mapping
from typing import Any

import trio

from . import _wire

__all__ = ["Packet", "receive", "send", "socketpair"]

# Room for a few descriptors; one is ever sent, more would be closed unread.
_MAX_FDS = 4
_ANCILLARY_SIZE = _stdlib_socket.CMSG_SPACE(_MAX_FDS * array.array("i").itemsize)


class Packet:
    """A received message and the descriptors that came with it (the receiver owns them)."""

    __slots__ = ("fds", "message")

    def __init__(self, message: dict[str, Any], fds: list[int]) -> None:
        self.message = message
        self.fds = fds

    def close_fds(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def socketpair() -> tuple[_stdlib_socket.socket, _stdlib_socket.socket]:
    """The primary's end and the worker's end of a new channel (both close-on-exec)."""
    return _stdlib_socket.socketpair(_stdlib_socket.AF_UNIX, _stdlib_socket.SOCK_SEQPACKET)


async def send(
    sock: trio.socket.SocketType, message: Mapping[str, Any], fd: int | None = None
) -> None:
    packet = _wire.encode(message)
    if fd is None:
        await sock.send(packet)
        return
    fds = array.array("i", [fd])
    await sock.sendmsg([packet], [(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SCM_RIGHTS, fds)])


async def receive(sock: trio.socket.SocketType) -> Packet | None:
    """The next packet, or None at EOF (the other process is gone).

    Raises :class:`~trionet.cluster._wire.WireError` for a malformed packet
    (its descriptors are closed first).
    """
    data, ancillary, flags, _ = await sock.recvmsg(_wire.MAX_MESSAGE_SIZE, _ANCILLARY_SIZE)
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == _stdlib_socket.SOL_SOCKET and kind == _stdlib_socket.SCM_RIGHTS:
            ints = array.array("i")
            ints.frombytes(payload[: len(payload) - len(payload) % ints.itemsize])
            fds.extend(ints)
    if not data and not fds:
        return None
    try:
        if flags & (_stdlib_socket.MSG_TRUNC | _stdlib_socket.MSG_CTRUNC):
            raise _wire.WireError("packet truncated")
        return Packet(_wire.decode(data), fds)
    except _wire.WireError:
        for fd in fds:
            os.close(fd)
        raise
