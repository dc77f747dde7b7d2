"""trionet.dgram: UDP sockets, as Node's ``dgram`` module.

    sock = await trionet.dgram.bind(41234, "127.0.0.1")
    async for message, rinfo in sock:
        print(f"{message!r} from {rinfo.address}:{rinfo.port}")

Trio has no high-level UDP API (trio#537); this is it.
"""

from __future__ import annotations

import errno
import logging
import socket as _stdlib_socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Literal

import trio

from ._accept import ACCEPT_BACKOFF as RETRY_AFTER
from ._accept import Episode
from ._errors import ConnectError, MessageSizeError
from ._server import Server

__all__ = [
    "DEFAULT_MAX_HANDLERS",
    "MAX_DATAGRAM_SIZE",
    "Handler",
    "RemoteInfo",
    "Server",
    "UDPSocket",
    "bind",
    "serve",
]

logger = logging.getLogger("trionet.dgram")

Family = Literal["udp4", "udp6"]

#: The largest UDP datagram there is (the 16-bit length field); receiving into
#: a buffer this big can never truncate.
MAX_DATAGRAM_SIZE = 65535

#: How many handlers ``serve(..., concurrent=True)`` runs at once; datagrams
#: arriving past it are dropped and counted in ``server.dropped``. Without a cap
#: a flood ran ~17,000 handlers at once in 120 MB (about 7 KB a handler), so
#: 1,000 bounds them near 7 MB while leaving far more concurrency than a
#: handler that waits on I/O usually needs. Dropping is what UDP does anyway:
#: the kernel drops datagrams once the socket's receive queue is full (Linux's
#: default, net.core.rmem_default = 212,992 bytes, holds a few hundred small
#: datagrams), and a sender that needs delivery retries; queueing past the cap
#: instead would only move that unbounded queue into our memory.
DEFAULT_MAX_HANDLERS = 1000

_FAMILIES = {"udp4": _stdlib_socket.AF_INET, "udp6": _stdlib_socket.AF_INET6}
_ANY = {"udp4": "0.0.0.0", "udp6": "::"}


@dataclass(frozen=True, slots=True)
class RemoteInfo:
    """Where a datagram came from (Node's ``rinfo``)."""

    #: The sender's IP address.
    address: str
    #: "IPv4" or "IPv6", as in Node.
    family: str
    #: The sender's port.
    port: int
    #: The datagram's size in bytes.
    size: int


