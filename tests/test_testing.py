"""The trionet.testing pytest plugin: its fixtures, and write_certs for the command line."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trustme

import trionet
from trionet.testing import write_certs

ROOT = Path(__file__).resolve().parents[1]

pytest_plugins = ["pytester"]


async def echo(sock: trionet.net.Socket) -> None:
    await trionet.net.pipe(sock, sock)


async def test_serve_fixture_starts_a_server_on_loopback(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve(trionet.net.serve, echo)
    assert server.address[0] == "127.0.0.1"
    assert server.port > 0
    with trio.fail_after(5):
        sock = await trionet.net.connect(server.port, "127.0.0.1")
        await sock.send(b"ping")
        assert await sock.receive() == b"ping"
        await sock.aclose()


async def test_ssl_contexts_fixtures_talk_to_each_other(
    serve, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:  # type: ignore[no-untyped-def]
    """The stdlib contexts: a server presenting tls_server_cert, a client trusting tls_ca."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        await stream.send_all(await stream.receive_some())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            trio.serve_listeners,
            handle,
            [trio.SSLListener(listeners[0], server_ssl_context)],
        )
        with trio.fail_after(5):
            stream = await trio.open_ssl_over_tcp_stream(
                "localhost", port, ssl_context=client_ssl_context
            )
            await stream.send_all(b"hi")
            assert await stream.receive_some() == b"hi"
            await stream.aclose()
        nursery.cancel_scope.cancel()


def test_server_cert_names_loopback(tls_server_cert: trustme.LeafCert) -> None:
    from cryptography import x509

    pem = tls_server_cert.cert_chain_pems[0].bytes()
    san = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert set(san.value.get_values_for_type(x509.DNSName)) == {"localhost"}
    assert {str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)} == {
        "127.0.0.1",
        "::1",
    }


def test_write_certs_writes_pem_files_for_curl(tmp_path: Path) -> None:
    files = write_certs(tmp_path / "certs")
    assert files.ca.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert files.cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY" in files.key.read_bytes()
    assert files.key.stat().st_mode & 0o077 == 0
    assert files.client_cert.exists() and files.client_key.exists()
    # The files load into a server context and verify against the CA.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(files.cert, files.key)
    ssl.create_default_context(cafile=str(files.ca))


def test_write_certs_can_refuse_to_overwrite(tmp_path: Path) -> None:
    first = write_certs(tmp_path)
    ca = first.ca.read_bytes()
    with pytest.raises(FileExistsError) as refused:
        write_certs(tmp_path, overwrite=False)
    assert refused.value.filename == str(first.ca)
    assert str(first.client_key) in str(refused.value)
    assert first.ca.read_bytes() == ca


def test_write_certs_overwriting_a_readable_key_makes_it_private(tmp_path: Path) -> None:
    key = tmp_path / "server.key"
    key.write_text("old")
    key.chmod(0o644)
    write_certs(tmp_path)
    assert b"PRIVATE KEY" in key.read_bytes()
    assert key.stat().st_mode & 0o077 == 0


def test_write_certs_with_a_bad_host_name_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad name"):
        write_certs(tmp_path / "certs", hosts=("localhost", "bad name"))
    assert not (tmp_path / "certs").exists()


def test_module_imports_without_pytest(tmp_path: Path) -> None:
    """write_certs serves the command line, where pytest may be missing."""
    code = (
        "import sys; sys.modules['pytest'] = None\n"
        "import trionet.testing as t\n"
        "assert not hasattr(t, 'tls_ca')\n"
        f"t.write_certs({str(tmp_path)!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert (tmp_path / "ca.pem").exists()


# -- the plugin from a user's point of view: a project that only installed trionet ------
USER_TESTS = """
import trio
import trionet


async def app(req, res):
    await res.end(b"hello " + req.path.encode())


async def test_https_with_the_plugin(serve, server_ssl_context, tls_ca):
    server = await serve(trionet.https.serve, app, ssl_context=server_ssl_context)
    with trio.fail_after(10):
        res = await trionet.https.request(
            f"https://localhost:{server.port}/x", ca=tls_ca.cert_pem.bytes(), agent=False
        )
    assert res.text() == "hello /x"


async def test_mutual_tls_with_the_plugin(serve, tls_ca, tls_server_cert, tls_client_cert):
    async def handler(sock):
        await sock.send(sock.peer_certificate["subject"]["CN"].encode())

    server = await serve(
        trionet.tls.serve,
        handler,
        key=tls_server_cert.private_key_pem.bytes(),
        cert=tls_server_cert.cert_chain_pems[0].bytes(),
        ca=tls_ca.cert_pem.bytes(),
        request_cert=True,
    )
    with trio.fail_after(10):
        sock = await trionet.tls.connect(
            server.port,
            "localhost",
            ca=tls_ca.cert_pem.bytes(),
            cert=tls_client_cert.cert_chain_pems[0].bytes(),
            key=tls_client_cert.private_key_pem.bytes(),
        )
        assert await sock.receive() == b"client"
        await sock.aclose()


async def test_stdlib_client_context(serve, server_ssl_context, client_ssl_context):
    server = await serve(trionet.tls.serve, lambda sock: sock.send(b"hi"),
                         ssl_context=server_ssl_context)
    with trio.fail_after(10):
        sock = await trionet.tls.connect(server.port, ssl_context=client_ssl_context)
        assert await sock.receive() == b"hi"
        await sock.aclose()
"""


def test_fixtures_work_in_a_project_that_only_installed_trionet(
    pytester: pytest.Pytester,
) -> None:
    """No conftest, no plugin line: the pytest11 entry point brings the fixtures."""
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=3)


