"""The β explorer's stored data and its chart, which runs in the rendered page with no kernel and no training.

``python -m vibtools explorer-data`` writes ``results/explorer/k2-embeddings.json``: for every K=2 model of the
explorer's slider (the full-covariance encoder at β from 1e-3 to 1, 20 epochs, seed 0), the 2-D posterior means
and covariances of the first 1 000 test images, the model's test error, and its place on the information plane.
The four decades come from the ``k2`` records (``reproduce k2``); the half-decades between them from the run
cache, where the explorer chapter trained them. The file is sealed like every record and read back by
:func:`load_explorer_data`, without torch.

:func:`explorer_html` draws it with Vega-Lite (vendored for the offline site by ``scripts/fetch_site_assets.sh``):
a β slider with labelled ticks, axes fitted to each β or fixed, the digit's label and posterior on hover, and
the information plane beside it with the current β marked. The live notebook's widget reads the same file
(:func:`vibtools.widgets.stored_explorer`).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

FORMAT = "vibtools-explorer"
FOLDER = "explorer"
FILE = "k2-embeddings.json"
EPOCHS = 20
BETAS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 0.3, 1.0)  # the explorer's slider (vibtools.book.embed_configs at full)
DIGITS = 3  # decimals kept of each mean and covariance entry (the page draws at most 1/1000 of its axes)


def _frame(beta: float, labels, means, covs, err: float, izx: float, izy: float, source: str, trained_on: str,
           seconds: float) -> dict:
    """One slider position: a model's stored posteriors, its numbers, and where and how long it was trained."""
    return {"beta": beta, "err": err, "izx": izx, "izy": izy, "source": source, "trained_on": trained_on,
            "training_seconds": round(seconds, 1),
            "labels": [int(v) for v in labels],
            "mean": [[round(float(a), DIGITS) for a in m] for m in means],
            "covariance": [[round(float(a), DIGITS) for a in c] for c in covs]}


def _from_record(rec: dict) -> dict:
    """A frame from a ``k2`` results record (its stored embedding)."""
    emb, test = rec["embedding"], rec["final"]["ema_test"]
    return _frame(rec["config"]["beta"], emb["labels"], emb["mean"], emb["covariance"], test["avg_err"], test["izx"],
                  test["izy"], f"results/k2/{rec['run']}.json", rec["device"], sum(rec["history"]["seconds"]))


def _from_run(result, data, n: int) -> dict:
    """A frame from a trained K=2 run (the run cache's half-decades), as ``reproduce`` stores an embedding."""
    import torch

    with torch.no_grad():
        q = result.ema_model.encode(data.test_x[:n])
    full = q.covariance_matrix if hasattr(q, "covariance_matrix") else torch.diag_embed(q.variance)
    cov = full.reshape(len(full), -1).cpu().tolist()
    test = result.final["ema_test"]
    where = f"run cache ({result.path.name})" if result.path is not None else "trained in this session"
    return _frame(result.config.beta, data.test_y[:n].tolist(), q.mean.cpu().tolist(), cov, test["avg_err"],
                  test["izx"], test["izy"], where, result.device, result.seconds["training"])


def explorer_data(results_dir: str | Path, data=None, cache=True, log=print) -> dict:
    """The explorer's data: the ``k2`` records' seed-0 runs at :data:`EPOCHS` epochs, and each other β of
    :data:`BETAS` whose finished run is in the run cache (skipped, and said, when it is not).

    Args:
        results_dir: the results folder holding ``k2/``.
        data: MNIST tensors (needed only to embed runs from the cache; None skips them).
        cache: the run cache (True: the default folder).
        log: called with one line per β taken from the cache or missing.
    Returns:
        The unsealed data: {"format", "epochs", "images", "frames": [...] in β order}.
    """
    from .records import load_protocol_runs

    recs = [r for r in load_protocol_runs(results_dir, "k2", EPOCHS)
            if r["config"]["seed"] == 0 and r["config"]["k"] == 2 and "embedding" in r]
    frames = {r["config"]["beta"]: _from_record(r) for r in recs}
    if not frames:
        raise ValueError(f"{Path(results_dir) / 'k2'} holds no {EPOCHS}-epoch seed-0 K=2 record with an embedding: "
                         f"run python -m vibtools reproduce k2 --epochs {EPOCHS}")
    n = len(next(iter(frames.values()))["labels"])
    missing = [b for b in BETAS if b not in frames]
    if missing and data is not None:
        from .config import TrainConfig
        from .resume import finished_run, stored_result
        from .store import RunCache, cache_folder

        folder = cache_folder(cache)
        store = RunCache(folder) if folder else None
        fp = data.fingerprint()
        for b in missing:
            c = TrainConfig(beta=b, k=2, covariance="full", epochs=EPOCHS, data_seed=0)
            stored = store.read(store.path(c, fp), c, fp) if store else None
            if finished_run(stored, c):
                frames[b] = _from_run(stored_result(stored, c, data.test_x.device, store.path(c, fp)), data, n)
                if log:
                    log(f"β={b:g}: from the run cache")
            elif log:
                log(f"β={b:g}: not in the run cache (train vt.book.embed_configs() to add it); left out")
    return {"format": FORMAT, "epochs": EPOCHS, "images": n, "frames": [frames[b] for b in sorted(frames)]}


