"""The docs: every example runs and prints what the page shows, and the site builds.

Each Python example on the site is a file in docs/examples/ that a page
includes with ``--8<-- "name.py"``; its output, when the page shows one, is
``name.txt`` beside it. Ports that vary from run to run are written ``PORT``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from trionet._cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = sorted((DOCS / "examples").glob("*.py"))
PAGES = sorted(DOCS.rglob("*.md"))

#: How long one example may take; they all talk over loopback and finish in a second.
EXAMPLE_TIMEOUT = 60


def normalize(output: str) -> str:
    """Replace ephemeral port numbers (4-5 digits after a colon) with PORT."""
    return re.sub(r"(?<=:)\d{4,5}\b", "PORT", output)


def fenced_blocks(page: Path) -> list[tuple[str, str]]:
    """``(language, body)`` of each fenced code block on a page."""
    return [
        (m.group(1), m.group(2))
        for m in re.finditer(r"^ *```(\w*)[^\n]*\n(.*?)^ *```", page.read_text(), re.M | re.S)
    ]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_and_prints_what_the_page_shows(example: Path, tmp_path: Path) -> None:
    if example.name.startswith("test_"):
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(example)]
    else:
        command = [sys.executable, str(example)]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT
    )
    assert done.returncode == 0, done.stdout + done.stderr
    expected = example.with_suffix(".txt")
    if expected.exists():
        assert normalize(done.stdout) == expected.read_text()


def test_every_example_is_on_a_page() -> None:
    included = {
        name for page in PAGES for name in re.findall(r'--8<-- "([^"]+)"', page.read_text())
    }
    for example in EXAMPLES:
        assert example.name in included, f"{example.name} is on no page"
        output = example.with_suffix(".txt")
        if output.exists():
            assert output.name in included, f"{output.name} is on no page"


def test_python_on_the_pages_comes_from_the_examples() -> None:
    """A ```python block holds only an include, so no code on the site goes untested."""
    for page in PAGES:
        for language, body in fenced_blocks(page):
            if language in ("python", "py"):
                assert re.fullmatch(r'--8<-- "[^"]+\.py"\n', body), (
                    f"{page.relative_to(ROOT)}: inline Python; move it to docs/examples/:\n{body}"
                )


def test_python_in_the_readme_is_from_the_examples() -> None:
    """The README quotes the examples verbatim, so its code runs when they do."""
    sources = [example.read_text() for example in EXAMPLES]
    blocks = [body for language, body in fenced_blocks(ROOT / "README.md") if language == "python"]
    assert blocks
    for body in blocks:
        assert any(body in source for source in sources), f"README block not in an example:\n{body}"


def test_trionet_commands_on_the_pages_parse() -> None:
    """Every ``$ trionet ...`` line in a console block is a valid command line."""
    parser = build_parser()
    seen = 0
    for page in PAGES:
        for language, body in fenced_blocks(page):
            if language != "console":
                continue
            for line in body.splitlines():
                if line.startswith("$ trionet "):
                    parser.parse_args(shlex.split(line)[2:])
                    seen += 1
    assert seen >= 3


def test_the_site_builds_without_warnings(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # Material's banner about its future
    )
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr
    page = (tmp_path / "guide" / "net" / "index.html").read_text()
    assert "欢迎光临《深入浅出Node.js》示例" in page  # the snippets were included
    assert (tmp_path / "demo.png").exists()
