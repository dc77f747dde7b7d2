"""The messages between a cluster's primary and a worker: one JSON object per packet.

The channel is a ``SOCK_SEQPACKET`` socketpair the worker inherits: the
kernel keeps each message whole (no framing to get wrong), and a listening
socket's descriptor rides along with the message that answers for it
(``SCM_RIGHTS`` ancillary data: :mod:`trionet.cluster._channel`). Each packet is a 4-byte
big-endian length and that many bytes of UTF-8 JSON; the length makes a
truncated packet an error rather than a JSON puzzle. Rejected: pickle (a
worker must never be able to run code in the primary, nor the reverse, by
what it sends) and Node's ``NODE_CHANNEL_FD`` JSON-lines stream (a stream
socket can deliver a descriptor with a different message than the one it was
sent with, when reads split or join messages).

Messages (``op``):

- worker -> primary ``listen`` ``{id, spec}``: the listening socket for a
  :class:`~trionet._listen.ListenSpec`; the answer is ``listening`` ``{id}``
  with the descriptor attached, or ``failed`` ``{id, errno, message}``;
- worker -> primary ``ready``: the worker serves (``cluster.ready()``; a
  worker is also ready once it has been handed its first listener).

Nothing here does I/O.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

from .._listen import ListenSpec

__all__ = [
    "MAX_MESSAGE_SIZE",
    "WireError",
    "decode",
    "encode",
    "failed",
    "listen",
    "listening",
    "ready",
    "spec_from_wire",
    "spec_to_wire",
]

#: Larger packets are refused: the biggest real one (a listen request with a
#: 108-byte Unix path) is a few hundred bytes.
MAX_MESSAGE_SIZE = 64 * 1024

_LENGTH = struct.Struct(">I")
_OPS = frozenset({"listen", "listening", "failed", "ready"})


class WireError(ValueError):
    """A packet that is not a well-formed message of this protocol."""


def encode(message: Mapping[str, Any]) -> bytes:
    """One packet for ``message`` (a dict with an ``op``)."""
    if message.get("op") not in _OPS:
        raise WireError(f"unknown op {message.get('op')!r}")
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) + _LENGTH.size > MAX_MESSAGE_SIZE:
        raise WireError(f"message of {len(body)} bytes is over {MAX_MESSAGE_SIZE}")
    return _LENGTH.pack(len(body)) + body


def decode(packet: bytes) -> dict[str, Any]:
    """The message in ``packet``; :class:`WireError` if it is not one."""
    if len(packet) < _LENGTH.size:
        raise WireError(f"packet of {len(packet)} bytes has no length")
    (length,) = _LENGTH.unpack_from(packet)
    if length != len(packet) - _LENGTH.size:
        raise WireError(f"length says {length} bytes, packet has {len(packet) - _LENGTH.size}")
    try:
        message = json.loads(packet[_LENGTH.size :])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"not JSON: {exc}") from None
    if not isinstance(message, dict) or message.get("op") not in _OPS:
        raise WireError(f"not a message: {message!r:.80}")
    return message


def listen(request_id: int, spec: ListenSpec) -> dict[str, Any]:
    return {"op": "listen", "id": request_id, "spec": spec_to_wire(spec)}


def listening(request_id: int) -> dict[str, Any]:
    return {"op": "listening", "id": request_id}


def failed(request_id: int, errno: int, message: str) -> dict[str, Any]:
    return {"op": "failed", "id": request_id, "errno": errno, "message": message}


def ready() -> dict[str, Any]:
    return {"op": "ready"}


def spec_to_wire(spec: ListenSpec) -> dict[str, Any]:
    return {
        "host": spec.host,
        "port": spec.port,
        "path": spec.path,
        "backlog": spec.backlog,
        "mode": spec.mode,
        "reuse_port": spec.reuse_port,
    }


def spec_from_wire(data: Any) -> ListenSpec:
    """The spec in a ``listen`` message, every field type-checked."""
    if not isinstance(data, dict):
        raise WireError(f"spec is not an object: {data!r:.80}")
    fields: dict[str, Any] = {}
    for name, kind in (("host", str), ("path", str), ("port", int), ("backlog", int),
                       ("mode", int)):  # fmt: skip
        value = data.get(name)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise WireError(f"spec field {name} is not {kind.__name__}: {value!r:.80}")
        fields[name] = value
    reuse_port = data.get("reuse_port", False)
    if not isinstance(reuse_port, bool):
        raise WireError(f"spec field reuse_port is not bool: {reuse_port!r:.80}")
    if (fields["path"] is None) == (fields["port"] is None):
        raise WireError("spec needs exactly one of port and path")
    return ListenSpec(reuse_port=reuse_port, **fields)
