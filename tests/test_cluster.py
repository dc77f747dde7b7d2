"""trionet.cluster with real processes: a primary, its workers, signals and a client.

Every test starts a primary from a script in ``tmp_path`` (tests/_cluster_support.py)
and kills whatever is left of its process tree at the end, pass or fail.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import stat
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from _cluster_support import APP, ClusterProcess, alive
from conftest import require_tool

import trionet
from trionet import http
from trionet.agent import Agent


@pytest.fixture
def start_cluster(tmp_path: Path) -> Iterator[object]:
    started: list[ClusterProcess] = []

    def start(*args: str, script: str | None = None) -> ClusterProcess:
        kwargs = {} if script is None else {"script": script}
        cluster = ClusterProcess(tmp_path, list(args), **kwargs)
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.cleanup()


async def who(port: int, path: str = "/", *, agent: Agent | bool = False, **kw: object) -> str:
    """The worker that answered a request (a new connection unless an agent is given)."""
    res = await http.request(f"http://127.0.0.1:{port}{path}", agent=agent, timeout=10, **kw)
    assert res.status == 200
    return res.text().split(" pid")[0]


async def test_two_workers_serve_one_port_and_both_answer(start_cluster) -> None:
    cluster = start_cluster("0", "2")
    workers = await cluster.wait_for_workers(2)
    assert sorted(workers) == [1, 2]
    port = cluster.port  # port 0: the primary bound it once, every worker got the same
    seen: Counter[str] = Counter()
    with trio.fail_after(20):
        for _ in range(400):
            seen[await who(port)] += 1
            if len(seen) == 2 and min(seen.values()) >= 3:
                break
    assert set(seen) == {"worker 1", "worker 2"}, seen


async def test_a_killed_worker_is_replaced_within_a_second_and_the_other_serves_meanwhile(
    start_cluster,
) -> None:
    cluster = start_cluster("0", "2")
    workers = await cluster.wait_for_workers(2)
    port = cluster.port
    os.kill(workers[1], signal.SIGKILL)
    killed_at = time.monotonic()
    answers: Counter[str] = Counter()
    with trio.fail_after(10):
        while 3 not in cluster.live_workers():
            answers[await who(port)] += 1  # every request is answered meanwhile
    replaced_after = time.monotonic() - killed_at
    assert answers["worker 2"] >= 1 and "worker 1" not in answers
    assert "worker 1 killed by SIGKILL" in cluster.output
    # Replaced at once (no backoff for a first death); the new worker must
    # import Python, trio and trionet first, which is most of this second.
    assert replaced_after < 1.0, f"worker 3 listened {replaced_after:.2f}s after the kill"


async def test_sighup_rolls_every_worker_with_no_failed_request(start_cluster) -> None:
    cluster = start_cluster("0", "2")
    old = await cluster.wait_for_workers(2)
    port = cluster.port
    url = f"http://127.0.0.1:{port}/"
    results: Counter[str] = Counter()
    failures: list[str] = []
    served_by: set[str] = set()
    done = trio.Event()

    async def client(method: str, keep_alive: bool) -> None:
        agent: Agent | bool = Agent(max_sockets=1) if keep_alive else False
        body = b"x" * 1000 if method == "POST" else None
        for _ in range(5000):  # bounded: the roll takes a few seconds
            if done.is_set():
                break
            try:
                res = await http.request(url, method=method, body=body, agent=agent, timeout=10)
            except Exception as exc:  # what a user would see as a failed request
                failures.append(f"{method} keep_alive={keep_alive}: {exc!r}")
                continue
            results[f"{method} {res.status}"] += 1
            served_by.add(res.text().split(" pid")[0])
        if isinstance(agent, Agent):
            await agent.aclose()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for method in ("GET", "POST"):
                for keep_alive in (True, False):
                    nursery.start_soon(client, method, keep_alive)
            await trio.sleep(0.5)
            cluster.signal(signal.SIGHUP)
            await cluster.wait_for(
                lambda: not any(alive(pid) for pid in old.values())
                and len(cluster.live_workers()) == 2,
                timeout=45,
            )
            await trio.sleep(0.5)  # the new workers serve too
            done.set()
    assert failures == []
    assert set(results) == {"GET 200", "POST 200"}
    assert sum(results.values()) > 200  # the clients kept going through the whole roll
    new = cluster.live_workers()
    assert sorted(new) == [3, 4]  # every worker replaced, by new ids
    assert {"worker 3", "worker 4"} <= served_by


async def test_sigterm_lets_a_5s_request_finish_then_exits_0(start_cluster) -> None:
    cluster = start_cluster("0", "2")
    workers = await cluster.wait_for_workers(2)
    port = cluster.port
    async with trio.open_nursery() as nursery:
        answer: list[str] = []

        async def slow() -> None:
            answer.append(await who(port, "/slow?s=5"))

        nursery.start_soon(slow)
        await trio.sleep(0.5)
        cluster.signal(signal.SIGTERM)
        await trio.sleep(1)
        # Stopping: nobody accepts any more, so a new client is refused at once
        # (not queued on a socket that only the primary still holds).
        assert cluster.proc.poll() is None
        with trio.fail_after(2), pytest.raises(trionet.ConnectError):
            await who(port)
        assert await cluster.wait_exit(timeout=20) == 0
    assert answer and answer[0] in ("worker 1", "worker 2")
    assert not any(alive(pid) for pid in workers.values())
    with pytest.raises(trionet.ConnectError):
        await who(port)


async def test_kill_9_of_the_primary_leaves_no_worker_holding_the_port(start_cluster) -> None:
    cluster = start_cluster("0", "2")
    workers = await cluster.wait_for_workers(2)
    port = cluster.port
    cluster.signal(signal.SIGKILL)
    await cluster.wait_exit(timeout=5)
    await cluster.wait_for(lambda: not any(alive(pid) for pid in workers.values()), timeout=5)
    with pytest.raises(OSError):
        await trionet.net.connect(port, "127.0.0.1", timeout=2)


async def test_sigttin_adds_a_worker_and_sigttou_removes_one(start_cluster) -> None:
    cluster = start_cluster("0", "2")
    await cluster.wait_for_workers(2)
    cluster.signal(signal.SIGTTIN)
    assert sorted(await cluster.wait_for_workers(3)) == [1, 2, 3]
    cluster.signal(signal.SIGTTOU)
    await cluster.wait_for(lambda: sorted(cluster.live_workers()) == [2, 3], timeout=15)
    cluster.signal(signal.SIGTTOU)
    await cluster.wait_for(lambda: sorted(cluster.live_workers()) == [3], timeout=15)
    cluster.signal(signal.SIGTTOU)  # never below one
    await trio.sleep(1)
    assert sorted(cluster.live_workers()) == [3]
    assert "SIGTTOU: already at 1 worker" in cluster.output


async def test_a_worker_failing_at_startup_is_restarted_with_backoff_not_in_a_tight_loop(
    start_cluster,
) -> None:
    cluster = start_cluster("0", "1", "fail")
    await cluster.wait_for(lambda: cluster.output.count("restarting in") >= 3, timeout=20)
    await trio.sleep(2)
    text = cluster.output
    assert "RuntimeError: this worker cannot start" in text  # the worker's own traceback
    assert "worker 1 exited with status 1" in text and "restarting now" in text
    delays = [float(d) for d in re.findall(r"restarting in ([\d.]+)s", text)]
    assert delays[:3] == [0.1, 0.2, 0.4]
    assert all(b == min(2 * a, 10) for a, b in itertools.pairwise(delays))
    # Over 2 s past the third delayed restart (0.8 s, then 1.6 s due), at most
    # two more starts; a tight loop would start one every ~0.3 s (its start-up).
    assert text.count(" started (pid") <= 4 + 2


ASGI_APP = """
from trionet import cluster

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": f"worker {cluster.worker_id}".encode()})
"""


async def test_trionet_serve_with_2_workers_on_a_unix_socket_with_mode_660(
    start_cluster, tmp_path: Path
) -> None:
    (tmp_path / "asgi_app.py").write_text(ASGI_APP)
    path = tmp_path / "app.sock"
    cluster = start_cluster(
        "-m", "trionet", "serve", "asgi_app:app", "--workers", "2",
        "--uds", str(path), "--uds-mode", "660", "--lifespan", "off",
    )  # fmt: skip
    workers = await cluster.wait_for_workers(2)
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    seen: Counter[str] = Counter()
    with trio.fail_after(20):
        for _ in range(400):
            res = await http.request({"socket_path": str(path), "path": "/"}, agent=False)
            seen[res.text()] += 1
            if len(seen) == 2:
                break
    assert set(seen) == {"worker 1", "worker 2"}
    cluster.signal(signal.SIGTERM)
    assert await cluster.wait_exit(timeout=20) == 0
    assert not any(alive(pid) for pid in workers.values())
    assert not path.exists()  # the primary removed its socket file


async def test_sigterm_right_after_sighup_stops_the_worker_being_started_too(start_cluster) -> None:
    cluster = start_cluster("0", "2")
    await cluster.wait_for_workers(2)
    cluster.signal(signal.SIGHUP)  # a new worker is being started...
    cluster.signal(signal.SIGTERM)  # ... and must get its SIGTERM once it is up
    assert await cluster.wait_exit(timeout=5) == 0  # not left running until its SIGKILL
    assert "SIGKILL" not in cluster.output, cluster.output


NO_LISTENER_APP = """
import os
import trio
from trionet import cluster

