"""The chapters' helpers: the β explorer widget and the models it shows (widgets.py, book.py), the information-plane
plot (plots.py), the page note and Markdown tables (report.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import TINY

import vibtools as vt

# ---------------------------------------------------------------- the β explorer


def test_the_explorer_trains_a_new_beta_from_its_button(small, monkeypatch, tmp_path, capsys):
    """The widget over the stored embeddings is returned, not displayed; its button trains the chosen β and adds it
    to the slider, in β order."""
    pytest.importorskip("ipywidgets")
    import matplotlib

    matplotlib.use("Agg")

    monkeypatch.setenv("VIBTOOLS_CACHE", str(tmp_path / "runs"))
    stored = vt.explorer.load_explorer_data()
    box = vt.widgets.stored_explorer(stored, data=small, device="cpu",
                                     config=TINY.with_(k=2, covariance="full", epochs=1))
    assert "VBox" not in capsys.readouterr().out, "the explorer displayed itself as well as returning its box"
    slider = box.children[0]
    new_beta, button = box.children[-2].children
    new_beta.value = 0.05
    button.click()
    labels = [label for label, _ in slider.options]
    assert labels == [f"{b:g}" for b in sorted([f["beta"] for f in stored["frames"]] + [0.05])]
    assert slider.label == "0.05"
    assert len(list((tmp_path / "runs").glob("*.pt"))) == 1, "the new β was trained and stored"


def test_explorer_models_hold_the_k2_experiments_seed_zero_runs(monkeypatch):
    """The explorer chapter must show the same K=2 models whose stored results the embeddings chapter draws, and
    more β between them, trained alike."""
    from vibtools.experiments import EXPERIMENTS

    monkeypatch.delenv("VIBTOOLS_QUICK", raising=False)
    configs = vt.book.embed_configs()
    k2 = {c for c in EXPERIMENTS["k2"].runs(vt.book.settings().embed_epochs) if c.seed == 0}
    assert k2 <= set(configs) and len(configs) >= 7
    assert all(c.with_(beta=1e-3) == next(iter(k2)).with_(beta=1e-3) for c in configs)


# ---------------------------------------------------------------- plots


def test_information_plane_accepts_beta_zero():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    metrics = {"izx": 5.0, "izy": 3.0, "err": 0.1, "avg_err": 0.1}
    runs = [SimpleNamespace(config=SimpleNamespace(beta=b), final={"ema_train": dict(metrics, izx=5.0 + b),
                                                                    "ema_test": dict(metrics)})
            for b in (0.0, 1e-3, 1.0)]
    ax = vt.plots.plot_information_plane(runs, marker_for=0.0)
    assert ax.get_xlabel().startswith("I(Z;X)")


def test_the_izx_readings_draw_the_bound_panel_alone_or_with_the_plane():
    """plane=False draws the top panel only (the 200-epoch page), with the same info-loss points as the full figure."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    runs = [{"run": f"vib-beta{b:g}-k256-e10-seed0", "config": vt.TrainConfig(beta=b).as_dict(),
             "final": {"ema_test": {"izx": izx, "izy": 3.0, "err": 0.02, "avg_err": 0.02}},
             "mi_bounds": {"lower": [lo, lo], "upper": [up, up], "ceiling": 13.29, "n": 10000}}
            for b, izx, lo, up in ((1e-3, 22.0, 5.8, 5.9), (1e-1, 6.8, 3.2, 3.2))]
    groups = vt.results.seed_means(runs)
    one, both = vt.plots.plot_izx_readings(groups, plane=False), vt.plots.plot_izx_readings(groups)
    assert len(one.axes) == 1 and len(both.axes) == 3  # the plane panel and its colour bar
    bound = [c for c in one.axes[0].containers if c.get_label() == "info loss (variational bound)"]
    assert list(bound[0].lines[0].get_ydata()) == [22.0, 6.8]


# ---------------------------------------------------------------- the page note, Markdown tables