def test_plugin_lists_its_fixtures(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider", timeout=120)
    for name in (
        "tls_ca",
        "tls_server_cert",
        "tls_client_cert",
        "server_ssl_context",
        "client_ssl_context",
        "serve",
    ):
        result.stdout.fnmatch_lines([f"{name}*"])


def test_the_plugin_imports_neither_trustme_nor_pytest_trio() -> None:
    """pytest imports the plugin in every run: it must not need what only fixtures use."""
    code = (
        "import sys, pytest, trionet.testing\n"
        "print(sorted(m for m in ('trustme', 'pytest_trio') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


# -- an environment without trustme or pytest-trio --------------------------------------
BLOCKER = """
# Makes the packages named in TRIONET_TEST_BLOCK unimportable, as if not installed.
import os, sys
for name in os.environ.get("TRIONET_TEST_BLOCK", "").split(","):
    if name:
        sys.modules[name] = None
"""

UNRELATED_TEST = """
def test_unrelated_to_trionet():
    assert 1 + 1 == 2
"""

CERTIFICATE_TEST = """
def test_wants_a_certificate(tls_server_cert):
    pass
"""

SERVER_TEST = """
def test_wants_a_server(serve):
    pass
"""


def run_pytest_without(
    tmp_path: Path, blocked: str, tests: str, *args: str, autoload: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run pytest on ``tests`` where the ``blocked`` packages cannot be imported."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    project = tmp_path / "project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_user.py").write_text(tests)
    env = {
        **os.environ,
        "TRIONET_TEST_BLOCK": blocked,
        # The blocker, then this checkout's trionet (as pytester does).
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)]),
    }
    if not autoload:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_pytest_runs_when_trustme_cannot_be_imported(tmp_path: Path) -> None:
    """The plugin loads in every pytest run; a missing trustme fails only what needs it."""
    done = run_pytest_without(tmp_path, "trustme", UNRELATED_TEST + CERTIFICATE_TEST)
    lines = done.stdout.splitlines()
    assert "PASSED test_user.py::test_unrelated_to_trionet" in lines, done.stdout + done.stderr
    assert "1 passed, 1 error" in lines[-1], done.stdout
    # The error's whole report: one line saying what to install.
    assert lines[lines.index(f"{' ERROR at setup of test_wants_a_certificate ':_^80}") + 1] == (
        "the tls_ca fixture needs trustme, which cannot be imported here (import of trustme "
        "halted; None in sys.modules); install it: pip install trustme "
        "(or pip install 'trionet[test]')"
    )
    assert "Traceback" not in done.stdout


def test_serve_fixture_without_pytest_trio_says_what_to_install(tmp_path: Path) -> None:
    # Blocked, pytest-trio's own entry point could not load: no autoload, ours alone.
    done = run_pytest_without(
        tmp_path,
        "pytest_trio",
        UNRELATED_TEST + SERVER_TEST,
        "-p",
        "trionet.testing",
        autoload=False,
    )
    lines = done.stdout.splitlines()
    assert "PASSED test_user.py::test_unrelated_to_trionet" in lines, done.stdout + done.stderr
    assert "1 passed, 1 error" in lines[-1], done.stdout
    assert lines[lines.index(f"{' ERROR at setup of test_wants_a_server ':_^80}") + 1] == (
        "the serve fixture needs pytest-trio (its nursery fixture): pip install pytest-trio "
        "(or pip install 'trionet[test]')"
    )


def test_write_certs_without_trustme_says_what_to_install(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['trustme'] = None\n"
        "import trionet.testing as t\n"
        "try:\n"
        f"    t.write_certs({str(tmp_path / 'certs')!r})\n"
        "except t.MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.startswith("trionet.testing.write_certs needs trustme")
    assert done.stdout.rstrip().endswith(
        "install it: pip install trustme (or pip install 'trionet[test]')"
    )
    assert not (tmp_path / "certs").exists()
