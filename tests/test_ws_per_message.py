"""What one echoed WebSocket message costs the server: the hot path stays lean.

A 32-byte echo (benchmarks/websocket.py) spends most of its time in the
system calls and in wsproto's parser and builder; what is left is trionet's
own path between the read and the write. These tests count it in units that
do not depend on the machine's load: Python calls made by the handler's task,
its trips through Trio's scheduler, and the copies of the message that
wsproto's extension hooks would make.
"""

from __future__ import annotations

import functools
import sys
from types import FrameType
from typing import Any

import pytest
import trio
from _ws_raw import TEXT, RawClient, frame
from wsproto.extensions import Extension

from trionet import ws

#: Messages counted per test (after a warm-up), each sent once its echo came.
MESSAGES = 200

#: Python calls the handler's task may make per echoed message, resumptions
#: of its coroutines included: wsproto's parse and build (~45 calls, its
#: namedtuples and UTF-8 decoder), Trio's wait for bytes (~15), the frames of
#: the handler's stack (~5) and trionet's receive() and send(). Measured 81;
#: the code before this budget made 114 (the frame guard's payload and
#: completion hooks in wsproto's extension loop, two generator layers per
#: frame, the send and read paths three coroutine layers down to the
#: descriptor, the away watch's set operations).
CALL_BUDGET = 90


class Counted:
    """Python calls and scheduler steps of one task, between start() and stop()."""

    def __init__(self) -> None:
        self.task: trio.lowlevel.Task | None = None
        self.calls = 0
        self.steps = 0
        self.counting = False

    def profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or not self.counting:
            return
        try:
            task = trio.lowlevel.current_task()
        except RuntimeError:  # Trio's scheduler itself, between tasks
            return
        if task is self.task:
            self.calls += 1

    def start(self) -> None:
        self.counting = True
        sys.setprofile(self.profile)

    def stop(self) -> None:
        sys.setprofile(None)
        self.counting = False


class Steps(trio.abc.Instrument):
    def __init__(self, counted: Counted) -> None:
        self.counted = counted

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.counted.counting and task is self.counted.task:
            self.counted.steps += 1


async def echo_and_count(nursery: trio.Nursery, counted: Counted) -> None:
    """Serve an echo, send MESSAGES one by one from a raw client, counting the handler's task."""

    async def handler(conn: ws.WebSocket) -> None:
        counted.task = trio.lowlevel.current_task()
        async for message in conn:
            await conn.send(message)

    serve = functools.partial(ws.serve, handler, 0, host="127.0.0.1")
    server = await nursery.start(serve)
    with trio.fail_after(20):
        raw = await RawClient.connect(server.port)
        message = frame(TEXT, "x" * 32)
        for _ in range(20):  # warm-up: the watch's first ticks, Trio's caches
            await raw.send(message)
            assert (await raw.next_frame()) is not None
        instrument = Steps(counted)
        trio.lowlevel.add_instrument(instrument)
        counted.start()
        try:
            for _ in range(MESSAGES):
                await raw.send(message)
                echoed = await raw.next_frame()
                assert echoed is not None and echoed.payload == b"x" * 32
        finally:
            counted.stop()
            trio.lowlevel.remove_instrument(instrument)
        await raw.aclose()


async def test_an_echoed_message_costs_one_wake_up_and_a_bounded_number_of_calls(
    nursery: trio.Nursery,
) -> None:
    counted = Counted()
    await echo_and_count(nursery, counted)
    # One trip through the scheduler per message: the wait for its bytes.
    # Reading, parsing, queueing and writing the echo take none.
    assert counted.steps <= MESSAGES + MESSAGES // 16  # a rare fairness yield at most
    assert counted.calls / MESSAGES <= CALL_BUDGET, counted.calls / MESSAGES


async def test_the_frame_guard_costs_no_payload_hook_or_copy(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """wsproto calls each listed extension's payload hook with a copy of the
    payload, and its outbound hook with another; the guard needs neither."""
    hooked = []
    for name in ("frame_inbound_payload_data", "frame_outbound", "frame_inbound_complete"):
        original = getattr(Extension, name)

        def spy(self: Extension, *args: Any, _name: str = name, _f: Any = original) -> Any:
            hooked.append((type(self).__name__, _name))
            return _f(self, *args)

        monkeypatch.setattr(Extension, name, spy)
    await echo_and_count(nursery, Counted())
    assert [h for h in hooked if h[0] == "FrameGuard"] == []
