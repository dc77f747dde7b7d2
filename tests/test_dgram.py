"""trionet.dgram: UDP over loopback, against trionet and a Node ``dgram`` peer."""

from __future__ import annotations

import errno
import logging
import socket as stdlib_socket
import struct
from functools import partial
from typing import Any

import pytest
import trio
from conftest import node_process, open_fds

import trionet
from trionet import dgram

HOST = "127.0.0.1"
SEED_MESSAGE = "深入浅出Node.js"


def _has_ipv6_loopback() -> bool:
    try:
        with stdlib_socket.socket(stdlib_socket.AF_INET6, stdlib_socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1)")

GROUP = "239.255.77.1"
GROUP6 = "ff01::4242"  # interface-local scope: never leaves the machine


def _multicast_refusal(family: int) -> str | None:
    """Why the kernel will not loop multicast back over lo, or None if it will.

    Checked once with plain sockets, so the tests can skip with the kernel's own
    words (a skip raised inside a Trio test loses its reason).
    """
    v6 = family == stdlib_socket.AF_INET6
    try:
        with stdlib_socket.socket(family, stdlib_socket.SOCK_DGRAM) as s:
            if v6:
                index = stdlib_socket.if_nametoindex("lo")
                mreq = stdlib_socket.inet_pton(family, GROUP6) + struct.pack("@I", index)
                s.setsockopt(stdlib_socket.IPPROTO_IPV6, stdlib_socket.IPV6_JOIN_GROUP, mreq)
                s.setsockopt(stdlib_socket.IPPROTO_IPV6, stdlib_socket.IPV6_MULTICAST_IF, index)
                s.sendto(b"probe", (GROUP6, 9))
            else:
                mreq = stdlib_socket.inet_aton(GROUP) + stdlib_socket.inet_aton("127.0.0.1")
                s.setsockopt(stdlib_socket.IPPROTO_IP, stdlib_socket.IP_ADD_MEMBERSHIP, mreq)
                iface = stdlib_socket.inet_aton("127.0.0.1")
                s.setsockopt(stdlib_socket.IPPROTO_IP, stdlib_socket.IP_MULTICAST_IF, iface)
                s.sendto(b"probe", (GROUP, 9))
    except OSError as exc:
        return f"the kernel refuses multicast on lo: {exc}"
    return None


_REFUSAL4 = _multicast_refusal(stdlib_socket.AF_INET)
_REFUSAL6 = _multicast_refusal(stdlib_socket.AF_INET6) if _has_ipv6_loopback() else "no IPv6"


async def start_recorder(
    nursery: trio.Nursery, **kwargs: Any
) -> tuple[dgram.Server, trio.MemoryReceiveChannel[tuple[bytes, dgram.RemoteInfo]]]:
    """A ``dgram.serve`` server that hands every datagram to a channel."""
    send, receive = trio.open_memory_channel[tuple[bytes, dgram.RemoteInfo]](100)

    async def record(message: bytes, rinfo: dgram.RemoteInfo, sock: dgram.UDPSocket) -> None:
        await send.send((message, rinfo))

    kwargs.setdefault("host", HOST)
    server = await nursery.start(partial(dgram.serve, record, 0, **kwargs))
    return server, receive


# -- the seed's example ----------------------------------------------------------
async def test_server_sees_the_seed_message_with_the_senders_address(
    nursery: trio.Nursery,
) -> None:
    server, received = await start_recorder(nursery)
    async with await dgram.bind(0, HOST) as client:
        await client.send(SEED_MESSAGE, (HOST, server.port))
        with trio.fail_after(5):
            message, rinfo = await received.receive()
    assert message.decode() == SEED_MESSAGE
    assert rinfo == dgram.RemoteInfo(HOST, "IPv4", client.port, len(SEED_MESSAGE.encode()))
    assert server.address == (HOST, server.port)


async def test_bound_socket_receives_by_iteration() -> None:
    """The seed's server written with ``async for`` instead of ``serve``."""
    async with await dgram.bind(0, HOST) as server, await dgram.bind(0, HOST) as client:
        for i in range(3):
            await client.send(f"{SEED_MESSAGE} {i}", server.address)
        got = []
        with trio.fail_after(5):
            async for message, rinfo in server:
                got.append(message.decode())
                assert rinfo.port == client.port
                if len(got) == 3:
                    break
    assert got == [f"{SEED_MESSAGE} {i}" for i in range(3)]


