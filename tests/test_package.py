"""The package's face: public names, error hierarchy, typing marker."""

from __future__ import annotations

import builtins
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
