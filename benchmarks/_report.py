"""The benchmark results as the docs show them: an SVG chart per workload, then a table.

``trionet bench --update-docs`` (or ``python benchmarks/run.py --update-docs``)
writes, from one full run:

* ``docs/results/<workload>.svg``: one horizontal bar chart per workload, trionet
  beside its peers; a bar's length is the subject's ratio to the workload's
  baseline (longer is better whatever the unit's direction, the baseline at the
  dashed 1.00x line), its label the measured figure and the ratio;
* ``docs/results/bench.json``: the results themselves, so the charts can be
  redrawn (``python benchmarks/run.py --from docs/results/bench.json
  --update-docs``) without another ten-minute run;
* the part of ``docs/benchmarks.md`` between the :data:`BEGIN` and :data:`END`
  markers: the charts as image links, the table in Markdown, the skipped peers.

Why this shape: the page used to include a 125-column text table, cut off at
the page's edge and shown as an include marker on the repository's web view.
Markdown with image links reads the same on GitHub and on the MkDocs site, and
the SVG is hand-written (a few rectangles and labels) rather than drawn with
matplotlib, which would be a heavy dependency for thirteen bar charts; an
inline-SVG Markdown extension was rejected because GitHub shows neither.
Everything here is a pure function of the results except :func:`write_docs`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict
from html import escape
from pathlib import Path
from typing import Any

from _harness import (
    COLUMNS,
    RATIO_LEGEND,
    Result,
    Workload,
    format_notes,
    format_ratio,
    format_value,
    workloads,
)

__all__ = [
    "BEGIN",
    "END",
    "dump_results",
    "load_results",
    "markdown_table",
    "results_section",
    "slug",
    "svg_chart",
    "write_docs",
]

#: The generated part of docs/benchmarks.md lies between these two lines.
BEGIN = "<!-- results: begin. Written by `trionet bench --update-docs`; edit the text around. -->"
END = "<!-- results: end -->"

#: The subject whose bar stands out: the library being measured.
OURS = "trionet"

# The chart's geometry, in pixels. Text widths are estimated (the SVG is drawn
# without a font at hand): 7 px per character of 12 px sans-serif is generous.
WIDTH = 760
CHAR = 7.0
ROW = 26
BAR = 16
TOP = 52
BOTTOM = 26
PAD = 12
COLOURS = {"ours": "#3f51b5", "base": "#616161", "peer": "#b0bec5", "text": "#212121"}
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"


def slug(name: str) -> str:
    """A file name for a workload: ``ws echo 32B x50`` -> ``ws-echo-32b-x50``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "workload"


def _label(result: Result, value: float | None) -> str:
    return f"{format_value(result.value)} {result.unit} · {format_ratio(value)}"


