"""The cluster's pure parts: the supervisor's rules and the wire format (no processes)."""

from __future__ import annotations

import logging
import signal

import pytest

from trionet._listen import ListenSpec
from trionet.cluster import _wire
from trionet.cluster._state import (
    Action,
    Exit,
    Log,
    Phase,
    Signal,
    Spawn,
    StopListening,
    Supervisor,
    describe_exit,
    restart_delay,
)


def spawned(actions: list[Action]) -> list[int]:
    return [a.worker_id for a in actions if isinstance(a, Spawn)]


def signalled(actions: list[Action], signum: int = signal.SIGTERM) -> list[int]:
    return [a.worker_id for a in actions if isinstance(a, Signal) and a.signum == signum]


def logs(actions: list[Action], level: int = logging.WARNING) -> list[str]:
    return [a.message for a in actions if isinstance(a, Log) and a.level == level]


def started(workers: int = 2, **options: float) -> Supervisor:
    """A supervisor whose first workers are up and ready at t=0."""
    sup = Supervisor(workers, shutdown_timeout=30, **options)
    for worker_id in spawned(sup.start(0)):
        sup.ready(worker_id, 0)
    return sup


# -- starting and restarting ----------------------------------------------------------


def test_start_spawns_the_workers_with_ids_from_one() -> None:
    sup = Supervisor(3)
    assert spawned(sup.start(0)) == [1, 2, 3]
    assert sup.phase(1) is Phase.STARTING


def test_a_dead_worker_is_replaced_at_once_with_a_new_id_and_the_death_is_logged() -> None:
    sup = started(2)
    actions = sup.exited(1, -signal.SIGKILL, 20)
    assert spawned(actions) == [3]
    assert logs(actions) == ["worker 1 killed by SIGKILL after 20.0s; restarting now"]
    assert sup.worker_ids == [2, 3]


def test_workers_that_keep_dying_young_are_restarted_with_a_doubling_delay() -> None:
    sup = started(1)
    now, worker, delays, messages = 0.0, 1, [], []
    for _ in range(6):
        now += 0.5  # each one dies half a second after it started
        actions = sup.exited(worker, 1, now)
        messages += logs(actions)
        if spawned(actions):
            delays.append(0.0)
        else:
            due = sup.next_deadline()
            assert due is not None
            assert spawned(sup.tick(due - 0.01)) == []  # not before its time
            actions = sup.tick(due)
            delays.append(round(due - now, 3))
            now = due
        (worker,) = spawned(actions)
    assert delays == [0.0, 0.1, 0.2, 0.4, 0.8, 1.6]
    assert messages[1] == "worker 2 exited with status 1 after 0.5s; restarting in 0.1s"


def test_a_worker_that_lived_long_resets_the_backoff() -> None:
    sup = started(1)
    sup.exited(1, 1, 1)  # streak 1: at once (worker 2)
    sup.tick(1)
    assert sup.next_deadline() is None
    actions = sup.exited(2, 1, 2)  # streak 2: 0.1 s
    assert spawned(actions) == []
    (worker,) = spawned(sup.tick(2.1))
    actions = sup.exited(worker, 1, 2.1 + 60)  # lived a minute: streak back to 1
    assert len(spawned(actions)) == 1


def test_restart_delay_is_capped() -> None:
    assert [restart_delay(n) for n in (1, 2, 3)] == [0.0, 0.1, 0.2]
    assert restart_delay(50) == 10.0


def test_a_worker_exiting_0_by_itself_is_not_replaced_and_the_last_one_ends_the_primary() -> None:
    sup = started(2)
    actions = sup.exited(1, 0, 5)
    assert spawned(actions) == []
    assert logs(actions, logging.INFO) == ["worker 1 exited with status 0; not replaced"]
    assert sup.exited(2, 0, 6)[-1] == Exit(0)


def test_describe_exit_names_the_signal() -> None:
    assert describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert describe_exit(3) == "exited with status 3"


# -- SIGTTIN / SIGTTOU ------------------------------------------------------------------


def test_sigttin_adds_a_worker_and_sigttou_stops_the_oldest() -> None:
    sup = started(2)
    assert spawned(sup.signal(signal.SIGTTIN, 1)) == [3]
    sup.ready(3, 1)
    actions = sup.signal(signal.SIGTTOU, 2)
    assert signalled(actions) == [1]
    assert sup.phase(1) is Phase.RETIRING
    assert spawned(sup.exited(1, 0, 3)) == []  # a retired worker is not replaced
    assert sup.worker_ids == [2, 3]


def test_sigttou_never_goes_below_one_worker() -> None:
    sup = started(1)
    actions = sup.signal(signal.SIGTTOU, 1)
    assert signalled(actions) == []
    assert sup.target == 1


# -- SIGHUP: the rolling restart --------------------------------------------------------


