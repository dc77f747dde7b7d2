"""The ``trionet`` command: help, errors, ``certs``, ``bench`` and ``-v``.

``trionet demo`` has its own file, tests/test_demo.py.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from trionet._cli import OneLineFormatter, configure_logging, main

ROOT = Path(__file__).resolve().parents[1]


def trionet(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 30,
    site: Path = ROOT,
    as_script: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m trionet ARGS`` as a user would, and capture what it says.

    ``site`` is where ``trionet`` is imported from: this checkout, or a copy
    standing for an installed package (:func:`installed_copy`). ``as_script``
    leaves the working directory off ``sys.path``, as the installed ``trionet``
    script does (``python -P``, Python 3.11+).
    """
    return subprocess.run(
        [sys.executable, *(["-P"] if as_script else []), "-m", "trionet", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(site)},
    )


def installed_copy(tmp_path: Path) -> Path:
    """A site-packages-like directory holding a copy of the package, and nothing beside."""
    site = tmp_path / "site-packages"
    shutil.copytree(
        ROOT / "trionet", site / "trionet", ignore=shutil.ignore_patterns("__pycache__")
    )
    return site


# -- help and errors ----------------------------------------------------------------
@pytest.mark.parametrize("command", ["", "demo", "certs", "bench", "serve"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main([*command.split(), "--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: trionet {command}".rstrip())
    assert "-v, --verbose" in out


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("demo", "certs", "bench", "serve"):
        assert command in out


def test_demo_help_names_the_seed_ports(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    for option, default in [
        ("--tcp-port", "8124"),
        ("--udp-port", "41234"),
        ("--http-port", "1337"),
        ("--https-port", "8443"),
    ]:
        assert option in out and default in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["server"], "invalid choice: 'server'"),
        (["serve"], "the following arguments are required: MODULE:APP"),
        (["demo", "--tcp-port", "70000"], "port must be in 0..65535, not 70000"),
        (["demo", "--http-port", "web"], "not a port number: 'web'"),
        (["demo", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["certs"], "the following arguments are required: DIR"),
    ],
)
def test_bad_usage_says_what_is_wrong(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        main(args)
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def test_the_entry_points_run() -> None:
    """``python -m trionet`` and the ``trionet`` script are the same command."""
    done = trionet("--version")
    assert (done.returncode, done.stdout.strip()) == (0, "trionet 0.1.0")
    script = Path(sys.executable).with_name("trionet")
    if script.exists():
        done = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and "usage: trionet" in done.stdout


# -- certs -------------------------------------------------------------------------
def test_certs_writes_a_ca_and_certificates_that_verify(tmp_path: Path) -> None:
    done = trionet("certs", str(tmp_path / "certs"))
    assert done.returncode == 0, done.stderr
    certs = tmp_path / "certs"
    for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key"):
        assert (certs / name).is_file()
        assert str(certs / name) in done.stdout
    assert (certs / "server.key").stat().st_mode & 0o077 == 0, "private keys are private"
    # The server certificate loads and is issued by the CA.
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(certs / "server.pem", certs / "server.key")
    client = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    assert client.get_ca_certs()[0]["issuer"] == client.get_ca_certs()[0]["subject"]


def test_certs_into_an_unwritable_place_fails_clearly(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = trionet("certs", str(blocker / "certs"))
    assert done.returncode == 1
    assert done.stderr.startswith(f"trionet certs: error: cannot write to {blocker / 'certs'}")


def test_certs_keeps_existing_files_unless_forced(tmp_path: Path) -> None:
    assert trionet("certs", str(tmp_path)).returncode == 0
    ca = (tmp_path / "ca.pem").read_bytes()

    again = trionet("certs", str(tmp_path))
    assert again.returncode == 1
    assert again.stderr.startswith("trionet certs: error: already exists: ")
    for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key"):
        assert str(tmp_path / name) in again.stderr
    assert "--force overwrites them" in again.stderr
    assert (tmp_path / "ca.pem").read_bytes() == ca, "a refused run changes nothing"

    forced = trionet("certs", "--force", str(tmp_path))
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "ca.pem").read_bytes() != ca, "--force writes a new CA"
    assert (tmp_path / "server.key").stat().st_mode & 0o077 == 0


def test_certs_writes_nothing_if_one_file_is_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "server.key").write_text("someone's key")
    done = trionet("certs", str(tmp_path))
    assert done.returncode == 1
    assert f"already exists: {tmp_path / 'server.key'};" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server.key"]
    assert (tmp_path / "server.key").read_text() == "someone's key"


def certificate_names(pem: Path) -> set[str]:
    """The DNS names and IP addresses a certificate is issued for."""
    from cryptography import x509

    san = x509.load_pem_x509_certificate(pem.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    ips = {str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)}
    return set(san.value.get_values_for_type(x509.DNSName)) | ips


def test_certs_hosts_names_the_server_certificate(tmp_path: Path) -> None:
    done = trionet("certs", str(tmp_path), "--hosts", "app.localhost, *.app.localhost,127.0.0.1")
    assert done.returncode == 0, done.stderr
    assert certificate_names(tmp_path / "server.pem") == {
        "app.localhost",
        "*.app.localhost",
        "127.0.0.1",
    }
    assert "(app.localhost, *.app.localhost, 127.0.0.1)" in done.stdout
    assert "https://app.localhost:PORT/" in done.stdout
    # A client that trusts the CA accepts the certificate for the names asked, only.
    handshake(tmp_path, "api.app.localhost")
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake(tmp_path, "localhost")


def handshake(certs: Path, server_name: str) -> None:
    """A TLS handshake in memory: the client trusts ``certs/ca.pem`` and checks ``server_name``."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certs / "server.pem", certs / "server.key")
    client_ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(to_client, to_server, server_hostname=server_name)
    server = server_ctx.wrap_bio(to_server, to_client, server_side=True)
    for _ in range(10):
        done = 0
        for end in (client, server):
            try:
                end.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
        if done == 2:
            return
    raise AssertionError("the handshake did not finish")


def test_certs_for_an_ipv6_address_says_how_to_try_it(tmp_path: Path) -> None:
    done = trionet("certs", str(tmp_path), "--hosts", "::1")
    assert done.returncode == 0, done.stderr
    assert certificate_names(tmp_path / "server.pem") == {"::1"}
    assert (
        done.stdout.splitlines()[-1]
        == f"try: curl --cacert {tmp_path / 'ca.pem'} https://[::1]:PORT/"
    )


def test_certs_default_hosts_are_write_certs_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trionet.testing import DEFAULT_HOSTS

    assert trionet("certs", str(tmp_path)).returncode == 0
    assert certificate_names(tmp_path / "server.pem") == set(DEFAULT_HOSTS)
    with pytest.raises(SystemExit):
        main(["certs", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {','.join(DEFAULT_HOSTS)})" in help_text


@pytest.mark.parametrize(
    ("hosts", "status", "message"),
    [
        ("bad name", 2, "trionet certs: error: --hosts bad name: Codepoint U+0020"),
        (",", 2, "argument --hosts: no host names in ','"),
    ],
)
def test_certs_rejects_names_a_certificate_cannot_hold(
    tmp_path: Path, hosts: str, status: int, message: str
) -> None:
    done = trionet("certs", str(tmp_path / "certs"), "--hosts", hosts)
    assert done.returncode == status
    assert message in done.stderr
    assert not (tmp_path / "certs").exists(), "nothing is written"


def test_certs_without_trustme_says_what_to_install(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['trustme'] = None  # as if not installed\n"
        "from trionet._cli import main\n"
        f"sys.exit(main(['certs', {str(tmp_path / 'certs')!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert done.returncode == 1
    assert done.stderr.startswith(
        "trionet certs: error: trionet.testing.write_certs needs trustme, "
        "which cannot be imported here"
    )
    assert done.stderr.endswith(
        "install it: pip install trustme (or pip install 'trionet[test]')\n"
    )
    assert not (tmp_path / "certs").exists()


# -- bench -------------------------------------------------------------------------
def test_bench_quick_prints_one_table() -> None:
    # Speed is never asserted by wall time here (the machine may be shared):
    # the timeout only keeps a hung benchmark from hanging the suite.
    done = trionet("bench", "--quick", cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    header, rule = done.stdout.splitlines()[1:3]
    assert header.split() == ["benchmark", "subject", "value", "unit", "ratio", "notes"]
    assert set(rule) <= {"-", " "}
    assert "trionet" in done.stdout and "1.00x" in done.stdout
    # A progress line per benchmark, on stderr.
    assert "[1/" in done.stderr and "done in" in done.stderr


def copy_runner(directory: Path) -> None:
    """The benchmark runner and its helpers (benchmarks/run.py, _*.py), without the benchmarks."""
    for source in [ROOT / "benchmarks" / "run.py", *(ROOT / "benchmarks").glob("_*.py")]:
        shutil.copy(source, directory / source.name)


NEEDS_A_PYTHON_PEER = '''
"""A benchmark whose peer is a Python package that is not installed."""
def run(quick):
    import no_such_peer_module
'''

NEEDS_NODE = '''
"""A benchmark that measures trionet and says it skipped its Node peer."""
from _harness import Result, skipped
def run(quick):
    print("half: node is not on PATH; skipped")
    return [
        Result("half", "trionet", 5.0, "ops/s"),
        Result("half", "trio", 4.0, "ops/s"),
        skipped("half", "wrk-load", "wrk is not on PATH"),
        skipped("half", "hypercorn", "hypercorn is missing: pip install hypercorn"),
    ]
'''


def test_bench_reports_missing_peers_as_skipped_with_the_install_hint(tmp_path: Path) -> None:
    copy_runner(tmp_path)
    (tmp_path / "needs_peer.py").write_text(NEEDS_A_PYTHON_PEER)
    (tmp_path / "half.py").write_text(NEEDS_NODE)
    done = trionet("bench", "--quick", "--dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    assert ["half", "trionet", "5.00", "ops/s", "1.25x"] in rows
    assert (
        "skipped: half: node is not on PATH; skipped (install: apt-get install nodejs npm)"
        in done.stdout
    )
    assert (
        "skipped: needs_peer: needs no_such_peer_module (install: pip install -e '.[bench]')"
        in done.stdout
    )
    assert "skipped: half: wrk-load: wrk is not on PATH (install: apt-get install wrk)" in (
        done.stdout
    )
    assert "skipped: half: hypercorn: hypercorn is missing: pip install hypercorn\n" in (
        done.stdout
    )
    assert "nan" not in done.stdout
    assert "needs_peer [--------------------] skipped" in done.stderr


WITHOUT_ITS_BASELINE = '''
"""A benchmark with two workloads; its baseline peer and Node are missing from both."""
from _harness import Result, skipped
def run(quick):
    print("ws: node is not on PATH; skipped")
    print("ws: node is not on PATH; skipped")
    return [
        Result("ws echo", "trionet", 30.0, "msg/s"),
        Result("ws echo", "websockets", 60.0, "msg/s"),
        skipped("ws echo", "trio-websocket", "no trio_websocket here"),
        skipped("ws echo", "node-ws", "needs node"),
        Result("ws stream", "trionet", 100.0, "MB/s"),
        Result("ws stream", "websockets", 80.0, "MB/s"),
        skipped("ws stream", "trio-websocket", "no trio_websocket here"),
        skipped("ws stream", "node-ws", "needs node"),
    ]
'''


def test_bench_fills_every_ratio_and_says_each_skip_once(tmp_path: Path) -> None:
    copy_runner(tmp_path)
    (tmp_path / "ws.py").write_text(WITHOUT_ITS_BASELINE)
    done = trionet("bench", "--dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    rows = [line.split("  ") for line in done.stdout.splitlines()[3:7]]
    ratios = [[cell for cell in row if cell][-1].strip() for row in rows]
    # trio-websocket, the usual baseline, is missing: the peer that ran stands in.
    assert ratios == ["0.50x", "1.00x", "1.25x", "1.00x"]
    skips = [line for line in done.stdout.splitlines() if line.startswith("skipped:")]
    assert skips == [
        "skipped: ws: trio-websocket: no trio_websocket here (install: pip install -e '.[bench]')",
        "skipped: ws: node-ws: needs node (install: apt-get install nodejs npm)",
        "skipped: ws: node is not on PATH; skipped (install: apt-get install nodejs npm)",
    ]


RESULTS_PAGE = """# Benchmarks

Prose before.

<!-- results: begin. Written by `trionet bench --update-docs`; edit the text around. -->
old figures
<!-- results: end -->

Prose after.
"""


def test_bench_update_docs_writes_charts_and_the_table(tmp_path: Path) -> None:
    bench, docs = tmp_path / "benchmarks", tmp_path / "docs"
    bench.mkdir()
    docs.mkdir()
    copy_runner(bench)
    (bench / "ws.py").write_text(WITHOUT_ITS_BASELINE)
    (docs / "benchmarks.md").write_text(RESULTS_PAGE)
    (docs / "results").mkdir()
    (docs / "results" / "a-workload-gone-since.svg").write_text("<svg/>")

    done = trionet("bench", "--dir", str(bench), "--update-docs")
    assert done.returncode == 0, done.stderr
    assert f"updated 4 files under {docs}" in done.stderr
    assert sorted(p.name for p in (docs / "results").iterdir()) == [
        "bench.json",
        "ws-echo.svg",
        "ws-stream.svg",
    ]
    page = (docs / "benchmarks.md").read_text()
    assert page.startswith("# Benchmarks\n\nProse before.\n\n<!-- results: begin.")
    assert page.endswith("<!-- results: end -->\n\nProse after.\n")
    assert "old figures" not in page
    assert "![ws echo](results/ws-echo.svg)\n\n![ws stream](results/ws-stream.svg)" in page
    assert "| ws echo | **trionet** | 30.00 | msg/s | 0.50x |  |" in page
    assert "- ws: node-ws: needs node (install: apt-get install nodejs npm)" in page
    assert "<title>ws echo: msg/s" in (docs / "results" / "ws-echo.svg").read_text()


@pytest.mark.parametrize(
    ("args", "refusal"),
    [
        (["--quick"], "--update-docs records a full run; drop --quick"),
        (["ws"], "--update-docs records every benchmark; name none"),
    ],
)
def test_bench_update_docs_only_records_a_full_run(
    tmp_path: Path, args: list[str], refusal: str
) -> None:
    copy_runner(tmp_path)
    (tmp_path / "ws.py").write_text(WITHOUT_ITS_BASELINE)
    done = trionet("bench", "--dir", str(tmp_path), "--update-docs", *args)
    assert done.returncode == 2
    assert done.stderr.strip() == f"trionet bench: error: {refusal}"
    assert done.stdout == ""


def test_bench_names_unknown_benchmarks(tmp_path: Path) -> None:
    done = trionet("bench", "no_such_benchmark", cwd=ROOT)
    assert done.returncode == 2
    assert "unknown benchmark(s) no_such_benchmark; have: " in done.stderr


def test_bench_lists_the_benchmarks_and_what_each_measures() -> None:
    done = trionet("bench", "--list", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    listed = dict(line.split(maxsplit=1) for line in done.stdout.splitlines())
    assert set(listed) >= {"http_client", "http_server", "tcp_echo", "udp", "websocket"}
    assert listed["tcp_echo"].startswith("TCP echo throughput")


def test_bench_from_an_installed_package_says_it_needs_a_checkout(tmp_path: Path) -> None:
    site, elsewhere = installed_copy(tmp_path), tmp_path / "project"
    elsewhere.mkdir()
    helped = trionet("bench", "--help", cwd=elsewhere, site=site)
    assert helped.returncode == 0
    assert "checkout of trionet's source" in " ".join(helped.stdout.split())
    for args in (["--list"], ["--quick"]):
        done = trionet("bench", *args, cwd=elsewhere, site=site)
        assert done.returncode == 1
        assert done.stdout == ""
        assert done.stderr == (
            "trionet bench: error: the benchmarks are not part of the installed package: "
            "they run from a checkout of trionet's source, beside the peers they compare with "
            "(tests/peers for Node's). In a checkout, pip install -e '.[bench]', then run "
            "trionet bench there (or pass --dir CHECKOUT/benchmarks)\n"
        )


def test_bench_does_not_run_another_projects_benchmarks(tmp_path: Path) -> None:
    """Only a trionet checkout's benchmarks run: not any benchmarks/run.py above the cwd."""
    other = tmp_path / "other-project"
    (other / "benchmarks").mkdir(parents=True)
    (other / "src").mkdir()
    ran = tmp_path / "ran"
    (other / "benchmarks" / "run.py").write_text(f"open({str(ran)!r}, 'w').close()\n")
    done = trionet("bench", "--list", cwd=other / "src", site=installed_copy(tmp_path))
    assert done.returncode == 1
    assert "not part of the installed package" in done.stderr
    assert not ran.exists(), "another project's benchmarks/run.py was imported"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="python -P is new in 3.11")
def test_bench_in_a_checkout_says_which_trionet_it_measures(tmp_path: Path) -> None:
    """A checkout with another trionet installed: the installed one is what gets measured."""
    checkout = tmp_path / "checkout"
    (checkout / "benchmarks").mkdir(parents=True)
    (checkout / "trionet").mkdir()
    (checkout / "trionet" / "__init__.py").write_text("")
    copy_runner(checkout / "benchmarks")
    (checkout / "benchmarks" / "ws.py").write_text(WITHOUT_ITS_BASELINE)
    site = installed_copy(tmp_path)
    done = trionet("bench", cwd=checkout, site=site, as_script=True)
    assert done.returncode == 0, done.stderr
    assert "ws echo" in done.stdout
    assert (
        f"trionet bench: note: these benchmarks measure the trionet imported from {site}, "
        f"not the one in {checkout} (pip install -e . there to measure that one)"
    ) in done.stderr.splitlines()


def test_bench_says_where_it_looked(tmp_path: Path) -> None:
    done = trionet("bench", "--dir", str(tmp_path))
    assert done.returncode == 1
    assert f"no benchmarks/run.py found in {tmp_path}" in done.stderr


# -- logging -------------------------------------------------------------------------
@pytest.fixture
def trionet_logger() -> Iterator[logging.Logger]:
    """The ``trionet`` logger, restored after the test configured it."""
    logger = logging.getLogger("trionet")
    saved = (logger.level, list(logger.handlers), logger.propagate)
    yield logger
    logger.setLevel(saved[0])
    logger.handlers[:] = saved[1]
    logger.propagate = saved[2]


def test_the_library_does_not_configure_logging() -> None:
    code = "import logging, trionet; l = logging.getLogger('trionet'); print(l.level, l.handlers)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split(" ", 1)[0] == "0"  # NOTSET: left to the application


def test_verbose_logs_everything(trionet_logger: logging.Logger) -> None:
    configure_logging(verbose=True)
    assert trionet_logger.getEffectiveLevel() == logging.DEBUG


def test_quiet_by_default_one_line_per_error(trionet_logger: logging.Logger) -> None:
    configure_logging(verbose=False)
    assert not trionet_logger.isEnabledFor(logging.INFO)
    try:
        raise ConnectionResetError("peer reset")
    except ConnectionResetError:
        record = trionet_logger.makeRecord(
            "trionet", logging.ERROR, __file__, 1, "connection handler for %s failed",
            (("127.0.0.1", 5000),), sys.exc_info(),
        )  # fmt: skip
    line = OneLineFormatter().format(record)
    assert line == (
        "trionet: error: connection handler for ('127.0.0.1', 5000) failed: "
        "ConnectionResetError: peer reset"
    )


# -- serve -------------------------------------------------------------------------
ASGI_APP = """
import signal

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                scope["state"]["word"] = "started"
                await send({"type": "lifespan.startup.complete"})
            else:
                print("lifespan shutdown", flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = (scope["state"]["word"] + " " + scope["root_path"]).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})

def make():
    return app

async def failing(scope, receive, send):
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "no database"})
"""


def start_serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``trionet serve`` on a free port in ``tmp_path``; the process and its base URL."""
    (tmp_path / "asgi_app.py").write_text(ASGI_APP)
    proc = subprocess.Popen(
        [sys.executable, "-m", "trionet", "serve", *args, "--port", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "trionet serve: MODULE:APP on http://host:port (...)"
    if " on " not in line:
        proc.kill()
        pytest.fail(f"trionet serve did not start: {line}{proc.communicate(timeout=10)}")
    return proc, line.split(" on ", 1)[1].split()[0]


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    return out, err


def test_serve_answers_curl_logs_access_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc, base = start_serve(tmp_path, "asgi_app:app", "--root-path", "/api")
    try:
        res = subprocess.run(
            ["curl", "-s", "--max-time", "10", f"{base}/hello"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert res.stdout == "started /api"
    finally:
        out, err = stop(proc)
    assert proc.returncode == 0
    assert re.search(r'127\.0\.0\.1 - - \[.+\] "GET /hello HTTP/1\.1" 200 12', out)
    assert "lifespan shutdown" in out
    assert "stopped" in err


def test_serve_factory_and_no_access_log(tmp_path: Path) -> None:
    proc, base = start_serve(tmp_path, "asgi_app:make", "--factory", "--no-access-log")
    try:
        res = subprocess.run(["curl", "-s", "--max-time", "10", base + "/"],
                             capture_output=True, text=True, timeout=20)  # fmt: skip
        assert res.stdout == "started "
    finally:
        out, _ = stop(proc)
    assert "GET /" not in out


def test_serve_exits_3_with_the_apps_message_when_startup_fails(tmp_path: Path) -> None:
    (tmp_path / "asgi_app.py").write_text(ASGI_APP)
    result = trionet("serve", "asgi_app:failing", "--port", "0", cwd=tmp_path)
    assert result.returncode == 3
    assert "no database" in result.stderr


def test_serve_says_when_the_app_cannot_be_found(tmp_path: Path) -> None:
    (tmp_path / "asgi_app.py").write_text(ASGI_APP)
    result = trionet("serve", "asgi_app:nothing", cwd=tmp_path)
    assert result.returncode == 1
    assert "has no attribute 'nothing'" in result.stderr
    result = trionet("serve", "no_such_module:app", cwd=tmp_path)
    assert result.returncode == 1
    assert "could not import" in result.stderr
