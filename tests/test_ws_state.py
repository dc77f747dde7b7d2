"""A WebSocket's bookkeeping without sockets: worked examples, then promises under any input.

Each class of :mod:`trionet._ws_state` is driven the way ``WebSocket`` drives
it, and the tests check what a user of ``WebSocket`` relies on: messages come
out whole and in order, the reader stops while the application lags and starts
again when it catches up, a Pong wakes exactly the pings it answers, another
task's fragmented message is never interleaved, and a closed connection
reports the code that closed it.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto.connection import ConnectionState as WireState

from trionet._ws_state import (
    COMPACT_AFTER,
    OK_CLOSE_CODES,
    CloseState,
    Inbox,
    MessageAssembler,
    PingTracker,
    SendOwnership,
    State,
    is_violation,
)

# -- MessageAssembler ----------------------------------------------------------------


def test_a_whole_message_goes_straight_through_without_a_copy() -> None:
    assembler = MessageAssembler()
    data = b"x" * 100
    assert assembler.add(data, finished=True) is data
    assert not assembler


def test_fragments_become_one_message_at_the_last_one() -> None:
    assembler = MessageAssembler()
    assert assembler.add("Hel", finished=False) is None
    assert assembler  # half-received
    assert assembler.add("lo, ", finished=False) is None
    assert assembler.add("wörld", finished=True) == "Hello, wörld"
    assert not assembler
    assert assembler.add(b"\x00", finished=False) is None
    assert assembler.add(b"\x01", finished=True) == b"\x00\x01"


def test_clear_drops_a_half_received_message() -> None:
    assembler = MessageAssembler()
    assembler.add(b"stale", finished=False)
    assembler.clear()
    assert assembler.add(b"fresh", finished=True) == b"fresh"


@given(st.lists(st.lists(st.binary(max_size=20), min_size=1, max_size=6), max_size=10))
def test_any_fragmentation_yields_the_messages_in_order(messages: list[list[bytes]]) -> None:
    assembler = MessageAssembler()
    out = []
    for fragments in messages:
        for index, fragment in enumerate(fragments):
            message = assembler.add(fragment, finished=index == len(fragments) - 1)
            if message is not None:
                out.append(message)
    assert out == [b"".join(fragments) for fragments in messages]


# -- Inbox -------------------------------------------------------------------------


def test_the_inbox_has_room_until_its_byte_limit() -> None:
    inbox = Inbox(limit=10, max_messages=100)
    assert inbox.has_room()
    assert inbox.put(b"12345") is False
    assert inbox.has_room()
    inbox.put(b"67890")
    assert not inbox.has_room()  # the reader stops reading the socket
    assert inbox.take() == b"12345"
    assert inbox.has_room()  # and starts again
    assert inbox.size == 5 and len(inbox) == 1


def test_the_inbox_has_room_until_its_message_count() -> None:
    inbox = Inbox(limit=1 << 20, max_messages=3)
    for message in ("a", "b", "c"):
        inbox.put(message)
    assert not inbox.has_room()
    assert inbox.take() == "a"
    assert inbox.has_room()


def test_put_says_stop_parsing_at_twice_the_room() -> None:
    """One read may hold many messages: the reader parses on up to twice the room."""
    inbox = Inbox(limit=4, max_messages=100)
    assert [inbox.put(b"xx") for _ in range(4)] == [False, False, False, True]
    by_count = Inbox(limit=1 << 20, max_messages=2)
    assert [by_count.put(b"") for _ in range(4)] == [False, False, False, True]


def test_clear_empties_the_inbox() -> None:
    inbox = Inbox(limit=4)
    inbox.put(b"abcdef")
    inbox.clear()
    assert len(inbox) == 0 and inbox.size == 0 and inbox.has_room()


@given(st.lists(st.one_of(st.binary(max_size=8), st.none()), max_size=60))
def test_the_inbox_keeps_order_and_counts_bytes(steps: list[bytes | None]) -> None:
    """Any mix of puts (bytes) and takes (None) keeps FIFO order and an exact byte count."""
    inbox = Inbox(limit=16, max_messages=4)
    expected: list[bytes] = []
    for step in steps:
        if step is not None:
            stop = inbox.put(step)
            expected.append(step)
            assert stop == (sum(map(len, expected)) >= 32 or len(expected) >= 8)
        elif expected:
            assert inbox.take() == expected.pop(0)
        assert inbox.size == sum(map(len, expected))
        assert inbox.has_room() == (inbox.size < 16 and len(expected) < 4)


# -- PingTracker ---------------------------------------------------------------------


def test_a_pong_wakes_its_ping() -> None:
    pings: PingTracker[str] = PingTracker()
    pings.add(b"1", "first")
    pings.add(b"2", "second")
    assert pings.pong(b"2") == ["first", "second"]  # a pong also answers the pings before it
    assert len(pings) == 0


def test_a_pong_wakes_only_the_pings_up_to_the_oldest_match() -> None:
    pings: PingTracker[str] = PingTracker()
    for name, payload in [("a", b"x"), ("b", b"y"), ("c", b"x")]:
        pings.add(payload, name)
    assert pings.pong(b"x") == ["a"]
    assert pings.pong(b"x") == ["b", "c"]


def test_an_unsolicited_pong_wakes_nobody() -> None:
    pings: PingTracker[str] = PingTracker()
    pings.add(b"mine", "waiter")
    assert pings.pong(b"heartbeat") == []
    assert len(pings) == 1


def test_a_cancelled_ping_is_forgotten() -> None:
    pings: PingTracker[object] = PingTracker()
    first, second = object(), object()
    pings.add(b"", first)
    pings.add(b"", second)
    assert pings.forget(second) is True  # it was still waiting: nothing answered it
    assert pings.forget(second) is False
    assert pings.pong(b"") == [first]
    assert pings.forget(first) is False  # answered before


def test_drain_hands_back_every_waiter_when_the_connection_ends() -> None:
    pings: PingTracker[str] = PingTracker()
    pings.add(b"a", "one")
    pings.add(b"b", "two")
    assert pings.drain() == ["one", "two"]
    assert len(pings) == 0 and pings.pong(b"a") == []


# -- SendOwnership -------------------------------------------------------------------


def test_a_fragmented_message_belongs_to_the_task_that_opened_it() -> None:
    sending = SendOwnership()
    owner, other = object(), object()
    assert not sending.must_wait(owner) and not sending.must_wait(other)
    sending.begin(owner, text=True)
    assert not sending.must_wait(owner)  # its next sends continue the message
    assert sending.must_wait(other)  # everyone else waits for the end
    assert sending.end() is True  # the message ended: wake the waiters
    assert not sending.must_wait(other)
    assert sending.end() is False  # a whole message ends nothing


def test_a_fragment_of_the_other_type_is_refused() -> None:
    sending = SendOwnership()
    sending.check_type(text=False)  # nothing open: any type
    sending.begin(object(), text=True)
    sending.check_type(text=True)
    with pytest.raises(TypeError, match="continues a text message"):
        sending.check_type(text=False)


# -- CloseState and the close-code rules ---------------------------------------------


def test_our_close_reports_its_code_until_the_peer_answers() -> None:
    close = CloseState()
    assert close.state is State.OPEN and close.code is None
    assert close.start_closing(4000, "bye") is True  # send the Close
    assert close.state is State.CLOSING
    assert close.reported() == (4000, "bye")
    assert close.start_closing(1000, "") is False  # a second close sends nothing
    close.peer_closed(4000, "bye")
    assert close.finish(4000, "bye") is True
    assert close.state is State.CLOSED and close.reported() == (4000, "bye")


def test_the_first_recorded_code_wins() -> None:
    close = CloseState()
    close.peer_closed(1009, "message over 1048576 bytes")
    assert close.state is State.CLOSING
    close.finish(1006, "connection lost")  # the TCP end that followed changes nothing
    assert (close.code, close.reason) == (1009, "message over 1048576 bytes")
    assert close.finish(1006, "") is False  # already closed


def test_a_connection_that_just_drops_reports_1006() -> None:
    close = CloseState()
    close.finish(1006, "connection lost")
    assert close.reported() == (1006, "connection lost")
    assert close.start_closing(1000, "") is False  # nothing to send on a dead connection


def test_normal_closes_are_the_ones_that_end_async_for() -> None:
    assert {1000, 1001, 1005} == OK_CLOSE_CODES
    assert 1011 not in OK_CLOSE_CODES and 1006 not in OK_CLOSE_CODES


def test_a_close_without_a_state_change_is_a_violation() -> None:
    assert is_violation(WireState.OPEN)  # wsproto failed the peer's frame
    assert is_violation(WireState.LOCAL_CLOSING)
    assert not is_violation(WireState.REMOTE_CLOSING)  # the peer's own Close
    assert not is_violation(WireState.CLOSED)


def test_an_inbox_that_is_never_emptied_stays_small() -> None:
    """The reader keeps putting while the application takes one behind: no unbounded growth."""
    inbox = Inbox(limit=1 << 20, max_messages=100)
    inbox.put(b"first")
    for n in range(10_000):
        inbox.put(b"%d" % n)
        assert inbox.take() == (b"first" if n == 0 else b"%d" % (n - 1))
        assert len(inbox) == 1 and inbox.has_room()
    assert len(inbox.messages) <= 2 * COMPACT_AFTER  # compacted as it goes
    assert sum(m is not None for m in inbox.messages) == 1  # taken messages are not held


def test_the_inbox_gives_messages_in_order_across_compactions() -> None:
    inbox = Inbox(limit=1 << 20, max_messages=1000)
    taken: list[str | bytes] = []
    for n in range(500):
        for k in range(3):
            inbox.put(f"{n}.{k}")
        taken += [inbox.take(), inbox.take()]
    while len(inbox):
        taken.append(inbox.take())
    assert taken == [f"{n}.{k}" for n in range(500) for k in range(3)]
    assert inbox.size == 0 and inbox.messages == []
