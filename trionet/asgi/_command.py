"""``trionet serve MODULE:APP``: the command line of :func:`trionet.asgi.serve`, uvicorn's flags.

The flag names are uvicorn's, so a ``uvicorn main:app --port 8000`` line
works with ``trionet serve`` in its place; where trionet's meaning differs
the help says so (``--limit-concurrency`` closes extra connections instead of
answering 503; ``--proxy-headers`` is off unless given, where uvicorn turns
it on for 127.0.0.1, so that no header a client can write is believed
without asking; ``--proxy-protocol`` is trionet's, uvicorn has none). Flags
uvicorn has and trionet does not (``--reload``, ``--http``, ``--loop``) are
left out rather than accepted and ignored: a flag that silently does nothing
is worse than an error. ``--workers N`` runs the server in N processes under
:mod:`trionet.cluster` (the primary binds the address once; SIGHUP rolls the
workers, SIGTTIN/SIGTTOU add or remove one); ``--uds-mode`` (not uvicorn's,
which makes every ``--uds`` socket 0666) sets the Unix socket's permission bits.

Shutdown, as uvicorn's: the first Ctrl-C or SIGTERM stops accepting and
gives live requests ``--timeout-graceful-shutdown`` seconds (then cancels
them), then runs the app's lifespan shutdown; a second signal cancels at
once. Exit status: 0 after a signal, 1 if the app cannot be loaded or the
address not listened on, 3 if the app's startup failed (uvicorn's
``STARTUP_FAILURE``).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup  # Trio's dependency before 3.11

from .. import cluster
from .._run import supervise
from ._serve import serve
from ._types import ASGIApp, LifespanFailure

__all__ = ["STARTUP_FAILURE", "add_parser", "load_app", "run"]

logger = logging.getLogger("trionet.asgi.command")

#: The exit status when the app's lifespan startup fails (uvicorn's).
STARTUP_FAILURE = 3
#: uvicorn's defaults for the flags that have one.
DEFAULT_PORT = 8000
DEFAULT_WS_MAX_SIZE = 16 * 1024 * 1024
LOG_LEVELS = {"critical": 50, "error": 40, "warning": 30, "info": 20, "debug": 10, "trace": 5}


class AppLoadError(Exception):
    """``MODULE:APP`` could not be imported or found."""


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` subcommand to the ``trionet`` parser's ``commands``."""
    p = commands.add_parser(
        "serve",
        parents=parents,
        help="serve an ASGI app (Starlette, FastAPI, Quart-Trio) with uvicorn's flags",
        description=(
            "Serve the ASGI app APP of module MODULE over HTTP/1.1 and WebSocket on Trio. "
            "The flags are uvicorn's. Ctrl-C or SIGTERM stops gracefully; with --workers, "
            "SIGHUP replaces the workers one at a time and SIGTTIN/SIGTTOU add or remove one."
        ),
    )
    p.add_argument("app", metavar="MODULE:APP", help="e.g. main:app (imported from --app-dir)")
    p.add_argument("--host", default="127.0.0.1", metavar="ADDRESS",
                   help="address to listen on (%(default)s)")  # fmt: skip
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port; 0 picks one (%(default)s)")
    p.add_argument("--uds", metavar="PATH", help="listen on this Unix socket instead")
    p.add_argument("--uds-mode", metavar="OCTAL", type=_octal, default=None,
                   help="the Unix socket's permissions, e.g. 660 (the umask's)")  # fmt: skip
    p.add_argument("--workers", type=_positive, default=None, metavar="N",
                   help="serve from N worker processes under a primary that binds the"
                        " address once (default: this process alone)")  # fmt: skip
    p.add_argument("--app-dir", default=".", metavar="DIR",
                   help="directory to import MODULE from (%(default)s)")  # fmt: skip
    p.add_argument("--factory", action="store_true", help="APP is a function returning the app")
    p.add_argument("--root-path", default="", metavar="PREFIX",
                   help="the prefix the app is mounted under")  # fmt: skip
    p.add_argument("--lifespan", choices=("auto", "on", "off"), default="auto",
                   help="run the app's startup/shutdown (%(default)s)")  # fmt: skip
    p.add_argument("--log-level", choices=tuple(LOG_LEVELS), default="info",
                   help="the trionet logger's level (%(default)s)")  # fmt: skip
    p.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                   help="one line per response on stdout, common log format (on)")  # fmt: skip
    p.add_argument("--ssl-keyfile", metavar="FILE", help="serve HTTPS with this private key (PEM)")
    p.add_argument("--ssl-certfile", metavar="FILE", help="... and this certificate chain (PEM)")
    p.add_argument("--ssl-ca-certs", metavar="FILE",
                   help="CA certificates to verify client certificates")  # fmt: skip
    p.add_argument("--timeout-keep-alive", type=float, default=5.0, metavar="SECONDS",
                   help="seconds an idle connection stays open (%(default)s)")  # fmt: skip
    p.add_argument("--timeout-graceful-shutdown", type=float, default=None, metavar="SECONDS",
                   help="seconds live requests get at shutdown (default: no bound)")  # fmt: skip
    p.add_argument("--limit-concurrency", type=int, default=None, metavar="N",
                   help="most connections at once; more are closed (uvicorn: 503)")  # fmt: skip
    p.add_argument("--h11-max-incomplete-event-size", type=int, default=None, metavar="BYTES",
                   help="largest request head in bytes, 431 above (16384)")  # fmt: skip
    p.add_argument("--ws-max-size", type=int, default=DEFAULT_WS_MAX_SIZE, metavar="BYTES",
                   help="largest WebSocket message in bytes (%(default)s)")  # fmt: skip
    p.add_argument("--ws-ping-interval", type=float, default=None, metavar="SECONDS",
                   help="seconds between WebSocket pings (off)")  # fmt: skip
    p.add_argument("--ws-ping-timeout", type=float, default=None, metavar="SECONDS",
                   help="seconds to wait for the pong (the interval)")  # fmt: skip
    p.add_argument("--proxy-headers", action=argparse.BooleanOptionalAction, default=False,
                   help="believe X-Forwarded-For/-Proto/-Host and Forwarded from"
                        " --forwarded-allow-ips (off)")  # fmt: skip
    p.add_argument("--forwarded-allow-ips", default=None, metavar="IPS",
                   help="comma-separated IPs and networks of trusted proxies, 'unix' for"
                        " Unix-socket peers, '*' for all ($FORWARDED_ALLOW_IPS, else"
                        " 127.0.0.1,::1,unix)")  # fmt: skip
    p.add_argument("--proxy-protocol", action="store_true",
                   help="each connection starts with a PROXY protocol header (v1 or v2)"
                        " from a trusted proxy")  # fmt: skip
    p.set_defaults(run=run)