class UDPSocket:
    """A bound UDP socket; create it with :func:`bind`."""

    def __init__(self, sock: trio.socket.SocketType, family: Family) -> None:
        self.socket = sock
        self.family = family
        # Node's rinfo.family; worked out once, as socket.family builds an enum per call.
        self._rinfo_family = "IPv6" if family == "udp6" else "IPv4"
        self._connected: tuple[str, int] | None = None
        name = sock.getsockname()
        self._address: tuple[str, int] = (name[0], name[1])

    def __repr__(self) -> str:
        return f"<trionet.dgram.UDPSocket {self.family} {self.address!r}>"

    async def __aenter__(self) -> UDPSocket:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def address(self) -> tuple[str, int]:
        """The local ``(host, port)`` this socket is bound to (still known after close)."""
        return self._address

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def remote_address(self) -> tuple[str, int] | None:
        """The peer given to :meth:`connect`, or None."""
        return self._connected

    # -- sending and receiving ---------------------------------------------
    async def send(
        self, data: bytes | bytearray | memoryview | str, address: tuple[str, int] | None = None
    ) -> None:
        """Send one datagram to ``address``, or to the connected peer when omitted.

        Raises:
          MessageSizeError: the datagram is too large for the network to carry.
        """
        if isinstance(data, str):
            data = data.encode()
        try:
            if address is None:
                if self._connected is None:
                    raise ValueError("send() needs an address on an unconnected socket")
                await self.socket.send(data)
            else:
                if self._connected is not None:
                    raise ValueError("this socket is connected; send() takes no address")
                await self.socket.sendto(data, address)
        except OSError as exc:
            if exc.errno == errno.EMSGSIZE:
                raise MessageSizeError(
                    f"datagram of {len(data)} bytes is too large to send"
                ) from None
            raise self._refused(exc) from None

    async def receive(self, max_size: int = MAX_DATAGRAM_SIZE) -> tuple[bytes, RemoteInfo]:
        """Wait for the next datagram and say where it came from.

        Raises:
          MessageSizeError: the datagram was longer than ``max_size`` (never
            with the default, which fits any datagram).
          ConnectError: on a connected socket, an earlier datagram found no
            one listening at the peer's port (the kernel's ICMP report).
        """
        try:
            # One byte more than allowed: a datagram that fills it was too long
            # (portable, where recvmsg's MSG_TRUNC flag is not).
            data, sender = await self.socket.recvfrom(max_size + 1)
        except OSError as exc:
            raise self._refused(exc) from None
        if len(data) > max_size:
            raise MessageSizeError(f"a datagram longer than {max_size} bytes was truncated")
        return data, RemoteInfo(sender[0], self._rinfo_family, sender[1], len(data))

    def _refused(self, exc: OSError) -> OSError:
        """``exc``, or for a connected socket's ECONNREFUSED a ConnectError naming the peer."""
        if exc.errno != errno.ECONNREFUSED or self._connected is None:
            return exc
        host, port = self._connected
        return ConnectError(exc.errno, f"ECONNREFUSED: nothing listens on {host}:{port}")

    async def __aiter__(self) -> AsyncIterator[tuple[bytes, RemoteInfo]]:
        """Yield ``(message, rinfo)`` for every datagram until the socket is closed."""
        while True:
            try:
                yield await self.receive()
            except trio.ClosedResourceError:
                return

    async def connect(self, address: tuple[str, int]) -> None:
        """Talk only to ``address``: ``send(data)`` goes there, others' datagrams are dropped."""
        if self._connected is not None:
            raise OSError(errno.EISCONN, "ERR_SOCKET_DGRAM_IS_CONNECTED")
        await self.socket.connect(address)
        peer = self.socket.getpeername()
        self._connected = (peer[0], peer[1])

    # -- options -----------------------------------------------------------
    def set_broadcast(self, flag: bool) -> None:
        """Allow sending to broadcast addresses."""
        self.socket.setsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_BROADCAST, int(flag))

    def set_ttl(self, ttl: int) -> None:
        """Set the unicast hop limit (1..255; the OS default is 64)."""
        _check_ttl(ttl, 1)
        if self.family == "udp6":
            self.socket.setsockopt(
                _stdlib_socket.IPPROTO_IPV6, _stdlib_socket.IPV6_UNICAST_HOPS, ttl
            )
        else:
            self.socket.setsockopt(_stdlib_socket.IPPROTO_IP, _stdlib_socket.IP_TTL, ttl)

    def set_multicast_ttl(self, ttl: int) -> None:
        """Set the multicast hop limit (0..255; the OS default is 1)."""
        _check_ttl(ttl, 0)
        if self.family == "udp6":
            self.socket.setsockopt(
                _stdlib_socket.IPPROTO_IPV6, _stdlib_socket.IPV6_MULTICAST_HOPS, ttl
            )
        else:
            self.socket.setsockopt(_stdlib_socket.IPPROTO_IP, _stdlib_socket.IP_MULTICAST_TTL, ttl)

    def set_multicast_loopback(self, flag: bool) -> None:
        """Deliver our own multicast datagrams back to us (on by default)."""
        if self.family == "udp6":
            opt = (_stdlib_socket.IPPROTO_IPV6, _stdlib_socket.IPV6_MULTICAST_LOOP)
        else:
            opt = (_stdlib_socket.IPPROTO_IP, _stdlib_socket.IP_MULTICAST_LOOP)
        self.socket.setsockopt(*opt, int(flag))

    def set_multicast_interface(self, interface: str) -> None:
        """Send multicast through ``interface``: an IPv4 address for udp4, as
        for :meth:`add_membership` for udp6 ("lo", "::%lo")."""
        if self.family == "udp6":
            self.socket.setsockopt(
                _stdlib_socket.IPPROTO_IPV6,
                _stdlib_socket.IPV6_MULTICAST_IF,
                _interface_index(interface),
            )
            return
        self.socket.setsockopt(
            _stdlib_socket.IPPROTO_IP,
            _stdlib_socket.IP_MULTICAST_IF,
            _stdlib_socket.inet_aton(interface),
        )

    def add_membership(self, group: str, interface: str | None = None) -> None:
        """Join the multicast ``group`` on ``interface``, or on the kernel's choice.

        For udp4 the interface is one of its IPv4 addresses ("127.0.0.1"); for
        udp6 its name ("lo"), Node's scoped form ("::%lo") or its index.
        """
        self._membership(group, interface, join=True)

    def drop_membership(self, group: str, interface: str | None = None) -> None:
        """Leave the multicast ``group``."""
        self._membership(group, interface, join=False)

    def _membership(self, group: str, interface: str | None, *, join: bool) -> None:
        if self.family == "udp6":
            # struct ipv6_mreq: the group, then the interface index (0: the kernel picks).
            mreq = _stdlib_socket.inet_pton(_stdlib_socket.AF_INET6, group) + struct.pack(
                "@I", _interface_index(interface)
            )
            opt = _stdlib_socket.IPV6_JOIN_GROUP if join else _stdlib_socket.IPV6_LEAVE_GROUP
            self.socket.setsockopt(_stdlib_socket.IPPROTO_IPV6, opt, mreq)
            return
        mreq = _stdlib_socket.inet_aton(group) + _stdlib_socket.inet_aton(interface or "0.0.0.0")
        opt = _stdlib_socket.IP_ADD_MEMBERSHIP if join else _stdlib_socket.IP_DROP_MEMBERSHIP
        self.socket.setsockopt(_stdlib_socket.IPPROTO_IP, opt, mreq)

    async def aclose(self) -> None:
        """Close the socket; a pending :meth:`receive` ends."""
        self.socket.close()
        await trio.lowlevel.checkpoint()


