"""A griffe extension for the API reference: keep module docstrings' code blocks.

trionet's module docstrings open with a summary on the quotes' line, then
examples indented by four spaces. griffe cleans docstrings as ``inspect.cleandoc``
does, which strips that indentation when every later line is code, so the
examples would render as prose. A module docstring starts at column 0, so its
raw text is already correctly indented Markdown: use it as it is.
"""

from __future__ import annotations

import ast
from typing import Any

import griffe


class ModuleDocstrings(griffe.Extension):
    """Use each module docstring's raw text, so indented examples render as code."""

    def on_module_instance(self, *, node: Any, mod: griffe.Module, **kwargs: Any) -> None:
        if mod.docstring is None or not isinstance(node, ast.Module):
            return
        raw = ast.get_docstring(node, clean=False)
        if raw is not None:
            mod.docstring.value = raw.strip("\n")