def write_explorer_data(results_dir: str | Path, data=None, cache=True, log=print) -> Path:
    """Write :func:`explorer_data` sealed to ``RESULTS/explorer/k2-embeddings.json`` (atomically)."""
    from .records import code_version, sealed
    from .store import save_json

    out = Path(results_dir) / FOLDER / FILE
    save_json(out, sealed({**explorer_data(results_dir, data, cache, log), "run": Path(FILE).stem,
                           "code": code_version()}))
    return out


def load_explorer_data(path: str | Path | None = None) -> dict:
    """The stored explorer data, checked (format, checksum, one frame per β in order, consistent sizes);
    ResultsError in one line otherwise. ``path`` None reads the committed file (:func:`vibtools.results.results_dir`).
    """
    from .records import ResultsError, load_sealed

    if path is None:
        from .results import results_dir

        path = results_dir() / FOLDER / FILE
    rec = load_sealed(path, FORMAT, "python -m vibtools explorer-data")
    frames, n = rec.get("frames"), rec.get("images")
    try:
        betas = [f["beta"] for f in frames]
        ok = bool(betas) and betas == sorted(set(betas)) and all(
            len(f["labels"]) == len(f["mean"]) == len(f["covariance"]) == n and 0 <= f["err"] <= 1
            and math.isfinite(f["izx"]) and f["izx"] > 0 and math.isfinite(f["izy"]) for f in frames)
    except (TypeError, KeyError, AttributeError):
        ok = False
    if not ok:
        raise ResultsError(f"{path} holds frames that cannot be true (β out of order, sizes that disagree, or an "
                           f"error outside [0, 1]); rerun python -m vibtools explorer-data")
    return rec


# ---------------------------------------------------------------- the chart

def _points(rec: dict) -> list[dict]:
    """One row per (β index, image): the chart's data, compact (short keys)."""
    rows = []
    for i, f in enumerate(rec["frames"]):
        for lab, (x, y), c in zip(f["labels"], f["mean"], f["covariance"]):
            rows.append({"i": i, "d": lab, "x": x, "y": y, "s": round(math.sqrt(max(c[0], 0) + max(c[3], 0)), DIGITS)})
    return rows


def _extent(frame: dict, q: float = 0.995) -> float:
    """Half-width of a square holding all but the most extreme 0.5% of one β's means (at least 0.5)."""
    a = sorted(max(abs(x), abs(y)) for x, y in frame["mean"])
    return max(0.5, a[min(len(a) - 1, int(q * len(a)))] * 1.08)


def explorer_spec(rec: dict) -> dict:
    """The Vega-Lite spec: the embedding of the β chosen by the ``b`` parameter beside the information plane."""
    extents = [round(_extent(f), 3) for f in rec["frames"]]
    fixed = max(extents)
    plane = [{"i": i, "beta": f["beta"], "izx": round(f["izx"], 3), "izy": round(f["izy"], 3),
              "err": round(100 * f["err"], 2), "label": f"β={f['beta']:g}"} for i, f in enumerate(rec["frames"])]
    lim = f"(fit ? [{','.join(map(str, extents))}][b] : {fixed})"
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "params": [{"name": "b", "value": 0}, {"name": "fit", "value": True}],
        "hconcat": [
            {"width": 300, "height": 300, "data": {"name": "points"},
             "transform": [{"filter": "datum.i == b"}],
             "mark": {"type": "circle", "opacity": 0.7, "size": 18},
             "encoding": {
                 "x": {"field": "x", "type": "quantitative", "title": "z₁ (posterior mean)",
                       "scale": {"domain": [{"expr": f"-{lim}"}, {"expr": lim}]}},
                 "y": {"field": "y", "type": "quantitative", "title": "z₂ (posterior mean)",
                       "scale": {"domain": [{"expr": f"-{lim}"}, {"expr": lim}]}},
                 "color": {"field": "d", "type": "nominal", "title": "digit",
                           "scale": {"scheme": "tableau10"}},
                 "tooltip": [{"field": "d", "type": "nominal", "title": "digit"},
                             {"field": "x", "type": "quantitative", "title": "z₁", "format": ".2f"},
                             {"field": "y", "type": "quantitative", "title": "z₂", "format": ".2f"},
                             {"field": "s", "type": "quantitative", "title": "posterior sd (√ trace)",
                              "format": ".2f"}]}},
            {"width": 220, "height": 300, "data": {"values": plane},
             "layer": [
                 {"mark": {"type": "line", "color": "#999999", "point": {"color": "#555555", "size": 40}},
                  "encoding": {"x": {"field": "izx", "type": "quantitative", "title": "I(Z;X) upper bound (bits)",
                                     "scale": {"type": "log"}, "axis": {"tickCount": 5, "format": "~g"}},
                               "y": {"field": "izy", "type": "quantitative", "title": "I(Z;Y) lower bound (bits)"},
                               "order": {"field": "beta"},
                               "tooltip": [{"field": "beta", "title": "β"},
                                           {"field": "err", "title": "test error (%)"}]}},
                 {"mark": {"type": "text", "align": "right", "dx": -7, "dy": -6, "fontSize": 10, "color": "#555555"},
                  "encoding": {"x": {"field": "izx", "type": "quantitative"},
                               "y": {"field": "izy", "type": "quantitative"},
                               "text": {"field": "label"}}},
                 {"transform": [{"filter": "datum.i == b"}],
                  "mark": {"type": "point", "size": 220, "strokeWidth": 2.5, "color": "#d62728"},
                  "encoding": {"x": {"field": "izx", "type": "quantitative"},
                               "y": {"field": "izy", "type": "quantitative"}}}]}],
        "config": {"view": {"stroke": "#dddddd"}, "axis": {"labelFontSize": 11, "titleFontSize": 12},
                   "legend": {"orient": "bottom", "direction": "horizontal", "columns": 10}},
    }