def _interface_index(interface: str | None) -> int:
    """An IPv6 interface given as a name ("lo"), Node's scoped form ("::%lo") or an index."""
    if not interface:
        return 0
    name = interface.rpartition("%")[2]
    return int(name) if name.isdigit() else _stdlib_socket.if_nametoindex(name)


def _check_ttl(ttl: int, lowest: int) -> None:
    if not lowest <= ttl <= 255:
        raise ValueError(f"ttl must be in {lowest}..255, not {ttl}")


async def bind(
    port: int = 0,
    host: str | None = None,
    *,
    family: Family = "udp4",
    reuse_address: bool = False,
) -> UDPSocket:
    """Create a UDP socket bound to ``host:port`` (Node's ``createSocket`` + ``bind``).

    ``host=None`` binds all interfaces; ``port=0`` picks a free port.
    """
    if family not in _FAMILIES:
        raise ValueError(f"family must be 'udp4' or 'udp6', not {family!r}")
    sock = trio.socket.socket(_FAMILIES[family], _stdlib_socket.SOCK_DGRAM)
    try:
        if reuse_address:
            sock.setsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_REUSEADDR, 1)
            sock.setsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_REUSEPORT, 1)
        if family == "udp6":
            sock.setsockopt(_stdlib_socket.IPPROTO_IPV6, _stdlib_socket.IPV6_V6ONLY, 0)
        await sock.bind((host if host is not None else _ANY[family], port))
    except BaseException:
        sock.close()
        raise
    return UDPSocket(sock, family)