async def main():
    cluster.ready()  # nothing to listen on: say so, or a rolling restart would wait for it
    print(f"worker {cluster.worker_id} pid {os.getpid()} port none", flush=True)
    await trio.sleep_forever()

cluster.run(main, workers=2, shutdown_timeout=5)
"""


async def test_a_worker_without_listeners_reports_ready_and_sighup_rolls_it(
    start_cluster,
) -> None:
    cluster = start_cluster(script=NO_LISTENER_APP)
    old = await cluster.wait_for_workers(2)
    cluster.signal(signal.SIGHUP)
    await cluster.wait_for(lambda: sorted(cluster.live_workers()) == [3, 4], timeout=20)
    assert not any(alive(pid) for pid in old.values())


async def test_sharing_reuse_port_gives_each_worker_its_own_socket_on_one_port(
    start_cluster,
) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: reuse_port needs one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = APP.replace("workers=workers,", 'workers=workers, sharing="reuse_port",')
    cluster = start_cluster(str(port), "2", script=script)
    await cluster.wait_for_workers(2)
    assert cluster.port == port
    seen: Counter[str] = Counter()
    with trio.fail_after(20):
        for _ in range(400):
            seen[await who(port)] += 1
            if len(seen) == 2:
                break
    assert set(seen) == {"worker 1", "worker 2"}


def wrk_failures(output: str) -> list[str]:
    """What wrk reports as failed: socket errors other than zero, non-2xx/3xx answers."""
    failed = []
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       output)  # fmt: skip
    if errors and any(int(n) for n in errors.groups()):
        failed.append(errors[0])
    failed += re.findall(r"Non-2xx or 3xx responses: \d+", output)
    return failed


@pytest.mark.parametrize("keep_alive", [True, False], ids=["keep-alive", "connection-close"])
@pytest.mark.parametrize("server", ["http.serve", "trionet serve"])
async def test_wrk_through_a_sighup_rolling_restart_sees_no_error(
    start_cluster, tmp_path: Path, server: str, keep_alive: bool
) -> None:
    """wrk counts every request that meets a closed or reset socket ("Socket errors:
    ... read N") and never retries, so this is the harshest client of a roll: a worker
    that closed a keep-alive connection the moment it was told to stop would cost
    10-30 read errors per roll here (it did, with IDLE_CLOSE_GRACE at 0)."""
    wrk = require_tool("wrk")
    if server == "http.serve":
        cluster = start_cluster("0", "2")
    else:
        (tmp_path / "asgi_app.py").write_text(ASGI_APP)
        cluster = start_cluster(
            "-m", "trionet", "serve", "asgi_app:app", "--workers", "2", "--port", "0",
            "--lifespan", "off", "--no-access-log", "--timeout-graceful-shutdown", "10",
        )  # fmt: skip
    old = await cluster.wait_for_workers(2)
    (where,) = {address for _, address in cluster.workers().values()}
    port = int(where.rpartition(":")[2])
    command = [wrk, "-t1", "-c20", "-d4s", f"http://127.0.0.1:{port}/"]
    if not keep_alive:
        command[1:1] = ["-H", "Connection: close"]
    done: list[subprocess.CompletedProcess[bytes]] = []

    async def load() -> None:
        done.append(await trio.run_process(command, capture_stdout=True, check=False))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(load)
            await trio.sleep(1)
            cluster.signal(signal.SIGHUP)
    output = done[0].stdout.decode()
    # The roll ran under load: worker 1 was drained and stopped while wrk ran.
    assert not alive(old[1]), cluster.output
    assert done[0].returncode == 0, output
    requests = int(re.search(r"(\d+) requests in", output)[1])
    assert requests > 100, output
    assert wrk_failures(output) == [], output
    # Every worker was replaced, by new ids (the roll may end after wrk did).
    await cluster.wait_for(
        lambda: not any(alive(pid) for pid in old.values()) and len(cluster.live_workers()) == 2,
        timeout=20,
    )
    assert sorted(cluster.live_workers()) == [3, 4]
