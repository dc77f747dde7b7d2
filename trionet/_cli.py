"""The ``trionet`` command line: ``demo``, ``certs``, ``bench`` and ``serve``.

    trionet serve main:app       # an ASGI app, with uvicorn's flags (trionet.asgi._command)
    trionet demo                 # the seed chapter's servers on 127.0.0.1
    trionet certs ./certs        # a private CA and certificates for localhost
    trionet bench --quick        # the benchmarks, with the peers' figures

``trionet bench`` runs the benchmarks of a checkout of trionet's source and,
installed without one, says so and what to do (:data:`NEEDS_A_CHECKOUT`).
Shipping the harness in the package was the alternative, rejected: the
benchmarks compare trionet with peers it does not install (Node scripts under
tests/peers with npm's ``ws``, wrk, hypercorn, uvicorn, aiohttp, httpx,
trio-websocket, websockets), so from a wheel the command would mostly print
skips, every install would carry the harness for it, and ``--update-docs``
rewrites the checkout's docs/, which an install does not have.

The library never configures logging; this is the one place that does, and
only as asked: one line per warning or error on the ``trionet`` logger by
default, everything (with tracebacks) with ``-v``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import io
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import trio

from . import __version__

__all__ = ["main"]

logger = logging.getLogger("trionet.cli")


# -- the parser ------------------------------------------------------------------
def port(text: str) -> int:
    """An argparse type: a TCP/UDP port number, 0 meaning "pick a free one"."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, not {value}")
    return value


