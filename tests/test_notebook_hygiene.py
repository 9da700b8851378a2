"""The committed notebooks hold no volatile metadata; scripts/clean_notebooks.py strips it and only it, idempotently.
Their text and outputs never say that a run is still on its way."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "clean_notebooks.py"
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def _load_script():
    """Import scripts/clean_notebooks.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("clean_notebooks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cn = _load_script()

WIDGETS = {
    "application/vnd.jupyter.widget-state+json": {
        "state": {"abc": {"model_name": "FloatSliderModel", "model_module": "@jupyter-widgets/controls", "state": {}}},
        "version_major": 2,
        "version_minor": 0,
    }
}
TIMESTAMPS = {
    "iopub.execute_input": "2026-01-01T00:00:00.000000Z",
    "iopub.status.busy": "2026-01-01T00:00:00.000000Z",
    "iopub.status.idle": "2026-01-01T00:00:01.000000Z",
    "shell.execute_reply": "2026-01-01T00:00:01.000000Z",
}


def _dirty_notebook() -> dict:
    """A small valid notebook carrying every kind of volatile metadata, plus things that must survive."""
    return {
        "cells": [
            {"cell_type": "markdown", "id": "md0", "metadata": {"colab": {"id": "x"}}, "source": ["# Title — β\n"]},
            {
                "cell_type": "code",
                "execution_count": 1,
                "id": "code1",
                "metadata": {"execution": dict(TIMESTAMPS), "tags": ["hide-input"], "colab": {"base_uri": "x"}},
                "outputs": [{"name": "stdout", "output_type": "stream", "text": ["provenance: vibtools mode=full\n"]}],
                "source": ["print('hi')  # ünïcode\n"],
            },
            {
                "cell_type": "code",
                "execution_count": 2,
                "id": "code2",
                "metadata": {"execution": dict(TIMESTAMPS), "mystnb": {"figure": {"caption": "c"}}},
                "outputs": [{"data": {"text/plain": ["2"]}, "execution_count": 2, "metadata": {},
                             "output_type": "execute_result"}],
                "source": ["1 + 1"],
            },
            {
                "cell_type": "code",
                "execution_count": 3,
                "id": "code3",
                "metadata": {"tags": ["remove-output"]},
                "outputs": [{"data": {"application/vnd.jupyter.widget-view+json": {"model_id": "abc",
                                      "version_major": 2, "version_minor": 0}, "text/plain": ["VBox()"]},
                             "metadata": {}, "output_type": "display_data"},
                            {"name": "stdout", "output_type": "stream", "text": ["kept\n"]}],
                "source": ["box = explorer()\nbox"],
            },
        ],
        "metadata": {
            "accelerator": "GPU",
            "colab": {"provenance": []},
            "kernelspec": {"display_name": "Python 3", "env": {"A": "1"}, "language": "python", "name": "python3"},
            "language_info": {"name": "python", "pygments_lexer": "ipython3", "version": "3.11.7"},
            "widgets": WIDGETS,
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _write(path: Path, nb: dict) -> Path:
    """Write `nb` to `path` in nbformat's layout."""
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


# A row shows once all its seeds are stored; until then no page speaks of it (its page note lists the stored runs
# as facts). These phrases would speak to the reader about what is still running.
IN_FLIGHT = re.compile(r"to come|still training|still running|not yet complete", re.I)


def _texts(nb: dict):
    """Every cell's source and every output's text, HTML and Markdown (images left out)."""
    for cell in nb["cells"]:
        yield "".join(cell["source"])
        for out in cell.get("outputs", []):
            yield "".join(out.get("text", ""))
            for kind in ("text/plain", "text/html", "text/markdown"):
                yield "".join(out.get("data", {}).get(kind, ""))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_page_says_a_run_is_still_on_its_way(path: Path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    hits = sorted({m[0].lower() for text in _texts(nb) for m in IN_FLIGHT.finditer(text)})
    assert not hits, f"{path.name} says {hits}: show a row once its seeds are stored, and list the rest as facts"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_is_clean(path: Path):
    dirty = cn.check_paths([path])
    assert not dirty, f"{path.name} holds volatile metadata {dirty[path]}: run `python scripts/clean_notebooks.py`"


def test_check_flag_reports_without_writing(tmp_path):
    path = _write(tmp_path / "dirty.ipynb", _dirty_notebook())
    before = path.read_bytes()
    res = subprocess.run([sys.executable, str(SCRIPT), "--check", str(path)], capture_output=True, text=True)
    assert res.returncode == 1
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1 and "dirty.ipynb" in lines[0] and "metadata.colab" in lines[0]
    assert path.read_bytes() == before, "--check wrote the notebook"


def test_cleaner_removes_each_volatile_key_and_nothing_else(tmp_path):
    original = _dirty_notebook()
    path = _write(tmp_path / "nb.ipynb", original)
    removed = cn.clean_file(path)
    assert removed
    nb = json.loads(path.read_text(encoding="utf-8"))
    meta = nb["metadata"]
    assert "colab" not in meta
    assert meta["accelerator"] == "GPU", "Colab's runtime setting is kept"
    assert "version" not in meta["language_info"]
    assert meta["language_info"] == {"name": "python", "pygments_lexer": "ipython3"}
    assert meta["kernelspec"] == {"display_name": "Python 3", "language": "python", "name": "python3"}
    assert "widgets" not in meta, "the kernel's widget state is dropped: the site draws no widget"
    assert nb["cells"][3]["outputs"] == [original["cells"][3]["outputs"][1]], "only the widget view is dropped"
    for cell in nb["cells"]:
        assert "execution" not in cell["metadata"] and "colab" not in cell["metadata"]
    assert nb["cells"][1]["metadata"] == {"tags": ["hide-input"]}
    assert nb["cells"][2]["metadata"] == {"mystnb": {"figure": {"caption": "c"}}}
    for got, want in zip(nb["cells"][:3], original["cells"]):
        for key in ("cell_type", "id", "source", "outputs", "execution_count"):
            assert got.get(key) == want.get(key), f"cell {want['id']}: {key} changed"
    assert (nb["nbformat"], nb["nbformat_minor"]) == (4, 5)
    assert "ünïcode" in path.read_text(encoding="utf-8"), "non-ASCII text was escaped"


def test_cleaner_is_idempotent(tmp_path):
    path = _write(tmp_path / "nb.ipynb", _dirty_notebook())
    assert cn.clean_file(path)
    once = path.read_bytes()
    assert cn.clean_file(path) == []
    assert path.read_bytes() == once
    assert cn.main([str(path)]) == 0 and cn.main(["--check", str(path)]) == 0
    assert path.read_bytes() == once


def test_clean_notebook_is_left_byte_for_byte(tmp_path):
    nb = _dirty_notebook()
    cn.clean(nb)
    path = _write(tmp_path / "clean.ipynb", nb)
    before = path.read_bytes()
    assert cn.clean_file(path) == []
    assert path.read_bytes() == before
    assert cn.dumps(json.loads(before)) == before.decode("utf-8"), "dumps does not reproduce nbformat's layout"


def test_dirty_keys_does_not_mutate():
    nb = _dirty_notebook()
    snapshot = copy.deepcopy(nb)
    assert cn.dirty_keys(nb)
    assert nb == snapshot


def test_cleaner_merges_split_stream_outputs_of_one_stream_only():
    def stream(name, text):
        return {"name": name, "output_type": "stream", "text": text}

    nb = _dirty_notebook()
    image = {"data": {"text/plain": ["<Figure>"]}, "metadata": {}, "output_type": "display_data"}
    nb["cells"][1]["outputs"] = [stream("stdout", ["a\n", "b\n"]), stream("stdout", "c\n"), stream("stderr", "w\n"),
                                 stream("stdout", "d\n"), image, stream("stdout", "e\n")]
    removed = cn.clean(nb)
    assert any("merged" in r for r in removed)
    assert nb["cells"][1]["outputs"] == [stream("stdout", "a\nb\nc\n"), stream("stderr", "w\n"),
                                         stream("stdout", "d\n"), image, stream("stdout", "e\n")]
    assert not any("merged" in r for r in cn.clean(nb))
