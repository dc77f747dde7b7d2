"""The benchmark report: ratios, skip lines, the SVG charts and the Markdown table.

Pure functions of fake results (benchmarks/_harness.py and _report.py); no
benchmark runs here. tests/test_cli.py runs ``trionet bench`` on fake
benchmarks for the same output end to end.
"""

from __future__ import annotations

import io
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _harness import Result, print_table, skip_lines, skipped, workloads  # noqa: E402
from _report import (  # noqa: E402
    BEGIN,
    END,
    PageError,
    dump_results,
    load_results,
    markdown_table,
    results_section,
    slug,
    svg_chart,
    write_docs,
)

SVG = "{http://www.w3.org/2000/svg}"


def hello_results() -> list[Result]:
    """Two workloads: requests per second (higher is better), CPU per request (lower)."""
    return [
        Result("http hello", "trionet", 15000.0, "req/s", extra={"runs": 3, "worst": 12000.0}),
        Result("http hello", "trio+h11", 10000.0, "req/s", baseline=True),
        Result("http hello", "node", 60000.0, "req/s"),
        skipped("http hello", "uvicorn", "uvicorn is not installed", "req/s"),
        Result("http CPU", "trionet", 50.0, "us/req", higher_is_better=False),
        Result("http CPU", "trio+h11", 75.0, "us/req", higher_is_better=False, baseline=True),
        skipped("http CPU", "uvicorn", "uvicorn is not installed", "us/req"),
    ]


# -- ratios --------------------------------------------------------------------------
def test_every_measured_row_has_its_ratio_to_the_baseline() -> None:
    hello, cpu = workloads(hello_results())
    assert [(r.subject, q) for r, q in zip(hello.results, hello.ratios, strict=True)] == [
        ("trionet", 1.5),
        ("trio+h11", 1.0),
        ("node", 6.0),
    ]
    # Smaller is better for CPU time: 50 us against 75 us is 1.5 times better.
    assert cpu.ratios == [1.5, 1.0]
    assert hello.base is not None and hello.base.subject == "trio+h11"


def test_a_missing_baseline_is_replaced_by_a_peer_that_ran() -> None:
    results = [
        Result("ws echo", "trionet", 30.0, "msg/s"),
        Result("ws echo", "websockets", 60.0, "msg/s"),
        skipped("ws echo", "trio-websocket", "not installed"),
    ]
    (echo,) = workloads(results, baseline="trio-websocket")
    assert echo.base is not None and echo.base.subject == "websockets"
    assert echo.ratios == [0.5, 1.0]


def test_trionet_alone_is_its_own_baseline_and_a_zero_has_no_ratio() -> None:
    (alone,) = workloads([Result("udp", "trionet", 5.0, "dgrams/s")])
    assert alone.ratios == [1.0]
    (broken,) = workloads(
        [Result("tcp", "trionet", 5.0, "MB/s"), Result("tcp", "trio", 0.0, "MB/s", baseline=True)]
    )
    assert broken.ratios == [1.0, None]


def test_the_text_table_fills_every_ratio_and_lists_skips_once() -> None:
    out = io.StringIO()
    print_table(hello_results(), file=out)
    lines = out.getvalue().splitlines()
    rows = [re.split(r"\s{2,}", line) for line in lines[2:7]]
    assert [(row[1], row[4]) for row in rows] == [
        ("trionet", "1.50x"),
        ("trio+h11", "1.00x"),
        ("node", "6.00x"),
        ("trionet", "1.50x"),
        ("trio+h11", "1.00x"),
    ]
    assert rows[0][5] == "runs=3, worst=12,000"
    assert lines[-1] == "skipped: uvicorn: uvicorn is not installed"
    assert sum("skipped" in line for line in lines) == 1


def test_skip_lines_name_every_subject_once_per_reason() -> None:
    results = [
        skipped("echo", "node-ws", "needs node"),
        skipped("echo", "ws-node-client", "needs node"),
        skipped("stream", "node-ws", "needs node"),
        skipped("stream", "trio-websocket", "not installed"),
    ]
    assert skip_lines(results, prefix="ws: ") == [
        "ws: node-ws, ws-node-client: needs node",
        "ws: trio-websocket: not installed",
    ]


# -- the charts ----------------------------------------------------------------------
def bars(svg: str) -> dict[str, tuple[float, str]]:
    """Each subject's bar in a chart: its width and colour, read back from the SVG."""
    root = ET.fromstring(svg)
    texts = [t for t in root.iter(f"{SVG}text") if t.get("text-anchor") == "end"]
    rects = [r for r in root.iter(f"{SVG}rect")][1:]  # the first is the background
    return {
        str(t.text): (float(r.get("width", "0")), str(r.get("fill")))
        for t, r in zip(texts, rects, strict=True)
    }