def test_sighup_replaces_workers_one_at_a_time_new_one_ready_before_the_old_one_stops() -> None:
    sup = started(2)
    actions = sup.signal(signal.SIGHUP, 10)
    assert spawned(actions) == [3] and signalled(actions) == []
    assert signalled(sup.tick(11)) == []  # worker 3 is not ready yet: nobody stops
    actions = sup.ready(3, 12)
    assert signalled(actions) == [1] and spawned(actions) == []
    # while worker 1 drains, no second replacement is started
    assert spawned(sup.tick(13)) == []
    actions = sup.exited(1, 0, 14)
    assert spawned(actions) == [4]
    actions = sup.ready(4, 15)
    assert signalled(actions) == [2]
    actions = sup.exited(2, 0, 16)
    assert spawned(actions) == [] and signalled(actions) == []
    assert sup.worker_ids == [3, 4]
    assert sup.tick(100) == []


def test_a_replacement_that_dies_during_the_roll_is_restarted_and_the_roll_goes_on() -> None:
    sup = started(2)
    sup.signal(signal.SIGHUP, 10)
    actions = sup.exited(3, 1, 10.5)  # the new worker crashed at startup
    assert spawned(actions) == [4]
    assert signalled(sup.ready(4, 11)) == [1]


def test_an_old_worker_stopping_past_its_timeout_gets_sigkill() -> None:
    sup = started(1, kill_grace=5)
    sup.signal(signal.SIGHUP, 0)
    assert signalled(sup.ready(2, 1)) == [1]
    assert sup.next_deadline() == 1 + 30 + 5
    assert signalled(sup.tick(35.9), signal.SIGKILL) == []
    assert signalled(sup.tick(36), signal.SIGKILL) == [1]


# -- SIGTERM / SIGINT -------------------------------------------------------------------


def test_sigterm_stops_listening_stops_every_worker_then_exits_0() -> None:
    sup = started(2)
    actions = sup.signal(signal.SIGTERM, 1)
    assert StopListening() in actions
    assert signalled(actions) == [1, 2]
    assert sup.exited(1, 0, 2) == [Log(logging.INFO, "worker 1 stopped")]
    assert sup.exited(2, 0, 3)[-1] == Exit(0)


def test_a_worker_that_dies_while_stopping_is_not_restarted_and_makes_the_exit_1() -> None:
    sup = started(2)
    sup.signal(signal.SIGINT, 1)
    assert spawned(sup.exited(1, -signal.SIGKILL, 2)) == []
    assert sup.exited(2, 0, 3)[-1] == Exit(1)


def test_a_worker_killed_by_our_sigterm_while_starting_stopped_cleanly() -> None:
    sup = started(1)
    sup.signal(signal.SIGHUP, 1)  # worker 2 starting
    sup.signal(signal.SIGTERM, 1.01)
    sup.exited(1, 0, 2)
    actions = sup.exited(2, -signal.SIGTERM, 2)
    assert logs(actions, logging.INFO) == ["worker 2 stopped while starting"]
    assert actions[-1] == Exit(0)


def test_a_second_sigterm_is_passed_on_to_the_workers() -> None:
    sup = started(2)
    sup.signal(signal.SIGTERM, 1)
    assert signalled(sup.signal(signal.SIGTERM, 2)) == [1, 2]


def test_pending_restarts_are_dropped_when_stopping() -> None:
    sup = started(1)
    sup.exited(1, 1, 1)
    sup.tick(1)
    sup.exited(2, 1, 1.5)  # a restart owed in 0.1 s
    actions = sup.signal(signal.SIGTERM, 1.55)
    assert actions[-1] == Exit(0)
    assert sup.tick(5) == []


# -- the wire ---------------------------------------------------------------------------


def test_a_listen_request_survives_the_wire() -> None:
    spec = ListenSpec(host="127.0.0.1", port=0, backlog=128)
    message = _wire.decode(_wire.encode(_wire.listen(7, spec)))
    assert message["id"] == 7
    assert _wire.spec_from_wire(message["spec"]) == spec
    unix = ListenSpec(path="/run/app.sock", mode=0o660)
    assert _wire.spec_from_wire(_wire.spec_to_wire(unix)) == unix


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x00\x00",
        b"\x00\x00\x00\x05{}",  # the length lies
        b"\x00\x00\x00\x02{}",  # no op
        b"\x00\x00\x00\x01\xff",
        b'\x00\x00\x00\x10{"op":"unknown"}',
        b"\x00\x00\x00\x02[]",
    ],
)
def test_malformed_packets_are_wire_errors(packet: bytes) -> None:
    with pytest.raises(_wire.WireError):
        _wire.decode(packet)


@pytest.mark.parametrize(
    "spec",
    [
        {"port": "80"},
        {"port": True},
        {"path": "/x", "port": 80},
        {},
        {"port": 80, "mode": "0o660"},
        {"port": 80, "reuse_port": 1},
        "port 80",
    ],
)
def test_bad_specs_are_wire_errors(spec: object) -> None:
    with pytest.raises(_wire.WireError):
        _wire.spec_from_wire(spec)


def test_oversized_messages_are_refused() -> None:
    with pytest.raises(_wire.WireError):
        _wire.encode({"op": "failed", "id": 1, "errno": 1, "message": "x" * 70_000})
