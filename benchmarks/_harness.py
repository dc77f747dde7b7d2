"""The benchmark harness: results, bounded load loops, server processes, one table.

The contract for a benchmark module ``benchmarks/<name>.py``:

* It defines ``def run(quick: bool) -> list[Result]``. ``quick=True`` must finish
  in a few seconds (CI smoke runs); the full run should stay under a minute.
* It measures trionet *and* a peer (raw Trio, hypercorn, Node, ...) in the same
  run, on loopback only, and returns one :class:`Result` per (benchmark, subject).
  Give every result of one comparison the same ``benchmark`` name and mark the
  peer to compare with ``baseline=True``; the table prints each subject's ratio
  to it. :func:`compare` does all this for callables that return a figure.
* A peer in another process (Node, uvicorn) runs under :func:`server_process`,
  on a port from :func:`free_port`.
* Every load loop is bounded in count *and* in time: use :func:`load_loop`
  (or :func:`concurrent_load`) rather than ``while True``.
* A peer that cannot run here (no ``node``, no ``wrk``) gives ``skipped(...)``
  instead of an exception, so the other figures still print.
* It runs standalone too: end the module with::

      if __name__ == "__main__":
          main(run, baseline="trio")

  so ``python benchmarks/<name>.py [--quick]`` prints its own table.
* It imports the harness as a sibling module (``from _harness import Result, main``):
  ``python benchmarks/<name>.py`` and ``python benchmarks/run.py`` both put
  ``benchmarks/`` on ``sys.path``.

The machine is shared and noisy: :func:`best_of` runs subjects interleaved
(A, B, A, B, ...) and keeps each one's best figure, which is far steadier than
one long run per subject. When both ends run in the benchmark's own process,
``LoopStats.cpu_rate`` (per CPU-second) is steadier still: other processes
taking the CPU slow the wall clock, not the work done per CPU-second.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

__all__ = [
    "LoopStats",
    "Result",
    "Stopwatch",
    "best_of",
    "compare",
    "concurrent_load",
    "free_port",
    "load_loop",
    "main",
    "print_table",
    "server_process",
    "skipped",
    "wait_for_port",
]

#: Only loopback, ever: benchmarks must not touch the network.
LOOPBACK = "127.0.0.1"


@dataclass
class Result:
    """One measured figure: ``subject`` scored ``value`` ``unit`` on ``benchmark``."""

    benchmark: str
    subject: str
    value: float
    unit: str
    #: False for latencies and durations, where smaller is better.
    higher_is_better: bool = True
    #: Anything else worth printing (ops done, seconds taken, errors seen, ...).
    extra: dict[str, Any] = field(default_factory=dict)
    #: Mark the peer the others are compared with; overrides print_table's
    #: ``baseline`` name for this benchmark (e.g. hypercorn for an HTTP one).
    baseline: bool = False


@dataclass
class LoopStats:
    """What a bounded load loop did: ``count`` operations in ``seconds``.

    ``cpu_seconds`` is the CPU time this process used meanwhile (user + system).
    When both ends of a benchmark run in this process, ``cpu_rate`` (operations
    per CPU-second) measures the code's cost and barely moves when other
    processes crowd the machine, whereas ``rate`` (per wall-clock second) does.
    """

    count: int
    seconds: float
    cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Operations per wall-clock second."""
        return self.count / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_rate(self) -> float:
        """Operations per second of this process's CPU time."""
        return self.count / self.cpu_seconds if self.cpu_seconds > 0 else 0.0