async def test_iteration_ends_when_the_socket_is_closed(nursery: trio.Nursery) -> None:
    sock = await dgram.bind(0, HOST)
    got = []

    async def drain() -> None:
        async for message, _ in sock:
            got.append(message)

    with trio.fail_after(5):
        async with trio.open_nursery() as inner:
            inner.start_soon(drain)
            await trio.testing.wait_all_tasks_blocked()
            await sock.aclose()
    assert got == []


# -- Node's dgram, both ways -------------------------------------------------------
async def test_trionet_client_and_node_dgram_peer(node: str) -> None:
    peer_process = node_process(node, "dgram_peer.js", "udp4", HOST)
    async with peer_process as peer, await dgram.bind(0, HOST) as client:
        await client.send(SEED_MESSAGE, (HOST, peer["port"]))
        with trio.fail_after(10):
            message, rinfo = await client.receive()
    assert message.decode() == f"node got: {SEED_MESSAGE}"
    assert (rinfo.address, rinfo.port, rinfo.family) == (HOST, peer["port"], "IPv4")


async def test_node_dgram_peer_sends_to_a_trionet_server(nursery: trio.Nursery, node: str) -> None:
    replies = []

    async def answer(message: bytes, rinfo: dgram.RemoteInfo, sock: dgram.UDPSocket) -> None:
        if not message.startswith(b"node got: "):
            await sock.send(b"trionet says hi", (rinfo.address, rinfo.port))
        else:
            replies.append(message)

    server = await nursery.start(partial(dgram.serve, answer, 0, host=HOST))
    async with node_process(node, "dgram_peer.js", "udp4", HOST, str(server.port)):
        with trio.fail_after(10):
            while not replies:
                await trio.sleep(0.01)
    assert replies == [b"node got: trionet says hi"]


@needs_ipv6
async def test_udp6_on_ipv6_loopback(nursery: trio.Nursery, node: str) -> None:
    server, received = await start_recorder(nursery, host="::1", family="udp6")
    async with await dgram.bind(0, "::1", family="udp6") as client:
        await client.send(SEED_MESSAGE, ("::1", server.port))
        with trio.fail_after(5):
            message, rinfo = await received.receive()
        assert message.decode() == SEED_MESSAGE
        assert (rinfo.address, rinfo.family, rinfo.port) == ("::1", "IPv6", client.port)

        async with node_process(node, "dgram_peer.js", "udp6", "::1") as peer:
            await client.send(b"v6", ("::1", peer["port"]))
            with trio.fail_after(10):
                message, rinfo = await client.receive()
        assert message == b"node got: v6"
        assert rinfo.family == "IPv6"


# -- multicast, broadcast, TTL -------------------------------------------------------
@pytest.mark.skipif(_REFUSAL4 is not None, reason=str(_REFUSAL4))
async def test_multicast_on_loopback() -> None:
    receiver = await dgram.bind(0, GROUP, reuse_address=True)
    sender = await dgram.bind(0, HOST)
    async with receiver, sender:
        receiver.add_membership(GROUP, HOST)
        sender.set_multicast_interface(HOST)
        sender.set_multicast_ttl(1)
        sender.set_multicast_loopback(True)
        await sender.send(b"to the group", (GROUP, receiver.port))
        with trio.fail_after(5):
            message, rinfo = await receiver.receive()
        assert (message, rinfo.address, rinfo.port) == (b"to the group", HOST, sender.port)

        # After leaving the group, nothing more arrives.
        receiver.drop_membership(GROUP, HOST)
        await sender.send(b"after leaving", (GROUP, receiver.port))
        with trio.move_on_after(0.3) as waited:
            await receiver.receive()
        assert waited.cancelled_caught