VENDOR = "../_static/vendor/vega"  # from a chapter page of the built site


def explorer_html(rec: dict, element: str = "vib-explorer") -> str:
    """The explorer as HTML for a page with no kernel: the slider with a tick per β, the fit-axes toggle, the
    chart (Vega-Lite, from the vendored copies beside the page), and a line with the current β's numbers."""
    frames = rec["frames"]
    last = max(len(frames) - 1, 1)  # each label under its stop of the slider (the thumb is about 16 px wide)
    ticks = "".join(f'<span style="position:absolute;left:calc({i / last:.4f} * (100% - 16px) + 8px);'
                    f'transform:translateX(-50%)">{f["beta"]:g}</span>' for i, f in enumerate(frames))
    info = [f"β = {f['beta']:g}: test error {100 * f['err']:.1f}% (12 samples), I(Z;X) ≤ {f['izx']:.2f} bits, "
            f"I(Z;Y) ≥ {f['izy']:.2f} bits" for f in frames]
    spec = {**explorer_spec(rec), "datasets": {"points": _points(rec)}}
    payload = json.dumps({"spec": spec, "info": info}, separators=(",", ":"))
    e = html.escape(element)
    return f"""<div id="{e}" class="vib-explorer" style="max-width:640px">
<div style="display:flex;align-items:center;gap:12px;flex-wrap:wrap">
<label for="{e}-beta" style="font-weight:600">β</label>
<div style="flex:1;min-width:260px"><input id="{e}-beta" type="range" min="0" max="{len(frames) - 1}" step="1"
 value="0" style="width:100%" aria-label="β: which model is shown">
<div style="position:relative;height:1.3em;font-size:0.8em;color:#555" aria-hidden="true">{ticks}</div></div>
<label><input id="{e}-fit" type="checkbox" checked> axes fit each β</label></div>
<p id="{e}-info" style="margin:0.4em 0;font-size:0.9em">{html.escape(info[0])}</p>
<div id="{e}-chart" role="img" aria-label="Left: the 2-D posterior means of 1000 test digits for the β chosen on the
 slider, coloured by digit. Right: the information plane of every model, the chosen one circled in red."></div>
<noscript>The explorer needs JavaScript; the static figures of the K=2 chapter show the same embeddings.</noscript>
</div>
<script src="{VENDOR}/vega.min.js"></script>
<script src="{VENDOR}/vega-lite.min.js"></script>
<script src="{VENDOR}/vega-embed.min.js"></script>
<script>
(function () {{
  var data = {payload};
  var slider = document.getElementById("{e}-beta"), fit = document.getElementById("{e}-fit");
  var info = document.getElementById("{e}-info");
  if (typeof vegaEmbed === "undefined") {{ info.textContent = "The chart's scripts did not load."; return; }}
  vegaEmbed("#{e}-chart", data.spec, {{renderer: "svg", actions: false}}).then(function (res) {{
    var view = res.view;
    document.getElementById("{e}").vegaView = view;  // for the browser test
    function update() {{
      var i = +slider.value;
      info.textContent = data.info[i];
      view.signal("b", i).signal("fit", fit.checked).runAsync();
    }}
    slider.addEventListener("input", update);
    fit.addEventListener("change", update);
    update();
    document.getElementById("{e}").dataset.ready = "1";
  }}).catch(function (err) {{ info.textContent = "The chart could not be drawn: " + err; }});
}})();
</script>"""