def host_list(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated host names or addresses, at least one."""
    hosts = tuple(name.strip() for name in text.split(",") if name.strip())
    if not hosts:
        raise argparse.ArgumentTypeError(f"no host names in {text!r}")
    return hosts


def build_parser() -> argparse.ArgumentParser:
    """The ``trionet`` parser with one subcommand per job."""
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log everything the trionet logger says, with tracebacks",
    )
    parser = argparse.ArgumentParser(
        prog="trionet",
        description="Node.js's net, dgram, http, https, tls and ws modules on Trio.",
        parents=[verbose],
    )
    parser.add_argument("--version", action="version", version=f"trionet {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        parents=[verbose],
        help="run the seed chapter's examples together on 127.0.0.1",
        description=(
            "Start the examples of the network chapter of 深入浅出Node.js at once: TCP echo "
            "with a greeting, a Unix socket echo, UDP, HTTP with a WebSocket page, and HTTPS "
            "with a private CA. Prints how to try each; Ctrl-C or SIGTERM stops them. "
            "Port 0 picks a free port."
        ),
    )
    demo.add_argument(
        "--host", default="127.0.0.1", metavar="ADDRESS", help="where to listen (%(default)s)"
    )
    demo.add_argument(
        "--tcp-port", type=port, default=8124, metavar="PORT", help="TCP echo (%(default)s)"
    )
    demo.add_argument(
        "--udp-port", type=port, default=41234, metavar="PORT", help="UDP (%(default)s)"
    )
    demo.add_argument(
        "--http-port",
        type=port,
        default=1337,
        metavar="PORT",
        help="HTTP + WebSocket (%(default)s)",
    )
    demo.add_argument(
        "--https-port", type=port, default=8443, metavar="PORT", help="HTTPS (%(default)s)"
    )
    demo.add_argument(
        "--grace",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="on Ctrl-C, how long live connections get to finish (%(default)s); "
        "a second Ctrl-C stops at once",
    )
    demo.add_argument(
        "--workdir",
        type=Path,
        metavar="DIR",
        help="where the Unix socket and certificates go (default: a temporary directory, "
        "removed on exit)",
    )
    demo.set_defaults(run=run_demo)

    certs = commands.add_parser(
        "certs",
        parents=[verbose],
        help="write a private CA and certificates for localhost",
        description=(
            "Write ca.pem, server.pem and server.key (for localhost, 127.0.0.1 and ::1, or "
            "--hosts), and a client certificate, into DIR, as trionet.testing.write_certs "
            "does. Existing files are left alone unless --force is given."
        ),
    )
    certs.add_argument("dir", metavar="DIR", type=Path, help="directory to write (created)")
    certs.add_argument(
        "--hosts",
        type=host_list,
        metavar="NAMES",
        help="the server certificate's names and addresses, comma-separated "
        "(default: localhost,127.0.0.1,::1)",
    )
    certs.add_argument(
        "--force", action="store_true", help="overwrite files that exist already in DIR"
    )
    certs.set_defaults(run=run_certs)

    bench = commands.add_parser(
        "bench",
        parents=[verbose],
        help="run the benchmarks of a trionet checkout and compare with the peers",
        description=(
            "Run the benchmarks of a checkout of trionet's source (benchmarks/run.py) and "
            "print one table with trionet's figures, the peers' and the ratios. They are not "
            "part of the installed package: in a checkout, pip install -e '.[bench]' installs "
            "the Python peers."
        ),
    )
    bench.add_argument("names", metavar="NAME", nargs="*", help="benchmarks to run (default: all)")
    bench.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    bench.add_argument(
        "--list", action="store_true", help="list the benchmarks and what each measures"
    )
    bench.add_argument(
        "--dir",
        type=Path,
        help="the benchmarks directory (default: the checkout trionet was imported from, "
        "else the checkout holding the current directory)",
    )
    bench.add_argument(
        "--update-docs",
        action="store_true",
        help="also write the charts and the table into docs/ beside the benchmarks "
        "(a full run of every benchmark only)",
    )
    bench.set_defaults(run=run_bench)

    from .asgi._command import add_parser as add_serve_parser

    add_serve_parser(commands, [verbose])
    return parser


# -- logging ---------------------------------------------------------------------
class OneLineFormatter(logging.Formatter):
    """One line per record: an exception shows as ``: Type: message``, not a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"trionet: {record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            line += f": {type(exc).__name__}: {exc}"
        return line


def configure_logging(verbose: bool) -> None:
    """Send the ``trionet`` logger to stderr: warnings on one line, or everything with -v."""
    # The package's logger: every module's logger (trionet.http.server, ...) is its child.
    package = logging.getLogger("trionet")
    handler = logging.StreamHandler(sys.stderr)
    if verbose:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        package.setLevel(logging.DEBUG)
    else:
        handler.setFormatter(OneLineFormatter())
        package.setLevel(logging.WARNING)
    package.addHandler(handler)
    package.propagate = False


# -- the commands ------------------------------------------------------------------
def run_demo(args: argparse.Namespace) -> int:
    """``trionet demo``: serve until a signal; 1 if a service cannot start."""
    from . import _demo

    with contextlib.ExitStack() as stack:
        workdir: Path = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="trionet-demo-"))
        )
        workdir.mkdir(parents=True, exist_ok=True)
        opts = _demo.Options(
            workdir=workdir,
            host=args.host,
            tcp_port=args.tcp_port,
            udp_port=args.udp_port,
            http_port=args.http_port,
            https_port=args.https_port,
            grace=args.grace,
        )
        try:
            trio.run(_demo.run, opts)
        except _demo.DemoError as exc:
            print(f"trionet demo: error: {exc}", file=sys.stderr)
            return 1
    print("trionet demo: stopped", flush=True)
    return 0