def _octal(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal mode: {text!r}") from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"not a permission mode: {text!r}")
    return mode


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a positive number: {text!r}")
    return int(text)


def load_app(spec: str, *, app_dir: str = ".", factory: bool = False) -> ASGIApp:
    """Import ``MODULE:ATTR`` (ATTR may be dotted); call it first with ``factory``."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise AppLoadError(f"expected MODULE:APP, got {spec!r}")
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppLoadError(f"could not import {module_name!r}: {exc}") from exc
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppLoadError(f"{module_name!r} has no attribute {attr!r}") from None
    app: ASGIApp = target() if factory else target
    return app


def _configure_logs(args: argparse.Namespace) -> None:
    if not getattr(args, "verbose", False):
        logger.setLevel(LOG_LEVELS[args.log_level])
        logging.getLogger("trionet.cluster").setLevel(LOG_LEVELS[args.log_level])
    access = logging.getLogger("trionet.access")
    access.propagate = False
    access.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)


def run(args: argparse.Namespace) -> int:
    """``trionet serve``: the exit status (see the module docstring)."""
    _configure_logs(args)
    try:
        app = load_app(args.app, app_dir=args.app_dir, factory=args.factory)
    except AppLoadError as exc:
        print(f"trionet serve: error: {exc}", file=sys.stderr)
        return 1
    try:
        if args.workers is not None:
            _run_workers(app, args)
        else:
            trio.run(_serve_until_signal, app, args)
    except (LifespanFailure, OSError, BaseExceptionGroup) as exc:
        failure = _only(exc)
        if isinstance(failure, LifespanFailure):
            print(f"trionet serve: error: the app's startup failed: {failure}", file=sys.stderr)
            return STARTUP_FAILURE
        if isinstance(failure, OSError):
            print(f"trionet serve: error: {failure}", file=sys.stderr)
            return 1
        raise
    return 0


def _only(exc: BaseException) -> BaseException:
    """The one exception inside nested single-exception groups (the nurseries' wrapping)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _run_workers(app: ASGIApp, args: argparse.Namespace) -> None:
    """``--workers N``: the primary supervises; each worker serves until stopped."""
    if cluster.is_primary:
        print(f"trionet serve: {args.app} in {args.workers} worker processes (Ctrl-C to stop)",
              file=sys.stderr, flush=True)  # fmt: skip
    cluster.run(_serve_in_worker, app, args, workers=args.workers,
                shutdown_timeout=args.timeout_graceful_shutdown)  # fmt: skip


async def _serve_in_worker(app: ASGIApp, args: argparse.Namespace) -> None:
    """A worker's main: trionet.run (around it) stops the server on SIGTERM."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(_server_start(app, args))
        where = f"unix:{args.uds}" if args.uds else f"{server.address[0]}:{server.port}"
        print(f"trionet serve: worker {cluster.worker_id} (pid {os.getpid()}) on {where}",
              file=sys.stderr, flush=True)  # fmt: skip


async def _serve_until_signal(app: ASGIApp, args: argparse.Namespace) -> None:
    tls = args.ssl_keyfile is not None or args.ssl_certfile is not None
    start = _server_start(app, args)
    # The signals are trionet.run's: the first closes the server (live requests
    # get the graceful timeout), then the lifespan shutdown runs; a second cancels.
    await supervise(_serve, args, start, tls, shutdown_timeout=args.timeout_graceful_shutdown)
    print("trionet serve: stopped", file=sys.stderr, flush=True)


async def _serve(
    args: argparse.Namespace, start: Callable[..., Awaitable[None]], tls: bool
) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(start)
        if args.uds:
            where = f"unix:{args.uds}"
        else:
            host, port = server.address[0], server.port
            where = f"{'https' if tls else 'http'}://{host}:{port}"
        print(f"trionet serve: {args.app} on {where} (Ctrl-C to stop)",
              file=sys.stderr, flush=True)  # fmt: skip


def _server_start(app: ASGIApp, args: argparse.Namespace) -> Callable[..., Awaitable[None]]:
    """The ``serve`` of the command's flags, for ``nursery.start``."""
    return functools.partial(
        serve,
        app,
        None if args.uds else args.port,
        host=None if args.uds else args.host,
        path=args.uds,
        mode=args.uds_mode if args.uds else None,
        root_path=args.root_path.rstrip("/"),
        lifespan=args.lifespan,
        access_log=args.access_log,
        keep_alive_timeout=args.timeout_keep_alive,
        max_connections=args.limit_concurrency,
        max_header_size=args.h11_max_incomplete_event_size,
        ws_max_size=args.ws_max_size,
        ws_ping_interval=args.ws_ping_interval,
        ws_ping_timeout=args.ws_ping_timeout,
        key=args.ssl_keyfile,
        cert=args.ssl_certfile,
        ca=args.ssl_ca_certs,
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        proxy_protocol=args.proxy_protocol,
    )