def test_page_note_holds_the_provenance_and_adds_loaded_training_to_the_colab_estimate(monkeypatch):
    import torch

    monkeypatch.delenv("VIBTOOLS_QUICK", raising=False)
    watch = vt.book.Stopwatch()
    note = vt.report.how_made(watch, torch.device("cpu"), 10, 95.0, trained_on="cpu (x, 2 threads)",
                            loaded_seconds=600, colab_work="trains <the> run")
    text, page = repr(note), note._repr_html_()
    assert "provenance: vibtools" in text and "mode=full" in text and "epochs=10" in text
    assert "about 10 min" in text  # 600 s loaded + a moment of wall time
    assert page.startswith("<details") and "trains &lt;the&gt; run" in page and "<the>" not in page
    assert "under a minute" in repr(vt.report.how_made(watch, torch.device("cpu"), "n/a", 1.0, "wall time"))
    assert "not measured, as this page ran on a CPU" in text and "available to us" not in text  # a fact, no excuse


def test_the_page_note_on_a_gpu_estimates_the_gpu_runtime_from_its_own_time(monkeypatch):
    monkeypatch.delenv("VIBTOOLS_QUICK", raising=False)
    monkeypatch.setattr("vibtools.device.describe_device", lambda device: "cuda (NVIDIA H200)")
    note = vt.report.how_made(vt.book.Stopwatch(), "cuda", 10, 30.0)
    text = " ".join(v for _, v in note.items)
    assert "not measured" not in text.split("On a CPU")[0] and "On a GPU runtime expect" in text
    assert "NVIDIA H200" in text


def test_markdown_table_escapes_pipes_inside_cells():
    import re

    table = vt.report.markdown_table(["decoder", "E KL(p(y|z)‖q)"], [["q = p(y|z), r = p(z)", "0.1"]])
    for line in table.splitlines():
        assert len(re.findall(r"(?<!\\)\|", line)) == 3, line  # two cells: three unescaped pipes per row


def test_the_slack_of_the_info_loss_is_an_interval_between_the_two_estimates():
    """slack_min uses the smaller upper bound (the info loss itself where leave-one-out is looser); slack_max the
    lower bound. Two seeds each: the interval is averaged over them."""
    def run(bound, lower, upper):
        return {"run": "x", "final": {"ema_test": {"izx": bound}},
                "mi_bounds": {"lower": [lower, lower], "upper": [upper, upper], "ceiling": 13.3, "n": 10_000}}

    tight = vt.results.mi_summary(SimpleNamespace(runs=[run(70.0, 12.0, 24.0), run(70.0, 13.0, 22.0)]))
    assert tight["slack_min"][0] == pytest.approx(70.0 - 23.0) and tight["slack_max"][0] == pytest.approx(70.0 - 12.5)
    loose = vt.results.mi_summary(SimpleNamespace(runs=[run(500.0, 13.3, 9000.0)] * 2))
    assert loose["slack_min"] == (0.0, 0.0) and loose["slack_max"][0] == pytest.approx(500.0 - 13.3)


def test_table1_curves_mark_each_paper_number_once_right_of_the_axes():
    """Figure 6.1: one triangle per model with a paper number, outside the axes and apart from each other (close
    values drawn as dotted lines read as five more curves)."""
    import matplotlib

    matplotlib.use("Agg")
    h = {"ema_test_avg_err": [0.03, 0.02, 0.015]}
    records = [{"model": m, "history": h} for m in ("deterministic", "vib", "dropout")]
    ax = vt.plots.plot_table1_curves(records)
    marks = [line for line in ax.get_lines() if line.get_marker() == "<" and len(line.get_xdata())]
    assert len(marks) == 3 and not ax.get_lines()[0].get_linestyle() == ":"
    xs = [float(line.get_xdata()[0]) for line in marks]
    assert all(x > 1.0 for x in xs) and len(set(xs)) == 3  # right of the axes, staggered
    ys = sorted(100 * v for m, v in vt.report.PAPER_TABLE1.items() if m in ("deterministic", "vib", "dropout"))
    assert sorted(float(line.get_ydata()[0]) for line in marks) == pytest.approx(ys)
    assert not [line for line in ax.get_lines() if line.get_linestyle() == ":"]  # no dotted paper lines
    assert "the paper, 200 epochs" in [t.get_text() for t in ax.get_legend().get_texts()][-1]
