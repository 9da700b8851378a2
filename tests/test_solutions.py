"""Every exercise solution that holds code runs, in its chapter, at reduced settings: a fill-in exercise's solution
replaces its stub and must make the check cell print "correct"; any other solution code runs right after its
exercise. A solution that no longer matches the page (a renamed variable, a changed API) fails here."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
SOLUTION = re.compile(r"```\{admonition\} Solution\n:class: dropdown\n(.*?)```", re.S)
STUB = "# your code here"


def solution_blocks(markdown: str) -> list[str]:
    """The indented code blocks inside the Solution admonitions of one markdown cell."""
    blocks: list[str] = []
    for body in SOLUTION.findall(markdown):
        current: list[str] = []
        for line in body.split("\n") + ["end"]:
            if line.startswith("    ") or (current and not line.strip()):
                current.append(line)
            elif current:
                blocks.append(textwrap.dedent("\n".join(current)).strip())
                current = []
    return [b for b in blocks if b]


def with_solutions(path: Path) -> tuple[nbformat.NotebookNode, list[int]]:
    """The notebook with every solution's code in place, and the indices of the check cells to pass."""
    nb = nbformat.read(path, as_version=4)
    cells, checks = [], []
    for cell in nb.cells:
        cells.append(cell)
        if cell.cell_type != "markdown":
            continue
        for block in solution_blocks(cell.source):
            name = re.match(r"def (\w+)\(", block)
            stub = next((c for c in cells if c.cell_type == "code" and name and f"def {name[1]}(" in c.source
                         and STUB in c.source), None) if name else None
            if stub is None:
                cells.append(nbformat.v4.new_code_cell(block))
                continue
            start = stub.source.index(f"def {name[1]}(")
            end = stub.source.index("\n", stub.source.index(STUB)) if "\n" in stub.source[stub.source.index(STUB):] \
                else len(stub.source)
            stub.source = stub.source[:start] + block + stub.source[end:]
            checks.append(id(stub))
    nb.cells = cells
    return nb, [i for i, c in enumerate(cells) if id(c) in checks]


def _has_solution_code(path: Path) -> bool:
    cells = nbformat.read(path, as_version=4).cells
    return any(solution_blocks(c.source) for c in cells if c.cell_type == "markdown")


CHAPTERS = [p for p in sorted(BOOK.glob("*.ipynb")) if _has_solution_code(p)]


def test_solution_blocks_are_found_and_fill_ins_are_matched():
    names = [p.stem for p in CHAPTERS]
    expected = {"02_training", "03_beta_sweep_slack", "04_embeddings", "06_table1", "07_adversarial", "08_uncertainty"}
    assert expected <= set(names)
    for path in CHAPTERS:
        nb = nbformat.read(path, as_version=4)
        stubs = sum(STUB in c.source for c in nb.cells if c.cell_type == "code")
        assert len(with_solutions(path)[1]) == stubs, f"{path.name}: a fill-in stub without a matching solution"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_solution_runs_in_its_chapter(path: Path, tmp_path, monkeypatch, data_root):
    from nbclient import NotebookClient

    monkeypatch.setenv("VIBTOOLS_QUICK", "1")
    monkeypatch.setenv("VIBTOOLS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VIBTOOLS_DATA", str(data_root))
    nb, checks = with_solutions(path)
    # the kernel inherits this process's environment, so the settings above reach it
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(BOOK)}}).execute()
    for i in checks:
        printed = "".join(o.get("text", "") for o in nb.cells[i].outputs if o.get("name") == "stdout")
        assert "correct" in printed and "not yet" not in printed, f"{path.name} cell {i}: {printed.strip()!r}"


MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$", re.S)
INLINE_CODE = re.compile(r"`[^`\n]+`")
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")
ALL_PAGES = sorted(BOOK.glob("*.ipynb"))


def solution_prose(markdown: str) -> list[str]:
    """The text of each Solution admonition of one markdown cell, without its code blocks and inline code."""
    prose = []
    for body in SOLUTION.findall(markdown):
        text = "\n".join(line for line in body.split("\n") if not line.startswith("    "))
        prose.append(INLINE_CODE.sub("", text))
    return prose


def page_outputs(nb) -> str:
    """Everything the committed page printed or displayed as text."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            for kind in ("text/plain", "text/markdown", "text/html"):
                parts.append(out.get("data", {}).get(kind, ""))
    return "\n".join(p if isinstance(p, str) else "".join(p) for p in parts)


def test_a_solution_without_a_number_is_caught():
    text = "```{admonition} Solution\n:class: dropdown\n    x = compute()\n\nIt depends on `x = 3.5`.\n```"
    assert not any(re.search(r"\d", p) for p in solution_prose(text))
    assert DECIMAL.findall(MATH.sub("", "ours 1.23% against $0.97^{100} \\approx 0.048$")) == ["1.23"]


@pytest.mark.parametrize("path", ALL_PAGES, ids=lambda p: p.stem)
def test_every_solution_states_a_number_its_page_prints(path: Path):
    """Every solution answers with a number; every decimal it quotes outside formulas is one its page printed
    (arithmetic on those numbers goes inside $...$, where the reader can redo it)."""
    nb = nbformat.read(path, as_version=4)
    printed = page_outputs(nb)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for prose in solution_prose(cell.source):
            head = prose.strip()[:80]
            assert re.search(r"\d", prose), f"{path.name}: a solution states no number: {head!r}"
            for number in DECIMAL.findall(MATH.sub("", prose)):
                assert number in printed, f"{path.name}: {number} is quoted in a solution but not printed: {head!r}"
