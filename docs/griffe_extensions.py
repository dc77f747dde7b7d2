"""A griffe extension for the API reference: keep module docstrings' code blocks,
and show the docstrings' Sphinx roles as code.

trionet's module docstrings open with a summary on the quotes' line, then
examples indented by four spaces. griffe cleans docstrings as ``inspect.cleandoc``
does, which strips that indentation when every later line is code, so the
examples would render as prose. A module docstring starts at column 0, so its
raw text is already correctly indented Markdown: use it as it is.

The docstrings name other objects as Sphinx does (``:func:`trionet.run```,
``:class:`~trionet.ws.WebSocket```), which Markdown would show verbatim, colons
and all. They become code spans (``~`` keeps the last name, as in Sphinx).
Rejected: links through mkdocs-autorefs, as many roles name private modules
(``:mod:`trionet._server```) that have no page, which ``--strict`` fails on.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:attr|class|data|exc|func|meth|mod|obj):`(~?)([^`]+)`")


def _role_as_code(match: re.Match[str]) -> str:
    name = match[2].rpartition(".")[2] if match[1] else match[2]
    return f"`{name}`"


def without_roles(text: str) -> str:
    """``:func:`~a.b``` -> ```b```, ``:mod:`a.b``` -> ```a.b```."""
    return _ROLE.sub(_role_as_code, text)


class ModuleDocstrings(griffe.Extension):
    """Use each module docstring's raw text, so indented examples render as code;
    show every docstring's Sphinx roles as code spans."""

    def on_module_instance(self, *, node: Any, mod: griffe.Module, **kwargs: Any) -> None:
        if mod.docstring is None or not isinstance(node, ast.Module):
            return
        raw = ast.get_docstring(node, clean=False)
        if raw is not None:
            mod.docstring.value = without_roles(raw.strip("\n"))

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = without_roles(obj.docstring.value)
