"""Keep the code on the doc pages equal to the files in docs/examples/.

    python tests/test_docs.py --sync     # after editing an example, or adding a page

A page shows an example as a fenced block whose title names the file:

    ```python title="docs/examples/net_server.py"
    ...the file's text, exactly...
    ```

Any title that contains a ``docs/...`` path works ("Node: the chapter's server
(docs/examples/node/net_server.js)", "output: docs/examples/net_server.txt").
tests/test_docs.py checks that every such block equals its file, so a page
cannot drift from the code the tests run, and :func:`sync` rewrites the blocks
from the files. It also turns the former include blocks (a body of one line
``--8<-- "name.py"``, pymdownx.snippets) into titled blocks with the file inlined.

Why inline copies rather than includes: an include reads well on the MkDocs
site only; the repository's web view showed the ``--8<--`` marker instead of
code. Copies read the same everywhere, and the test plus this sync keep them
honest. Only the standard library is used here, so the sync runs anywhere.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: Where an include's name was looked up (mkdocs.yml's former snippets base_path).
INCLUDE_BASES = (DOCS / "examples", DOCS)

SYNC_COMMAND = "python tests/test_docs.py --sync"

OPENING = re.compile(r"^(?P<indent> *)(?P<fence>`{3,})(?P<info>[^`\n]*)$")
TITLE = re.compile(r'title="(?P<title>[^"]*)"')
FILE_IN_TITLE = re.compile(r"\bdocs/[\w./-]+\.\w+")
INCLUDE = re.compile(r'^--8<-- "(?P<name>[^"]+)"$')


@dataclass
class Block:
    """A fenced code block: its lines' span on the page, and what it shows."""

    start: int  # index of the opening fence line
    end: int  # index of the closing fence line
    indent: str
    fence: str
    info: str  # what follows the fence: the language, then attributes
    body: str  # the lines between the fences, indentation removed

    @property
    def language(self) -> str:
        return self.info.split(maxsplit=1)[0] if self.info.strip() else ""

    @property
    def title(self) -> str | None:
        match = TITLE.search(self.info)
        return match.group("title") if match else None

    @property
    def file(self) -> Path | None:
        """The file its title names, if it names one."""
        match = FILE_IN_TITLE.search(self.title or "")
        return ROOT / match.group(0) if match else None

    @property
    def include(self) -> str | None:
        """The name an include block (``--8<-- "name"``) pulls in."""
        match = INCLUDE.match(self.body.strip("\n"))
        return match.group("name") if match else None


def blocks(lines: Sequence[str]) -> Iterator[Block]:
    """The fenced blocks of a page (``lines`` without their line ends)."""
    i = 0
    while i < len(lines):
        opening = OPENING.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = opening.group("indent"), opening.group("fence")
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        if end == len(lines):
            return  # an unclosed fence: Markdown runs it to the end; nothing to check
        body = [line.removeprefix(indent) for line in lines[i + 1 : end]]
        yield Block(i, end, indent, fence, opening.group("info"), "".join(f"{b}\n" for b in body))
        i = end + 1


def shown(path: Path) -> str:
    """A file's text as a block shows it: ending with one line end."""
    text = path.read_text(encoding="utf-8")
    return text if text.endswith("\n") else text + "\n"


def relative(path: Path) -> str:
    """``path`` from the repository's root (as titles name files), or in full if outside."""
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def resolve_include(name: str) -> Path:
    """The file an include named, as the snippets extension looked it up."""
    for base in INCLUDE_BASES:
        if (base / name).is_file():
            return base / name
    raise FileNotFoundError(f"--8<-- {name!r}: no such file in docs/examples/ or docs/")


def titled(block: Block, path: Path) -> str:
    """``block``'s info string with a title that names ``path``."""
    where = relative(path)
    title = block.title
    if title is None:
        new = f"output: {where}" if path.suffix == ".txt" else where
        return f'{block.info.rstrip()} title="{new}"'
    if FILE_IN_TITLE.search(title):
        return block.info
    return block.info.replace(f'title="{title}"', f'title="{title}: {where}"', 1)


def sync_text(text: str) -> str:
    """``text`` (a page) with each titled block refreshed and each include inlined."""
    lines = text.split("\n")
    out: list[str] = []
    done = 0
    for block in blocks(lines):
        info, path = block.info, block.file
        if block.include is not None:
            path = resolve_include(block.include)
            info = titled(block, path)
        if path is None:
            continue
        if not path.is_file():
            raise FileNotFoundError(f"a block's title names {relative(path)}, which does not exist")
        content = shown(path)
        if block.fence in content:
            raise ValueError(f"{relative(path)} contains {block.fence}; it cannot go in a fence")
        out += lines[done : block.start]
        out.append(f"{block.indent}{block.fence}{info}")
        out += [f"{block.indent}{line}" if line else "" for line in content[:-1].split("\n")]
        out.append(lines[block.end])
        done = block.end + 1
    return "\n".join(out + lines[done:])


def drift(page: Path) -> list[str]:
    """What is out of step on ``page``: includes left, blocks that differ from their file."""
    problems = []
    where = relative(page)
    for block in blocks(page.read_text(encoding="utf-8").split("\n")):
        line = f"{where}:{block.start + 1}"
        if block.include is not None:
            problems.append(f"{line}: an include of {block.include}; inline it")
        elif block.file is not None and not block.file.is_file():
            problems.append(f"{line}: the title names {relative(block.file)}, which does not exist")
        elif block.file is not None and block.body != shown(block.file):
            problems.append(f"{line}: differs from {relative(block.file)}")
    return problems


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def sync(paths: Sequence[Path]) -> list[Path]:
    """Rewrite each page whose blocks are out of step; returns the pages changed."""
    changed = []
    for page in paths:
        text = page.read_text(encoding="utf-8")
        new = sync_text(text)
        if new != text:
            page.write_text(new, encoding="utf-8")
            changed.append(page)
    return changed


def main(argv: Sequence[str]) -> int:
    if list(argv) != ["--sync"]:
        print(f"usage: {SYNC_COMMAND}\n\n{__doc__}", file=sys.stderr)
        return 2
    for page in sync(pages()):
        print(f"synced {relative(page)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
