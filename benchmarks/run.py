"""Run trionet's benchmarks and print one table.

    python benchmarks/run.py                 # every benchmarks/<name>.py
    python benchmarks/run.py tcp_echo udp    # just these
    python benchmarks/run.py --quick         # seconds, for a smoke test
    python benchmarks/run.py --update-docs   # and write the charts and table into docs/
    python benchmarks/run.py --from docs/results/bench.json --update-docs   # redraw only

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

from _harness import Result, print_table, skip_lines  # noqa: E402
from _report import PageError, load_results, write_docs  # noqa: E402

#: The subject every ratio is taken against.
BASELINE = "trio"

#: The docs whose results section ``--update-docs`` rewrites (see _report.py).
DOCS = HERE.parent / "docs"


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


def docs_refusal(*, quick: bool, names: Sequence[str], failed: Sequence[str]) -> str | None:
    """Why ``--update-docs`` must not write this run's figures, if it must not.

    The page shows one complete, full-length run: --quick figures are noise,
    a subset would drop the other workloads' charts, a crash would drop its own.
    """
    if quick:
        return "--update-docs records a full run; drop --quick"
    if names:
        return "--update-docs records every benchmark; name none"
    if failed:
        return f"not updating the docs: {', '.join(failed)} failed"
    return None


def update_docs(
    results: Sequence[Result],
    skipped: Sequence[str],
    docs: Path = DOCS,
    *,
    baseline: str = BASELINE,
) -> str:
    """Write the charts and table into ``docs``; returns what to tell the user."""
    try:
        written = write_docs(results, skipped, docs, baseline=baseline)
    except (OSError, PageError) as exc:
        return f"error: docs not updated: {exc}"
    return f"updated {len(written)} files under {docs}"


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
    parser.add_argument(
        "--update-docs",
        action="store_true",
        help=f"write the charts, the table and bench.json into {DOCS} (a full run only)",
    )
    parser.add_argument(
        "--from",
        dest="saved",
        type=Path,
        metavar="JSON",
        help="do not run: print (and with --update-docs, redraw) a saved bench.json",
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in available]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; have: {', '.join(available)}")
    if args.saved is not None:
        results, skipped = load_results(args.saved.read_text(encoding="utf-8"))
        failed: list[str] = []
    else:
        refusal = docs_refusal(quick=args.quick, names=args.names, failed=[])
        if args.update_docs and refusal:
            parser.error(refusal)
        results, failed = run_benchmarks(args.names or available, args.quick)
        skipped = skip_lines(results)
    print_table(results, baseline=args.baseline)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    if args.update_docs:
        refusal = docs_refusal(quick=False, names=[], failed=failed)
        message = refusal or update_docs(results, skipped, baseline=args.baseline)
        print(message, file=sys.stderr)
        if message.startswith("error"):
            return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
