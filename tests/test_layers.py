"""trionet's modules import downwards only, and never in a circle.

Every import counts: at the top, inside a function (a "lazy" import hides a
dependency, it does not remove it) and under ``if TYPE_CHECKING`` (the types
of a higher layer in a lower one are the same knot). The imports are read
with :mod:`ast`, nothing is executed.

The layers, lowest first (a module may import its own layer and those below):

0. foundations: errors, pure state and parsing, no sockets (``_errors``,
   ``_pool``, ``_url``, ``_ws_protocol``, ``_ws_state``, ``_ws_send``, the TLS
   pieces without sockets: ``_tls_pem``, ``_tls_verify``, ``_tls_failure``, the
   proxy trust list and headers: ``_forwarded``, ``_proxy_protocol``) and
   the descriptor I/O (``_fdio``), the lingering close over it (``_linger``),
   the listening sockets (``_listen``), the run's graceful stop (``_run``:
   servers enroll in it, knowing it only through a protocol) and the cluster's
   pure parts and channel (``cluster._wire``, ``cluster._channel``,
   ``cluster._env``, ``cluster._state``);
1. the stream every protocol reads and writes (``_stream``);
2. what runs streams: listeners (``_server``, accepting in ``_accept``, the accepted
   connection's Socket in ``_accepted``), the TLS plumbing
   (``_tls_context``, ``_tls_stream``), the WebSocket connection
   (``_ws_connection``, ``_ws_running``), the connection pool (``agent``: it knows
   connections only through :class:`trionet.agent.PooledConnection`) and the
   cluster's primary and workers (``cluster``: they know servers only through
   the listening sockets of ``_listen``);
3. transports: ``net``, ``dgram``, ``tls``;
4. ``http`` (server and client, every module of the package);
5. protocols over HTTP: ``https``, ``ws`` (with its client and server
   handshakes, ``_ws_client`` and ``_ws_server``), and ``asgi`` (ASGI apps
   over both; every module of the package);
6. the faces and tools: the ``trionet`` package itself, ``testing`` and its
   plugin (and ``_certs``, the certificates they write), the CLI and the demo
   (they may import anything).

A new module must be given a layer here (the last test says so).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import trionet

PACKAGE_DIR = Path(trionet.__file__).parent

LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "trionet._errors",
        "trionet._pool",
        "trionet._url",
        "trionet._ws_protocol",
        "trionet._ws_state",
        "trionet._ws_send",
        "trionet._ws_tasks",
        "trionet._tls_pem",
        "trionet._tls_verify",
        "trionet._tls_failure",
        "trionet._fdio",
        "trionet._linger",
        "trionet._listen",
        "trionet._run",
        "trionet._forwarded",
        "trionet._proxy_protocol",
        "trionet.cluster._wire",
        "trionet.cluster._channel",
        "trionet.cluster._env",
        "trionet.cluster._state",
    ),
    ("trionet._stream",),
    (
        "trionet._server",
        "trionet._accept",
        "trionet._accepted",
        "trionet._tls_context",
        "trionet._tls_stream",
        "trionet._ws_connection",
        "trionet._ws_reading",
        "trionet._ws_running",
        "trionet.agent",
        "trionet.cluster",
    ),
    ("trionet.net", "trionet.dgram", "trionet.tls"),
    ("trionet.http",),
    ("trionet.https", "trionet.ws", "trionet._ws_client", "trionet._ws_server", "trionet.asgi"),
    (
        "trionet",
        "trionet.__main__",
        "trionet._cli",
        "trionet._demo",
        "trionet.testing",
        "trionet._testing_plugin",
        "trionet._certs",
    ),
)

def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


FILES = {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}
PACKAGES = {name for name, path in FILES.items() if path.name == "__init__.py"}


def imported_modules(name: str) -> set[str]:
    """The trionet modules ``name`` imports (``from . import x`` is module ``x``)."""
    path = FILES[name]
    base = name.split(".") if name in PACKAGES else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                module = ".".join(anchor + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            submodules = [f"{module}.{alias.name}" for alias in node.names]
            targets = [m for m in submodules if m in FILES] or [module]
        for target in targets:
            while target and target not in FILES:
                target = target.rpartition(".")[0]
            if target.startswith("trionet") and target != name:
                found.add(target)
    return found


GRAPH = {name: imported_modules(name) for name in FILES}


def layer_of(name: str) -> int | None:
    """The layer of the longest entry of :data:`LAYERS` that names ``name`` or a package of it."""
    best: tuple[int, int] | None = None  # (length of the entry, layer)
    for layer, entries in enumerate(LAYERS):
        for entry in entries:
            names_it = name == entry or (entry != "trionet" and name.startswith(entry + "."))
            if names_it and (best is None or len(entry) > best[0]):
                best = (len(entry), layer)
    return None if best is None else best[1]


def in_a_circle(name: str) -> list[str] | None:
    """A path of imports from ``name`` back to itself, if there is one (package faces skipped).

    A package's ``__init__`` only re-exports its modules; an edge into it is not
    a dependency on the package's rooms, so it is left out.
    """
    stack: list[tuple[str, list[str]]] = [(name, [name])]
    seen: set[str] = set()
    while stack:
        current, path = stack.pop()
        for target in GRAPH[current] - PACKAGES:
            if target == name:
                return [*path, name]
            if target not in seen:
                seen.add(target)
                stack.append((target, [*path, target]))
    return None


@pytest.mark.parametrize("name", sorted(FILES))
def test_module_imports_only_its_layer_and_below(name: str) -> None:
    layer = layer_of(name)
    assert layer is not None, f"{name} has no layer: place it in LAYERS in {__file__}"
    upward = {t: layer_of(t) for t in GRAPH[name] if (layer_of(t) or 0) > layer}
    assert not upward, f"{name} (layer {layer}) imports higher layers: {upward}"


@pytest.mark.parametrize("name", sorted(FILES))
def test_module_is_in_no_import_circle(name: str) -> None:
    circle = in_a_circle(name)
    assert circle is None, " -> ".join(circle)


def test_the_walk_sees_lazy_and_type_checking_imports() -> None:
    """Checks the checker: edges we know are there, of each kind."""
    assert "trionet._stream" in GRAPH["trionet._server"]  # at the top
    assert "trionet.http" in GRAPH["trionet.ws"]  # inside a function
    assert "trionet.tls" in GRAPH["trionet.ws"]  # ``from . import net, tls``
    assert "trionet" not in GRAPH["trionet.ws"]  # ... is not an import of the package
    assert layer_of("trionet.http._client") == layer_of("trionet.http") == 4
    assert layer_of("trionet._demo.chat") == layer_of("trionet") == 6
