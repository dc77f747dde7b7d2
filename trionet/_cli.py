"""Placeholder: the ``trionet`` command line (issue 7) replaces this module."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``trionet`` command."""
    args = sys.argv[1:] if argv is None else argv
    print(f"trionet: command line not written yet ({args})")