#: The handler ``serve`` runs for each datagram.
Handler = Callable[[bytes, RemoteInfo, UDPSocket], Awaitable[None]]


async def serve(
    handler: Handler,
    port: int = 0,
    *,
    host: str | None = None,
    family: Family = "udp4",
    concurrent: bool = False,
    max_handlers: int = DEFAULT_MAX_HANDLERS,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``handler(message, rinfo, sock)`` for every datagram that arrives on ``port``.

    Handlers run one at a time in arrival order by default; with
    ``concurrent=True`` each datagram gets its own task, up to
    ``max_handlers`` at once: a datagram arriving while that many run is
    dropped, as the kernel drops datagrams a busy receiver has no room for,
    and counted in ``server.dropped`` (a run of drops is logged once when it
    starts and once when it ends, at WARNING). A handler's exception is logged
    and the server goes on. ``server.connections`` counts handlers running now.
    ``server.close()`` stops receiving; a handler still running can reply, and
    the socket closes once the last one is done.
    """
    if max_handlers < 1:
        raise ValueError(f"max_handlers must be >= 1, not {max_handlers}")
    sock = await bind(port, host, family=family)
    server = Server([sock.socket], close_sockets=False, max_connections=max_handlers)
    receiver = _Receiver(server, sock, handler, concurrent)
    try:
        await server.run([receiver.start], task_status=task_status)
    finally:
        sock.socket.close()


class _Receiver:
    """The loop behind :func:`serve`: receive a datagram, hand it to the handler.

    The loop runs in the server's connection nursery, so ``close()`` (which
    cancels only the accept side) lets an inline handler finish. What ``close()``
    interrupts is the wait for the next datagram: :meth:`start` wakes it with
    ``trio.lowlevel.notify_closing``, which raises ClosedResourceError in the
    waiting task without closing the socket the handlers reply on. (A cancel
    scope around each receive would do the same, at a measurable cost per
    datagram; so would spawning a task per datagram for inline handlers.)
    """

    def __init__(self, server: Server, sock: UDPSocket, handler: Handler, concurrent: bool):
        self._server = server
        self._sock = sock
        self._handler = handler
        self._concurrent = concurrent
        self._stopped = False

    async def start(self, nursery: trio.Nursery) -> None:
        """Start the loop in ``nursery``; stop its receiving when this task is cancelled."""
        nursery.start_soon(self._loop, nursery)
        try:
            await trio.sleep_forever()
        finally:
            self._stopped = True
            trio.lowlevel.notify_closing(self._sock.socket)

    async def _loop(self, nursery: trio.Nursery) -> None:
        server = self._server
        cap = server.max_connections
        assert cap is not None
        dropping = Episode()  # datagrams dropped at the handler cap in a row
        while not self._stopped:
            try:
                message, rinfo = await self._sock.receive()
            except trio.ClosedResourceError:
                return
            except OSError as exc:  # ENOBUFS, ENOMEM...: transient, as in the accept loop
                logger.error("receiving a datagram failed: %s; retrying in %ss", exc, RETRY_AFTER)
                await trio.sleep(RETRY_AFTER)
                continue
            if self._concurrent:
                if server.connections >= cap:
                    server.dropped += 1
                    if dropping.hit(trio.current_time()):
                        logger.warning(
                            "%d datagram handlers running (max_handlers): dropping datagrams"
                            " until one ends", cap,
                        )  # fmt: skip
                    continue
                if dropping.count:
                    counted, lasted = dropping.clear(trio.current_time())
                    logger.warning(
                        "handling datagrams again: %d dropped in %.1fs at max_handlers=%d",
                        counted, lasted, cap,
                    )  # fmt: skip
            job = partial(self._handler, message, rinfo, self._sock)
            what = f"datagram handler for {rinfo.address}:{rinfo.port}"
            if self._concurrent:
                server.start_counted(nursery, what, job)
            else:
                await server.run_counted(what, job)