@pytest.mark.skipif(_REFUSAL6 is not None, reason=str(_REFUSAL6))
async def test_udp6_multicast_on_loopback() -> None:
    # Linux will not bind a socket to an interface-local group, so the receiver
    # takes the wildcard; the group's scope keeps the datagram on this machine.
    receiver = await dgram.bind(0, "::", family="udp6", reuse_address=True)
    sender = await dgram.bind(0, "::1", family="udp6")
    async with receiver, sender:
        receiver.add_membership(GROUP6, "lo")
        sender.set_multicast_interface("::%lo")
        sender.set_multicast_ttl(1)
        await sender.send(b"v6 group", (GROUP6, receiver.port))
        with trio.fail_after(5):
            message, rinfo = await receiver.receive()
        assert (message, rinfo.family, rinfo.port) == (b"v6 group", "IPv6", sender.port)
        receiver.drop_membership(GROUP6, "lo")


@needs_ipv6
async def test_udp6_socket_options_reach_the_socket() -> None:
    async with await dgram.bind(0, "::1", family="udp6") as sock:
        sock.set_ttl(17)
        assert (
            sock.socket.getsockopt(stdlib_socket.IPPROTO_IPV6, stdlib_socket.IPV6_UNICAST_HOPS)
            == 17
        )
        sock.set_multicast_ttl(3)
        assert (
            sock.socket.getsockopt(stdlib_socket.IPPROTO_IPV6, stdlib_socket.IPV6_MULTICAST_HOPS)
            == 3
        )
        sock.set_multicast_loopback(False)
        assert (
            sock.socket.getsockopt(stdlib_socket.IPPROTO_IPV6, stdlib_socket.IPV6_MULTICAST_LOOP)
            == 0
        )


async def test_socket_options_reach_the_socket() -> None:
    async with await dgram.bind(0, HOST) as sock:
        raw = sock.socket
        sock.set_broadcast(True)
        assert raw.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_BROADCAST) == 1
        sock.set_ttl(9)
        assert raw.getsockopt(stdlib_socket.IPPROTO_IP, stdlib_socket.IP_TTL) == 9
        sock.set_multicast_ttl(0)
        assert raw.getsockopt(stdlib_socket.IPPROTO_IP, stdlib_socket.IP_MULTICAST_TTL) == 0
        with pytest.raises(ValueError, match="ttl"):
            sock.set_ttl(0)
        with pytest.raises(ValueError, match="ttl"):
            sock.set_multicast_ttl(256)


# -- sizes ---------------------------------------------------------------------------
@pytest.mark.parametrize("size", [65508, 70000])
async def test_an_oversized_datagram_raises_message_size_error(size: int) -> None:
    """65,507 bytes is the most IPv4 UDP carries; more is an error, not a truncation."""
    async with await dgram.bind(0, HOST) as sock:
        with pytest.raises(trionet.MessageSizeError, match=str(size)):
            await sock.send(b"x" * size, sock.address)


async def test_the_largest_datagram_arrives_whole() -> None:
    async with await dgram.bind(0, HOST) as a, await dgram.bind(0, HOST) as b:
        await a.send(b"y" * 65507, b.address)
        with trio.fail_after(5):
            message, rinfo = await b.receive()
    assert message == b"y" * 65507
    assert rinfo.size == 65507


async def test_a_receive_buffer_too_small_raises_instead_of_truncating() -> None:
    async with await dgram.bind(0, HOST) as a, await dgram.bind(0, HOST) as b:
        await a.send(b"z" * 100, b.address)
        with trio.fail_after(5), pytest.raises(trionet.MessageSizeError, match="10 bytes"):
            await b.receive(max_size=10)


# -- connect ---------------------------------------------------------------------------
async def test_a_connected_socket_sends_without_an_address_and_hears_only_its_peer() -> None:
    async with (
        await dgram.bind(0, HOST) as server,
        await dgram.bind(0, HOST) as client,
        await dgram.bind(0, HOST) as stranger,
    ):
        await client.connect(server.address)
        assert client.remote_address == server.address
        await client.send(b"hello")
        with trio.fail_after(5):
            assert (await server.receive())[0] == b"hello"
        await stranger.send(b"not for you", client.address)
        await server.send(b"reply", client.address)
        with trio.fail_after(5):
            message, rinfo = await client.receive()
        assert (message, rinfo.port) == (b"reply", server.port)

        with pytest.raises(ValueError, match="connected"):
            await client.send(b"x", stranger.address)
        with pytest.raises(OSError) as info:
            await client.connect(stranger.address)
        assert info.value.errno == errno.EISCONN