def run_certs(args: argparse.Namespace) -> int:
    """``trionet certs DIR``: write the CA and certificates, then list them.

    Existing files are kept unless ``--force``: a CA or key someone already
    trusts or deployed is not something to replace by accident. Status 1 when
    nothing was written, 2 for a name ``--hosts`` cannot hold.
    """
    from . import testing
    from ._demo.service import url_host

    directory: Path = args.dir
    hosts: tuple[str, ...] = args.hosts or testing.DEFAULT_HOSTS
    try:
        files = testing.write_certs(directory, hosts=hosts, overwrite=args.force)
    except FileExistsError as exc:
        print(
            f"trionet certs: error: {exc.strerror}; nothing written (--force overwrites them)",
            file=sys.stderr,
        )
        return 1
    except testing.MissingDependencyError as exc:
        print(f"trionet certs: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"trionet certs: error: cannot write to {directory}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"trionet certs: error: --hosts {','.join(hosts)}: {exc}", file=sys.stderr)
        return 2
    print(f"CA certificate       {files.ca}")
    print(f"server certificate   {files.cert}   ({', '.join(hosts)})")
    print(f"server key           {files.key}")
    print(f"client certificate   {files.client_cert}")
    print(f"client key           {files.client_key}")
    named = [host for host in hosts if not host.startswith("*.")]
    if named:  # a wildcard names no host to try
        print(f"try: curl --cacert {files.ca} https://{url_host(named[0])}:PORT/")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    """``trionet bench``: run benchmarks/run.py's benchmarks with progress, then one table."""
    directory = find_benchmarks(args.dir)
    if directory is None:
        reason = (
            NEEDS_A_CHECKOUT if args.dir is None else f"no benchmarks/run.py found in {args.dir}"
        )
        print(f"trionet bench: error: {reason}", file=sys.stderr)
        return 1
    runner = load_runner(directory)
    available: list[str] = runner.discover()
    if args.list:
        for name in available:
            print(f"{name:<16}{summary(directory / f'{name}.py')}")
        return 0
    unknown = [name for name in args.names if name not in available]
    if unknown:
        print(
            f"trionet bench: error: unknown benchmark(s) {', '.join(unknown)}; "
            f"have: {', '.join(available)}",
            file=sys.stderr,
        )
        return 2
    refusal = runner.docs_refusal(quick=args.quick, names=args.names, failed=[])
    if args.update_docs and refusal:
        print(f"trionet bench: error: {refusal}", file=sys.stderr)
        return 2
    names = args.names or available
    imported_from = PACKAGE_ROOT
    if args.dir is None and directory.parent != imported_from:
        print(
            f"trionet bench: note: these benchmarks measure the trionet imported from "
            f"{imported_from}, not the one in {directory.parent} "
            "(pip install -e . there to measure that one)",
            file=sys.stderr,
        )
    verbose = getattr(args, "verbose", False)
    outcomes = [
        run_one(name, f"[{i}/{len(names)}] {name}", args.quick, verbose)
        for i, name in enumerate(names, 1)
    ]
    print()
    results = [r for o in outcomes for r in o.results if not _skipped(r)]
    runner.print_table(results, baseline=runner.BASELINE)
    # One line per reason (the harness names every subject it hit: a missing peer
    # is missing from each workload of its benchmark), each line once.
    lines = [
        line
        for name, o in zip(names, outcomes, strict=True)
        for line in [*runner.skip_lines(o.results, prefix=f"{name}: "), *o.skipped]
    ]
    skipped = [_with_hint(line) for line in dict.fromkeys(lines)]
    for line in skipped:
        print(f"skipped: {line}")
    failed = [o.failed for o in outcomes if o.failed is not None]
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    if args.update_docs:
        message = runner.docs_refusal(quick=False, names=[], failed=failed) or (
            runner.update_docs(results, skipped, directory.parent / "docs")
        )
        print(f"trionet bench: {message}", file=sys.stderr)
        if message.startswith("error"):
            return 1
    return 1 if failed else 0


@dataclass
class BenchOutcome:
    """What one benchmark gave: its results (a peer it could not run is one marked
    skipped), the lines where it said it skipped something, or why it failed."""

    results: list[Any] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: str | None = None


def run_one(name: str, label: str, quick: bool, verbose: bool) -> BenchOutcome:
    """Import and run ``benchmarks/<name>.py`` under a progress bar, keeping its prints aside."""
    chatter = io.StringIO()
    outcome = BenchOutcome()
    with Progress(label) as progress:
        try:
            with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
                found = importlib.import_module(name).run(quick)
        except ModuleNotFoundError as exc:
            outcome.skipped.append(f"{name}: needs {exc.name} ({install_hint(str(exc.name))})")
            progress.outcome = "skipped"
            return outcome
        except Exception as exc:
            logger.debug("benchmark %s failed", name, exc_info=True)
            first_line = (str(exc).splitlines() or [""])[0]
            outcome.failed = f"{name}: {type(exc).__name__}: {first_line} (-v shows why)"
            progress.outcome = "failed"
            return outcome
        finally:
            if verbose:
                sys.stderr.write(chatter.getvalue())
    # A missing peer shows as a result marked skipped (_harness.skipped) or a line saying so.
    outcome.results = list(found)
    outcome.skipped += [line for line in chatter.getvalue().splitlines() if "skipped" in line]
    return outcome


def _with_hint(reason: str) -> str:
    """``reason``, plus how to install the missing peer unless it says already."""
    return reason if "install" in reason else f"{reason} ({install_hint(reason)})"


#: What to install for a peer a benchmark could not find, by a word of its message.
INSTALL_HINTS = {
    "npm": "apt-get install nodejs npm, then npm install in tests/peers",
    "node": "apt-get install nodejs npm",
    "wrk": "apt-get install wrk",
}


