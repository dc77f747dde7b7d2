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
    "Workload",
    "best_of",
    "compare",
    "concurrent_load",
    "free_port",
    "load_loop",
    "main",
    "pick_baseline",
    "print_table",
    "server_process",
    "skip_lines",
    "skipped",
    "wait_for_port",
    "workloads",
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
@dataclass
class Workload:
    """One benchmark's measured results, each with its ratio to the baseline.

    ``ratios[i]`` belongs to ``results[i]``: how many times better than
    ``base`` it did (above 1 is better whatever the unit's direction), or None
    when its figure is not a positive number (a peer that measured nothing).
    """

    name: str
    results: list[Result]
    base: Result | None
    ratios: list[float | None]

    @property
    def unit(self) -> str:
        return self.results[0].unit if self.results else ""


def _usable(result: Result) -> bool:
    return math.isfinite(result.value) and result.value > 0


def pick_baseline(group: Sequence[Result], baseline: str | None = None) -> Result | None:
    """The result the others of one benchmark are compared with.

    The one marked ``baseline=True``, else the one whose subject is
    ``baseline``. When that peer was skipped or measured nothing, the first
    usable peer that is not trionet stands in (else trionet itself), so every
    row still gets a ratio: a blank column read as "no data" when it only
    meant "the usual baseline is not installed here".
    """
    usable = [r for r in group if _usable(r)]
    preferred = [r for r in usable if r.baseline] + [r for r in usable if r.subject == baseline]
    others = [r for r in usable if r.subject != "trionet"]
    return next(iter(preferred + others + usable), None)


def ratio(result: Result, base: Result | None) -> float | None:
    """``result`` against ``base``: above 1 is better, whichever way the unit goes."""
    if base is None or not _usable(result) or not _usable(base):
        return None
    value = result.value / base.value
    return value if result.higher_is_better else 1 / value


def workloads(results: Sequence[Result], baseline: str | None = None) -> list[Workload]:
    """The measured results grouped by benchmark, in first-seen order, with their ratios.

    Skipped peers (:func:`skipped`) are left out: :func:`skip_lines` lists them.
    """
    measured = [r for r in results if not r.extra.get("skipped")]
    out = []
    for name in dict.fromkeys(r.benchmark for r in measured):
        group = [r for r in measured if r.benchmark == name]
        base = pick_baseline(group, baseline)
        out.append(Workload(name, group, base, [ratio(r, base) for r in group]))
    return out


def skip_lines(results: Sequence[Result], prefix: str = "") -> list[str]:
    """One line per distinct reason a peer was skipped, naming every subject it hit.

    A peer that is missing is usually missing for every workload of its
    benchmark (the ws benchmark has four); one line says so once.
    """
    subjects: dict[str, list[str]] = {}
    for r in results:
        if r.extra.get("skipped"):
            names = subjects.setdefault(str(r.extra["skipped"]), [])
            if r.subject not in names:
                names.append(r.subject)
    return [f"{prefix}{', '.join(names)}: {reason}" for reason, names in subjects.items()]


def format_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def format_value(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def format_notes(result: Result) -> str:
    return ", ".join(f"{k}={_format_extra(v)}" for k, v in result.extra.items())


#: The text table's columns; the markdown one (``_report.markdown_table``) has the same.
COLUMNS = ("benchmark", "subject", "value", "unit", "ratio", "notes")
RATIO_LEGEND = "ratio: to the benchmark's baseline, the row at 1.00x; above 1.00x is better"


def table_rows(results: Sequence[Result], baseline: str | None = None) -> list[tuple[str, ...]]:
    """The table's cells, one tuple of :data:`COLUMNS` per measured result."""
    return [
        (w.name, r.subject, format_value(r.value), r.unit, format_ratio(q), format_notes(r))
        for w in workloads(results, baseline)
        for r, q in zip(w.results, w.ratios, strict=True)
    ]


def print_table(
    results: Sequence[Result], baseline: str | None = None, *, file: Any = None
) -> None:
    """Print results as one table, grouped by benchmark, with each subject's ratio.

    The ratio compares a subject with the baseline of the same benchmark (see
    :func:`pick_baseline`). Skipped peers are listed below the table, once per
    reason.
    """
    out = file if file is not None else sys.stdout
    rows = [COLUMNS, *table_rows(results, baseline)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for i, row in enumerate(rows):
        cells = [
            cell.rjust(width) if column in (2, 4) else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip(), file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)
    print(f"({RATIO_LEGEND})", file=out)
    for line in skip_lines(results, prefix="skipped: "):
        print(line, file=out)


def _format_extra(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
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