def svg_chart(workload: Workload) -> str:
    """One workload as a horizontal bar chart (a standalone SVG document).

    Each subject gets a bar as long as its ratio to the baseline, so every
    chart reads the same way (longer is better) even for latencies and memory,
    where the raw figure is better when smaller.
    """
    results, ratios = workload.results, workload.ratios
    left = PAD + CHAR * max((len(r.subject) for r in results), default=4) + 10
    labels = [_label(r, q) for r, q in zip(results, ratios, strict=True)]
    room = WIDTH - left - PAD - CHAR * max((len(t) for t in labels), default=0) - 8
    top_ratio = max([q for q in ratios if q is not None] + [1.0])
    scale = room / top_ratio
    height = TOP + ROW * len(results) + BOTTOM
    better = "higher" if not results or results[0].higher_is_better else "lower"
    base = workload.base.subject if workload.base is not None else "none"
    subtitle = f"{workload.unit}, {better} is better; bar: ratio to {base} (1.00x)"
    subtitle += ", longer is better"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(workload.name)}" '
        f'font-family="{escape(FONT)}" font-size="12" fill="{COLOURS["text"]}">',
        f"<title>{escape(workload.name)}: {escape(subtitle)}</title>",
        f'<rect x="0.5" y="0.5" width="{WIDTH - 1}" height="{height - 1}" rx="6" '
        'fill="#ffffff" stroke="#e0e0e0"/>',
        f'<text x="{PAD}" y="22" font-size="14" font-weight="bold">{escape(workload.name)}</text>',
        f'<text x="{PAD}" y="40" fill="#616161">{escape(subtitle)}</text>',
    ]
    # The 1.00x line goes first, so the bars and labels are drawn over it.
    one = left + scale
    line_end = TOP + ROW * len(results) - 4
    out += [
        f'<line x1="{one:.1f}" y1="{TOP - 6}" x2="{one:.1f}" y2="{line_end}" '
        'stroke="#424242" stroke-dasharray="4 3"/>',
        f'<text x="{one:.1f}" y="{line_end + 14}" text-anchor="middle" fill="#616161">1.00x</text>',
    ]
    for i, (result, value, label) in enumerate(zip(results, ratios, labels, strict=True)):
        y = TOP + ROW * i
        kind = "ours" if result.subject == OURS else "base" if result is workload.base else "peer"
        weight = ' font-weight="bold"' if kind == "ours" else ""
        out.append(
            f'<text x="{left - 8:.0f}" y="{y + BAR - 4}" text-anchor="end"{weight}>'
            f"{escape(result.subject)}</text>"
        )
        length = 0.0 if value is None else max(value * scale, 1.0)
        if length:
            out.append(
                f'<rect x="{left:.0f}" y="{y}" width="{length:.1f}" height="{BAR}" rx="2" '
                f'fill="{COLOURS[kind]}"/>'
            )
        out.append(
            f'<text x="{left + length + 6:.1f}" y="{y + BAR - 4}"{weight}>{escape(label)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(groups: Sequence[Workload]) -> str:
    """All workloads in one Markdown table; the workload is named on its first row."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|---|---|--:|---|--:|---|",
    ]
    for workload in groups:
        for i, (r, q) in enumerate(zip(workload.results, workload.ratios, strict=True)):
            subject = f"**{r.subject}**" if r.subject == OURS else r.subject
            cells = [
                workload.name if i == 0 else "",
                subject,
                format_value(r.value),
                r.unit,
                format_ratio(q),
                format_notes(r),
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def results_section(
    groups: Sequence[Workload], skipped: Sequence[str], *, images: str = "results"
) -> str:
    """The generated part of the page: charts, the table, then what was skipped."""
    parts = [BEGIN, ""]
    for workload in groups:
        parts += [f"![{workload.name}]({images}/{slug(workload.name)}.svg)", ""]
    parts += [markdown_table(groups), f"({RATIO_LEGEND}.)", ""]
    if skipped:
        parts += ["Skipped in this run:", ""] + [f"- {_cell(line)}" for line in skipped] + [""]
    parts.append(END)
    return "\n".join(parts)


def dump_results(results: Sequence[Result], skipped: Sequence[str]) -> str:
    """The run as JSON: every measured result (one per line, for short diffs), the skip lines."""
    measured = [json.dumps(asdict(r)) for r in results if not r.extra.get("skipped")]
    return (
        '{"results": [\n'
        + ",\n".join(measured)
        + f'\n], "skipped": {json.dumps(list(skipped), indent=1)}}}\n'
    )


def load_results(text: str) -> tuple[list[Result], list[str]]:
    """What :func:`dump_results` wrote."""
    data: dict[str, Any] = json.loads(text)
    return [Result(**r) for r in data["results"]], [str(s) for s in data["skipped"]]


class PageError(Exception):
    """The page has no place for the results (its markers are missing)."""


def write_docs(
    results: Sequence[Result], skipped: Sequence[str], docs: Path, *, baseline: str | None = None
) -> list[Path]:
    """Write the charts, the JSON and the page's results section under ``docs``.

    Charts of workloads this run did not produce are removed, so the page
    never links a figure from an older run. Returns the files written.

    Raises:
      PageError: ``docs/benchmarks.md`` lacks the :data:`BEGIN`/:data:`END` lines
        (checked before anything is written).
    """
    page = docs / "benchmarks.md"
    text = page.read_text(encoding="utf-8")
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise PageError(f"{page} needs one line {BEGIN!r}, then one line {END!r}")
    groups = workloads(results, baseline)
    folder = docs / "results"
    folder.mkdir(exist_ok=True)
    written = []
    charts = {folder / f"{slug(w.name)}.svg": svg_chart(w) for w in groups}
    for stale in set(folder.glob("*.svg")) - set(charts):
        stale.unlink()
    for path, svg in charts.items():
        path.write_text(svg, encoding="utf-8")
        written.append(path)
    data = folder / "bench.json"
    data.write_text(dump_results(results, skipped), encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    page.write_text(head + results_section(groups, skipped) + tail, encoding="utf-8")
    return [*written, data, page]
