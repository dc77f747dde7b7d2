"""The package's face: public names, error hierarchy, typing marker."""

from __future__ import annotations

import builtins
import subprocess
import sys
from pathlib import Path

import trionet


def test_errors_share_one_base() -> None:
    for cls in (
        trionet.ConnectError,
        trionet.ProtocolError,
        trionet.TLSError,
        trionet.PoolTimeout,
        trionet.TimeoutError,
    ):
        assert issubclass(cls, trionet.TrionetError)
    assert issubclass(trionet.TimeoutError, builtins.TimeoutError)
    assert issubclass(trionet.PoolTimeout, trionet.TimeoutError)
    assert issubclass(trionet.ConnectError, OSError)


def test_package_is_typed() -> None:
    assert (Path(trionet.__file__).parent / "py.typed").exists()


def test_importing_trionet_brings_no_test_tooling() -> None:
    """An application that imports trionet loads neither pytest nor trustme."""
    code = (
        "import sys, trionet\n"
        "print(sorted(m for m in ('pytest', 'trustme', 'trionet.testing') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