def test_a_chart_has_a_bar_per_subject_as_long_as_its_ratio() -> None:
    hello, cpu = workloads(hello_results())
    drawn = bars(svg_chart(hello))
    assert list(drawn) == ["trionet", "trio+h11", "node"]
    assert drawn["trionet"][0] / drawn["trio+h11"][0] == pytest.approx(1.5, rel=0.01)
    assert drawn["node"][0] / drawn["trio+h11"][0] == pytest.approx(6.0, rel=0.01)
    # trionet stands out; the baseline differs from the other peers.
    colours = {subject: colour for subject, (_, colour) in drawn.items()}
    assert len(set(colours.values())) == 3
    # Smaller is better for CPU time, and the longer bar is still the better one.
    drawn = bars(svg_chart(cpu))
    assert drawn["trionet"][0] > drawn["trio+h11"][0]


def test_a_chart_is_labelled_with_the_figures_and_fits_its_width() -> None:
    hello, _ = workloads(hello_results())
    svg = svg_chart(hello)
    root = ET.fromstring(svg)
    words = [str(t.text) for t in root.iter(f"{SVG}text")]
    assert words[0] == "http hello"
    assert "15,000 req/s · 1.50x" in words and "60,000 req/s · 6.00x" in words
    assert "req/s, higher is better; bar: ratio to trio+h11 (1.00x), longer is better" in words
    width = float(root.get("width", "0"))
    for rect in root.iter(f"{SVG}rect"):
        assert float(rect.get("x", "0")) + float(rect.get("width", "0")) <= width


def test_chart_text_is_escaped() -> None:
    (workload,) = workloads([Result("a<b & c", "trionet", 1.0, "<ops>/s")])
    root = ET.fromstring(svg_chart(workload))  # parses: nothing unescaped
    assert root.get("aria-label") == "a<b & c"


def test_workload_names_become_file_names() -> None:
    assert slug("http client GET, 100 tasks, pool of 5") == "http-client-get-100-tasks-pool-of-5"
    assert slug("ws echo 32B x50 per server CPU-s") == "ws-echo-32b-x50-per-server-cpu-s"


# -- the Markdown ------------------------------------------------------------------
def test_the_markdown_table_has_every_row_and_names_each_workload_once() -> None:
    table = markdown_table(workloads(hello_results())).splitlines()
    assert table[0] == "| benchmark | subject | value | unit | ratio | notes |"
    assert table[2] == (
        "| http hello | **trionet** | 15,000 | req/s | 1.50x | runs=3, worst=12,000 |"
    )
    assert table[3] == "|  | trio+h11 | 10,000 | req/s | 1.00x |  |"
    assert table[5].startswith("| http CPU | **trionet** | 50.00 | us/req | 1.50x |")
    assert len(table) == 2 + 5
    assert all(line.count("|") == 7 for line in table)


def test_the_section_shows_the_charts_then_the_table_then_the_skips() -> None:
    groups = workloads(hello_results())
    section = results_section(groups, ["http_server: uvicorn: not installed | really"])
    assert section.startswith(BEGIN + "\n") and section.endswith("\n" + END)
    charts = section.index("![http hello](results/http-hello.svg)")
    assert charts < section.index("![http CPU](results/http-cpu.svg)") < section.index("| bench")
    assert "- http_server: uvicorn: not installed \\| really" in section


def test_results_survive_the_json_round_trip() -> None:
    results = hello_results()
    loaded, skips = load_results(dump_results(results, ["a skip"]))
    assert skips == ["a skip"]
    assert loaded == [r for r in results if not r.extra.get("skipped")]


PAGE = f"""# Benchmarks

Before.

{BEGIN}
stale
{END}

After.
"""


def test_write_docs_replaces_the_section_and_the_charts(tmp_path: Path) -> None:
    (tmp_path / "benchmarks.md").write_text(PAGE)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "old-workload.svg").write_text("<svg/>")
    (tmp_path / "results" / "notes.txt").write_text("kept")
    written = write_docs(hello_results(), [], tmp_path)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [
        "bench.json",
        "http-cpu.svg",
        "http-hello.svg",
        "notes.txt",
    ]
    assert tmp_path / "benchmarks.md" in written
    page = (tmp_path / "benchmarks.md").read_text()
    assert page.startswith("# Benchmarks\n\nBefore.\n\n" + BEGIN)
    assert page.endswith(END + "\n\nAfter.\n")
    assert "stale" not in page
    # Written twice, the page is the same: the markers stay.
    write_docs(hello_results(), [], tmp_path)
    assert (tmp_path / "benchmarks.md").read_text() == page


def test_write_docs_needs_the_markers_and_then_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "benchmarks.md").write_text("# Benchmarks\n\nNo place for results.\n")
    with pytest.raises(PageError, match="needs one line"):
        write_docs(hello_results(), [], tmp_path)
    assert not (tmp_path / "results").exists()
