"""The committed notebooks: full-settings outputs, no errors, executed in order, one install URL, objectives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
TOC_FILES = []
for entry in yaml.safe_load((ROOT / "_toc.yml").read_text())["chapters"]:
    TOC_FILES.append(entry["file"])
    TOC_FILES += [section["file"] for section in entry.get("sections", [])]  # a chapter's pages of tables


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _text(output: dict) -> str:
    if "text" in output:
        return "".join(output["text"])
    data = output.get("data", {})
    return "".join(data.get("text/plain", "")) + "".join(data.get("text/markdown", ""))


def test_every_toc_page_is_a_notebook_in_book():
    root = yaml.safe_load((ROOT / "_toc.yml").read_text())["root"]
    for name in [root, *TOC_FILES]:
        assert (ROOT / f"{name}.ipynb").is_file(), f"{name}.ipynb listed in _toc.yml is missing"
    assert len(NOTEBOOKS) == 1 + len(TOC_FILES), "a notebook in book/ is not listed in _toc.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_outputs_are_a_clean_full_run(path: Path):
    nb = _load(path)
    cells = _code_cells(nb)
    if not cells:
        return
    counts = [c.get("execution_count") for c in cells]
    assert all(isinstance(n, int) for n in counts), f"{path.name}: unexecuted code cells (counts {counts})"
    assert counts == list(range(1, len(cells) + 1)), f"{path.name}: cells executed out of order: {counts}"
    texts = []
    for c in cells:
        for out in c.get("outputs", []):
            assert out.get("output_type") != "error", f"{path.name}: error output {out.get('ename')}"
            assert not (out.get("name") == "stderr" and "Traceback" in _text(out)), f"{path.name}: traceback"
            texts.append(_text(out))
    joined = "\n".join(texts)
    assert "provenance: vibtools" in joined, f"{path.name}: no provenance line in the outputs"
    assert "mode=quick" not in joined, f"{path.name}: holds reduced-settings (quick-mode) outputs"
    assert "mode=full" in joined, f"{path.name}: provenance does not say mode=full"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_install_cell_uses_the_configured_repository(path: Path):
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    cells = _code_cells(_load(path))
    if not cells:
        return
    first = "".join(cells[0]["source"])
    assert f'"git+{url}"' in first, f"{path.name}: the first code cell does not install git+{url}"
    assert "find_spec(\"vibtools\") is None" in first, f"{path.name}: install is not conditional on vibtools missing"
    assert "pick_device()" in first, f"{path.name}: the setup cell does not pick the device"


NOT_CHAPTERS = ("09_references", "10_glossary")  # pages without objectives


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem not in NOT_CHAPTERS], ids=lambda p: p.name)
def test_chapter_opens_with_objectives(path: Path):
    first = "".join(_load(path)["cells"][0]["source"]).lower()
    assert first.lstrip().startswith("# "), f"{path.name}: does not open with a title"
    assert "objectives" in first or "what you will learn" in first, f"{path.name}: no learning objectives up front"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_have_captions_and_alt_text(path: Path):
    for c in _code_cells(_load(path)):
        has_png = any("image/png" in out.get("data", {}) for out in c.get("outputs", []))
        if has_png:
            meta = c.get("metadata", {}).get("mystnb", {})
            assert meta.get("figure", {}).get("caption"), f"{path.name}: a figure without a caption"
            assert meta.get("image", {}).get("alt"), f"{path.name}: a figure without alt text"