async def test_a_connected_socket_reports_a_closed_port_as_connect_error() -> None:
    with stdlib_socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_DGRAM) as gone:
        gone.bind((HOST, 0))
        port = gone.getsockname()[1]
    async with await dgram.bind(0, HOST) as sock:
        await sock.connect((HOST, port))
        await sock.send(b"anyone?")
        with trio.fail_after(5), pytest.raises(trionet.ConnectError, match=f"{HOST}:{port}"):
            await sock.receive()


async def test_an_unconnected_send_needs_an_address() -> None:
    async with await dgram.bind(0, HOST) as sock:
        with pytest.raises(ValueError, match="address"):
            await sock.send(b"x")


async def test_bind_rejects_an_unknown_family() -> None:
    with pytest.raises(ValueError, match="udp4"):
        await dgram.bind(0, HOST, family="udp5")  # type: ignore[arg-type]


# -- serve -------------------------------------------------------------------------------
async def test_a_failing_handler_is_logged_and_the_server_goes_on(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    async def picky(message: bytes, rinfo: dgram.RemoteInfo, sock: dgram.UDPSocket) -> None:
        if message == b"bad":
            raise ValueError("bad datagram")
        await sock.send(b"ok " + message, (rinfo.address, rinfo.port))

    caplog.set_level(logging.ERROR, logger="trionet")
    server = await nursery.start(partial(dgram.serve, picky, 0, host=HOST))
    async with await dgram.bind(0, HOST) as client:
        await client.connect(server.address)
        await client.send(b"bad")
        await client.send(b"good")
        with trio.fail_after(5):
            assert (await client.receive())[0] == b"ok good"
    (failure,) = [r for r in caplog.records if r.name.startswith("trionet") and r.exc_info]
    assert isinstance(failure.exc_info[1], ValueError)  # type: ignore[index]
    assert f"{HOST}:{client.port}" in failure.getMessage()


async def test_inline_handlers_run_one_at_a_time_in_order(nursery: trio.Nursery) -> None:
    running = 0
    most = 0
    order = []

    async def slow(message: bytes, rinfo: dgram.RemoteInfo, sock: dgram.UDPSocket) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await trio.sleep(0.01)
        order.append(message)
        running -= 1

    server = await nursery.start(partial(dgram.serve, slow, 0, host=HOST))
    async with await dgram.bind(0, HOST) as client:
        for i in range(5):
            await client.send(str(i), server.address)
        with trio.fail_after(5):
            while len(order) < 5:
                await trio.sleep(0.01)
    assert order == [b"0", b"1", b"2", b"3", b"4"]
    assert most == 1


async def test_concurrent_handlers_overlap(nursery: trio.Nursery) -> None:
    release = trio.Event()
    arrived = 0

    async def wait_for_all(message: bytes, rinfo: dgram.RemoteInfo, sock: dgram.UDPSocket) -> None:
        nonlocal arrived
        arrived += 1
        await release.wait()

    server = await nursery.start(partial(dgram.serve, wait_for_all, 0, host=HOST, concurrent=True))
    async with await dgram.bind(0, HOST) as client:
        for _ in range(3):
            await client.send(b"x", server.address)
        with trio.fail_after(5):
            while arrived < 3:
                await trio.sleep(0.01)
        assert server.connections == 3  # all three at once
        release.set()
        with trio.fail_after(5):
            while server.connections:
                await trio.sleep(0.01)


#: The cap the flood test sets, and how many datagrams it floods with.
FLOOD_CAP = 50
FLOOD_SIZE = 2000


async def test_a_flood_runs_at_most_max_handlers_and_counts_the_drops(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """Datagrams arriving while max_handlers run are dropped and counted, as the kernel
    drops what a busy receiver has no room for; the server serves on afterwards."""
    release = trio.Event()
    running = peak = handled = 0

    async def hold(message: bytes, rinfo: dgram.RemoteInfo, sock: dgram.UDPSocket) -> None:
        nonlocal running, peak, handled
        running += 1
        peak = max(peak, running)
        try:
            if message == b"flood":
                await release.wait()
            handled += 1
            await sock.send(b"ok " + message, (rinfo.address, rinfo.port))
        finally:
            running -= 1

    caplog.set_level(logging.INFO, logger="trionet")
    serve = partial(dgram.serve, hold, 0, host=HOST, concurrent=True, max_handlers=FLOOD_CAP)
    server = await nursery.start(serve)
    assert server.max_connections == FLOOD_CAP
    with stdlib_socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_DGRAM) as flood:
        flood.setblocking(False)
        sent = 0
        with trio.fail_after(10):
            for _ in range(FLOOD_SIZE):
                try:
                    flood.sendto(b"flood", server.address)
                    sent += 1
                except BlockingIOError:
                    await trio.sleep(0.001)
                if sent % 100 == 0:
                    await trio.sleep(0)  # let the server keep up, as a real receiver might
            counted = -1  # wait for drops, then for the receive queue to run dry
            while not server.dropped or server.dropped != counted:
                counted = server.dropped
                await trio.sleep(0.1)
    assert peak == FLOOD_CAP
    assert server.dropped > 0
    release.set()
    async with await dgram.bind(0, HOST) as client:
        await client.connect(server.address)
        with trio.fail_after(5):
            while server.connections:
                await trio.sleep(0.01)
            await client.send(b"after")
            reply, _ = await client.receive()
    assert reply == b"ok after"
    assert handled == FLOOD_CAP + 1
    drops = [r for r in caplog.records if "dropp" in r.getMessage()]
    assert [r.levelno for r in drops] == [logging.WARNING, logging.WARNING]
    assert f"{server.dropped} dropped" in drops[1].getMessage()


async def test_the_handler_cap_has_a_default_and_must_be_positive(
    nursery: trio.Nursery,
) -> None:
    async def ignore(message: bytes, rinfo: dgram.RemoteInfo, sock: dgram.UDPSocket) -> None:
        pass

    server = await nursery.start(partial(dgram.serve, ignore, 0, host=HOST, concurrent=True))
    assert server.max_connections == dgram.DEFAULT_MAX_HANDLERS == 1000
    with pytest.raises(ValueError, match="max_handlers"):
        await dgram.serve(ignore, 0, host=HOST, max_handlers=0)


async def test_close_stops_receiving_but_lets_a_live_handler_reply(nursery: trio.Nursery) -> None:
    started = trio.Event()
    release = trio.Event()
    handled = []

    async def slow_echo(message: bytes, rinfo: dgram.RemoteInfo, sock: dgram.UDPSocket) -> None:
        handled.append(message)
        started.set()
        await release.wait()
        await sock.send(b"late " + message, (rinfo.address, rinfo.port))

    server = await nursery.start(partial(dgram.serve, slow_echo, 0, host=HOST))
    async with await dgram.bind(0, HOST) as client:
        await client.connect(server.address)
        await client.send(b"first")
        with trio.fail_after(5):
            await started.wait()
            server.close()
            await client.send(b"after close")
            release.set()
            assert (await client.receive())[0] == b"late first"
            await server.wait_closed()
    assert handled == [b"first"]
    assert server.connections == 0


async def test_aclose_timeout_cancels_a_stuck_handler(nursery: trio.Nursery) -> None:
    cancelled = trio.Event()

    async def stuck(message: bytes, rinfo: dgram.RemoteInfo, sock: dgram.UDPSocket) -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    server = await nursery.start(partial(dgram.serve, stuck, 0, host=HOST))
    async with await dgram.bind(0, HOST) as client:
        await client.send(b"x", server.address)
        with trio.fail_after(5):
            while not server.connections:
                await trio.sleep(0.01)
            await server.aclose(timeout=0.1)
    assert cancelled.is_set()


async def test_the_port_is_free_again_after_close(nursery: trio.Nursery) -> None:
    server, _ = await start_recorder(nursery)
    port = server.port
    with trio.fail_after(5):
        await server.aclose()
    async with await dgram.bind(port, HOST) as again:
        assert again.port == port


async def test_no_file_descriptor_leaks_after_200_servers_and_sockets() -> None:
    async def ignore(message: bytes, rinfo: dgram.RemoteInfo, sock: dgram.UDPSocket) -> None:
        pass

    async def one_round() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(dgram.serve, ignore, 0, host=HOST))
            async with await dgram.bind(0, HOST) as client:
                await client.send(b"x", server.address)
            await server.aclose()

    with trio.fail_after(30):
        await one_round()
        before = open_fds()
        for _ in range(200):
            await one_round()
    assert open_fds() <= before
