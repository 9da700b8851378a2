"""The β explorer's stored data: written from the k2 records, sealed, read back without torch, drawn by a chart
that needs no kernel, and by a live widget that needs no training."""

from __future__ import annotations

import json
import shutil

import pytest

from vibtools import explorer as E
from vibtools.records import ResultsError
from vibtools.results import results_dir


def test_the_committed_file_is_what_the_command_writes_from_the_records(tmp_path):
    committed = E.load_explorer_data()
    shutil.copytree(results_dir() / "k2", tmp_path / "k2")
    written = E.load_explorer_data(E.write_explorer_data(tmp_path, data=None, log=None))
    from_records = [f for f in committed["frames"] if f["source"].startswith("results/k2/")]
    assert [f["beta"] for f in written["frames"]] == [f["beta"] for f in from_records]
    assert written["frames"] == from_records  # the same numbers, to the stored digits
    assert committed["images"] == 1000 and all(len(f["labels"]) == 1000 for f in committed["frames"])


def test_a_damaged_or_impossible_file_is_refused_in_one_line(tmp_path):
    path = tmp_path / "k2-embeddings.json"
    rec = json.loads((results_dir() / E.FOLDER / E.FILE).read_text())
    rec["frames"][0]["err"] = 0.5
    path.write_text(json.dumps(rec))
    with pytest.raises(ResultsError, match="checksum"):
        E.load_explorer_data(path)
    from vibtools.records import sealed

    body = {k: v for k, v in rec.items() if k != "checksum"}
    body["frames"] = body["frames"][::-1]  # β out of order
    path.write_text(json.dumps(sealed(body)))
    with pytest.raises(ResultsError, match="cannot be true"):
        E.load_explorer_data(path)
    with pytest.raises(ValueError, match="reproduce k2 --epochs 20"):
        E.write_explorer_data(tmp_path / "empty", data=None, log=None)
    assert not (tmp_path / "empty").exists()


def test_the_chart_has_a_labelled_stop_per_beta_and_the_data_of_every_frame():
    stored = E.load_explorer_data()
    page = E.explorer_html(stored)
    n = len(stored["frames"])
    assert f'max="{n - 1}"' in page and page.count("translateX(-50%)") == n
    for f in stored["frames"]:
        assert f">{f['beta']:g}</span>" in page
    spec = E.explorer_spec(stored)
    assert spec["params"][0]["name"] == "b" and len(spec["hconcat"]) == 2
    assert len(E._points(stored)) == n * stored["images"]
    assert "../_static/vendor/vega/vega-embed.min.js" in page and "https://" not in page.replace(
        "https://vega.github.io/schema/vega-lite/v5.json", "")


def test_the_live_widget_moves_without_training():
    pytest.importorskip("ipywidgets")
    from vibtools.widgets import stored_explorer

    stored = E.load_explorer_data()
    box = stored_explorer(stored)  # no data: no train button, nothing to train
    slider = box.children[0]
    assert [label for label, _ in slider.options] == [f"{f['beta']:g}" for f in stored["frames"]]
    slider.value = len(stored["frames"]) - 1  # redraws from the stored posteriors
    assert len(box.children) == 2
