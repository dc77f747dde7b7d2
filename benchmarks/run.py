"""Run trionet's benchmarks and print one table.

    python benchmarks/run.py                 # every benchmarks/<name>.py
    python benchmarks/run.py tcp_echo udp    # just these
    python benchmarks/run.py --quick         # seconds, for a smoke test

A benchmark is any module ``benchmarks/<name>.py`` (not starting with ``_``)
that defines ``run(quick: bool) -> list[Result]``; see ``_harness.py``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _harness import Result, print_table  # noqa: E402

#: The subject every ratio is taken against.
BASELINE = "trio"


def discover() -> list[str]:
    """The names of the benchmark modules in this directory, sorted."""
    return sorted(
        p.stem
        for p in HERE.glob("*.py")
        if not p.stem.startswith("_") and p.stem != "run" and _defines_run(p)
    )


def _defines_run(path: Path) -> bool:
    return "\ndef run(" in path.read_text(encoding="utf-8")


def run_benchmarks(names: Sequence[str], quick: bool) -> tuple[list[Result], list[str]]:
    """Run each named benchmark; a crash is reported and the others go on."""
    results: list[Result] = []
    failed: list[str] = []
    for name in names:
        print(f"== {name}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            module = importlib.import_module(name)
            results.extend(module.run(quick))
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"   {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)
    return results, failed


def main(argv: Sequence[str] | None = None) -> int:
    available = discover()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of: {', '.join(available)}")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--baseline", default=BASELINE, help="subject for the ratios when none is marked"
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in available]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; have: {', '.join(available)}")
    results, failed = run_benchmarks(args.names or available, args.quick)
    print_table(results, baseline=args.baseline)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