class Stopwatch:
    """Wall-clock and CPU time since creation: ``Stopwatch().stats(count)``."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()

    def stats(self, count: int) -> LoopStats:
        return LoopStats(
            count, time.perf_counter() - self.start, time.process_time() - self.cpu_start
        )


def skipped(benchmark: str, subject: str, reason: str, unit: str = "") -> Result:
    """A Result saying a peer could not run here (``extra["skipped"]`` holds why).

    Return it instead of raising when a peer is missing (no node, no wrk), so the
    other subjects' figures still print; ``trionet bench`` lists these separately.
    """
    return Result(benchmark, subject, math.nan, unit, extra={"skipped": reason})


def missing_peers(peer_modules: Mapping[str, str]) -> dict[str, str]:
    """Each peer whose Python module is not installed here, with why.

    ``peer_modules`` maps a subject's name to the module it imports. The peers
    (hypercorn, uvicorn, httpx, aiohttp, trio-websocket, websockets) are the
    ``bench`` extra, not trionet's dependencies.
    """
    return {
        peer: f"{module} is not installed (pip install -e '.[bench]')"
        for peer, module in peer_modules.items()
        if importlib.util.find_spec(module) is None
    }


def run_wrk(
    url: str, seconds: float, *, connections: int, core: str | None = None, latency: bool = False
) -> str:
    """``wrk -t1`` against ``url`` for ``seconds`` (pinned to ``core`` where taskset exists).

    Returns wrk's report; read it with :func:`wrk_rate`.
    """
    pin = ["taskset", "-c", core] if core is not None and shutil.which("taskset") else []
    argv = [*pin, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    argv += ["--latency", url] if latency else [url]
    return subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout


def wrk_rate(report: str) -> float:
    """Requests per second from a wrk report (0.0 when wrk printed none)."""
    match = re.search(r"Requests/sec:\s+([\d.]+)", report)
    return float(match.group(1)) if match else 0.0


# -- load loops -------------------------------------------------------------------
async def load_loop(
    op: Callable[[], Awaitable[Any]], *, max_count: int, max_seconds: float
) -> LoopStats:
    """Await ``op()`` repeatedly until ``max_count`` calls or ``max_seconds`` have passed.

    The time bound is checked between calls and also cancels a call that hangs,
    so a stuck peer ends the loop instead of the benchmark.
    """
    count = 0
    watch = Stopwatch()
    deadline = watch.start + max_seconds
    with trio.move_on_after(max_seconds * 2):
        while count < max_count and time.perf_counter() < deadline:
            await op()
            count += 1
    return watch.stats(count)


async def concurrent_load(
    op: Callable[[], Awaitable[Any]],
    *,
    concurrency: int,
    max_count: int,
    max_seconds: float,
) -> LoopStats:
    """Run ``op`` from ``concurrency`` tasks at once; ``max_count`` is the total over all."""
    remaining = max_count
    done = 0
    watch = Stopwatch()
    deadline = watch.start + max_seconds

    async def worker() -> None:
        nonlocal remaining, done
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            await op()
            done += 1

    with trio.move_on_after(max_seconds * 2):
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
    return watch.stats(done)


def best_of(
    repeats: int, subjects: dict[str, Callable[[], float]]
) -> dict[str, tuple[float, list[float]]]:
    """Call each subject's measurement ``repeats`` times, interleaved; keep the best.

    Each callable returns a figure where higher is better. Returns, per subject,
    ``(best, all_figures)``.
    """
    figures: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(repeats):
        for name, measure in subjects.items():
            figures[name].append(measure())
    return {name: (max(values), values) for name, values in figures.items()}


def compare(
    benchmark: str,
    unit: str,
    subjects: dict[str, Callable[[], float]],
    *,
    baseline: str,
    repeats: int,
) -> list[Result]:
    """Measure ``subjects`` with :func:`best_of` and return one Result each.

    The usual body of a benchmark's ``run``::

        return compare("tcp echo", "MB/s", {"trionet": ours, "trio": theirs},
                       baseline="trio", repeats=2 if quick else 5)
    """
    best = best_of(repeats, subjects)
    return [
        Result(
            benchmark,
            subject,
            value,
            unit,
            extra={"runs": len(figures), "worst": min(figures)},
            baseline=subject == baseline,
        )
        for subject, (value, figures) in best.items()
    ]


# -- servers in other processes ---------------------------------------------------
def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (for servers that cannot report theirs)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, host: str = LOOPBACK, *, timeout: float = 10.0) -> None:
    """Block until something accepts TCP connections on ``host:port``.

    Raises:
      TimeoutError: nothing listened within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


@contextlib.contextmanager
def server_process(
    argv: Sequence[str],
    port: int,
    *,
    host: str = LOOPBACK,
    timeout: float = 10.0,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server command, wait until it listens on ``port``, stop it afterwards.

    Pick the port with :func:`free_port` and pass it in ``argv``. The process
    is terminated (then killed after 5 s) when the block ends. Its stderr goes
    to a temporary file, not a pipe, so a server that logs every request can
    never stall on a full pipe; the file's tail is shown if it died before
    listening.
    """
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        try:
            if not _wait_listening(proc, port, host, timeout):
                proc.kill()
                proc.wait(timeout=5)
                stderr.seek(0)
                tail = stderr.read().decode(errors="replace")[-800:]
                raise RuntimeError(f"{argv[0]} did not listen on {host}:{port}: {tail}")
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _wait_listening(proc: subprocess.Popen[bytes], port: int, host: str, timeout: float) -> bool:
    """Whether ``proc`` listens within ``timeout``; gives up at once if it exits."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        try:
            wait_for_port(port, host, timeout=0.2)
            return True
        except TimeoutError:
            if time.monotonic() > deadline:
                return False
    return False


# -- reporting --------------------------------------------------------------------
def _ratio(result: Result, base: Result | None) -> str:
    if base is None or not base.value or math.isnan(base.value) or result is base:
        return "" if base is None else "1.00x" if result is base else "-"
    ratio = result.value / base.value
    if not result.higher_is_better:
        ratio = 1 / ratio if ratio else math.inf
    return f"{ratio:.2f}x"


def _format_value(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def print_table(
    results: Sequence[Result], baseline: str | None = None, *, file: Any = None
) -> None:
    """Print results as one table, grouped by benchmark, with each subject's ratio.

    The ratio compares a subject with the baseline of the same benchmark: the
    result marked ``baseline=True``, else the one whose subject is ``baseline``
    (1.00x = as good; above 1 = better, whatever the unit's direction).
    Benchmarks without a baseline show no ratio.
    """
    out = file if file is not None else sys.stdout
    rows = [("benchmark", "subject", "value", "unit", "ratio", "notes")]
    for bench in dict.fromkeys(r.benchmark for r in results):
        group = [r for r in results if r.benchmark == bench]
        base = next((r for r in group if r.baseline), None) or next(
            (r for r in group if r.subject == baseline), None
        )
        for r in group:
            if r.extra.get("skipped"):
                rows.append((bench, r.subject, "-", r.unit, "", f"skipped: {r.extra['skipped']}"))
                continue
            notes = ", ".join(f"{k}={_format_extra(v)}" for k, v in r.extra.items())
            rows.append((bench, r.subject, _format_value(r.value), r.unit, _ratio(r, base), notes))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        cells = [
            cell.rjust(width) if column in (2, 4) else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip(), file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)
    print("(ratio: relative to the benchmark's baseline; above 1.00x is better)", file=out)


def _format_extra(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options every benchmark script takes."""
    parser = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (seconds)")
    return parser.parse_args(argv)


def main(
    run: Callable[[bool], list[Result]],
    *,
    baseline: str | None = None,
    argv: Sequence[str] | None = None,
) -> None:
    """Entry point for ``python benchmarks/<name>.py [--quick]``: run and print the table."""
    args = parse_args(argv)
    print_table(run(args.quick), baseline=baseline)