def install_hint(message: str) -> str:
    """How to install the peer ``message`` talks about; Python peers come with ``[bench]``."""
    for word, hint in INSTALL_HINTS.items():
        if word in message:
            return f"install: {hint}"
    return "install: pip install -e '.[bench]'"


def _skipped(result: Any) -> bool:
    return bool(getattr(result, "extra", {}).get("skipped"))


#: The directory holding the ``trionet`` package this command runs: in a
#: checkout (or an editable install of one), the checkout itself.
PACKAGE_ROOT = Path(__file__).resolve().parents[1]

#: What ``trionet bench`` says where there is no checkout (see :func:`find_benchmarks`).
NEEDS_A_CHECKOUT = (
    "the benchmarks are not part of the installed package: they run from a checkout of "
    "trionet's source, beside the peers they compare with (tests/peers for Node's). "
    "In a checkout, pip install -e '.[bench]', then run trionet bench there "
    "(or pass --dir CHECKOUT/benchmarks)"
)


def is_checkout(directory: Path) -> bool:
    """Whether ``directory`` is a trionet source tree: ``benchmarks/run.py`` beside ``trionet/``."""
    return (directory / "benchmarks" / "run.py").is_file() and (
        directory / "trionet" / "__init__.py"
    ).is_file()


def find_benchmarks(explicit: Path | None) -> Path | None:
    """The benchmarks directory: ``--dir``, else a trionet checkout's; None without one.

    Looked for, in order: the checkout this ``trionet`` package was imported
    from (an editable install, or ``python -m trionet`` in the checkout: the
    code the benchmarks then measure), then the current directory and its
    parents, where only a trionet checkout counts (``benchmarks/run.py``
    beside ``trionet/``). The old search took any ``benchmarks/run.py`` above
    the working directory and imported it: another project's code.
    """
    if explicit is not None:
        return explicit.resolve() if (explicit / "run.py").is_file() else None
    here = Path.cwd()
    for root in (PACKAGE_ROOT, here, *here.parents):
        if is_checkout(root):
            return (root / "benchmarks").resolve()
    return None


def summary(module: Path) -> str:
    """The first line of a benchmark module's docstring, read without importing it."""
    try:
        doc = ast.get_docstring(ast.parse(module.read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError, ValueError):
        return ""
    return (doc.splitlines() or [""])[0]


def load_runner(directory: Path) -> ModuleType:
    """Import ``directory/run.py`` (which puts its directory on ``sys.path``)."""
    spec = importlib.util.spec_from_file_location("_trionet_bench_run", directory / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Progress:
    """One line on stderr per benchmark: a bar sweeping while it runs, then how long it took.

    The benchmarks cannot say how far along they are, so the bar shows that
    work goes on and the clock shows how long; on a terminal it redraws in
    place, elsewhere (CI logs) it prints a start and an end line.
    """

    WIDTH = 20
    TICK = 0.1

    def __init__(self, label: str) -> None:
        self.label = label
        self.outcome = "done"
        self._tty = sys.stderr.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._draw, daemon=True)
        self._start = 0.0

    def __enter__(self) -> Progress:
        self._start = time.monotonic()
        if self._tty:
            self._thread.start()
        else:
            print(f"{self.label} ...", file=sys.stderr, flush=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._tty:
            self._thread.join()
        elapsed = time.monotonic() - self._start
        bar = "#" * self.WIDTH if self.outcome == "done" else "-" * self.WIDTH
        end = f"\r{self.label} [{bar}] {self.outcome} in {elapsed:.1f}s"
        print(end if self._tty else end[1:], file=sys.stderr, flush=True)

    def _draw(self) -> None:
        step = 0
        while not self._stop.wait(self.TICK):
            step += 1
            pos = step % (2 * self.WIDTH - 2)
            pos = pos if pos < self.WIDTH else 2 * self.WIDTH - 2 - pos
            bar = "".join("=" if abs(i - pos) <= 1 else " " for i in range(self.WIDTH))
            elapsed = time.monotonic() - self._start
            print(f"\r{self.label} [{bar}] {elapsed:.1f}s", end="", file=sys.stderr, flush=True)


# -- entry point -----------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trionet`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "verbose", False))
    try:
        status: int = args.run(args)
    except KeyboardInterrupt:
        # Ctrl-C before the command took charge of signals: a normal way to stop.
        return 0
    return status
