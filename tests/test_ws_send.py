"""The waiting primitives of trionet._ws_send, without sockets: order, hand-over, cancellation."""

from __future__ import annotations

import trio
import trio.testing

from trionet._ws_send import SendLock, Waiters


async def test_waiters_wake_in_arrival_order() -> None:
    waiters, woken = Waiters(), []

    async def wait(name: str) -> None:
        await waiters.park()
        woken.append(name)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for name in "abc":
                nursery.start_soon(wait, name)
                await trio.testing.wait_all_tasks_blocked()
            assert waiters
            for _ in range(2):
                waiters.unpark()
                await trio.testing.wait_all_tasks_blocked()
            assert woken == ["a", "b"]
            waiters.unpark_all()
    assert woken == ["a", "b", "c"] and not waiters


async def test_a_cancelled_waiter_leaves_and_is_not_woken_later() -> None:
    waiters, woken = Waiters(), []

    async def wait(name: str) -> None:
        await waiters.park()
        woken.append(name)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait, "first")
            await trio.testing.wait_all_tasks_blocked()
            with trio.move_on_after(0.01):
                await waiters.park()  # this task gives up waiting
            nursery.start_soon(wait, "second")
            await trio.testing.wait_all_tasks_blocked()
            for _ in range(2):
                waiters.unpark()
                await trio.testing.wait_all_tasks_blocked()
    assert woken == ["first", "second"] and not waiters


async def test_the_send_lock_goes_to_the_oldest_waiter() -> None:
    lock, order = SendLock(), []

    async def use(name: str) -> None:
        async with lock:
            order.append(name)
            await trio.sleep(0)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, lock:
            for name in "xyz":
                nursery.start_soon(use, name)
                await trio.testing.wait_all_tasks_blocked()
    assert order == ["x", "y", "z"]
