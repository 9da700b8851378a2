"""The β explorer chapter's live widget: an ipywidgets slider over the stored K=2 embeddings, and training a new β
from the page."""

from __future__ import annotations

import base64
import html
import io

import matplotlib.pyplot as plt
import torch

from . import plots


def stored_explorer(stored: dict, data=None, device: torch.device | None = None, config=None):
    """A widget over the explorer's stored data (:func:`vibtools.explorer.load_explorer_data`): it moves at once,
    with nothing to train. A β slider redraws the stored embedding and the information plane with that model
    marked; "train this β" adds a new model (with its ETA: one epoch of the K=2 model, times 20).

    Args:
        stored: the explorer's data, one frame per β.
        data: the MNIST tensors to train new β values on (None disables training).
        device: the device to train on.
        config: the recipe of a new β (its β is replaced); None: the stored models' own (K=2, full covariance,
            their epochs, batch order 0).
    Returns:
        An ``ipywidgets.VBox`` to display.
    """
    import ipywidgets as w
    from IPython.display import HTML, display

    from . import explorer

    frames = {"list": list(stored["frames"])}

    def options():
        return [(f"{f['beta']:g}", i) for i, f in enumerate(frames["list"])]

    slider = w.SelectionSlider(options=options(), value=0, description="β", continuous_update=False,
                               layout=w.Layout(width="60%"))

    def show(i):
        """Redraw the view of frame i: the stored embedding beside the information plane."""
        f = frames["list"][i]
        fig, (a, b) = plt.subplots(1, 2, figsize=(8.6, 4.2))
        lim = explorer._extent(f)
        plots.plot_stored_embedding({"embedding": f, "run": f"β={f['beta']:g}"}, ax=a, lim=lim,
                                    title=f"β = {f['beta']:g}: test error {100 * f['err']:.1f}% (12 samples)")
        xs, ys = [g["izx"] for g in frames["list"]], [g["izy"] for g in frames["list"]]
        b.plot(xs, ys, "-o", color="grey", ms=4)
        b.scatter([f["izx"]], [f["izy"]], s=220, facecolors="none", edgecolors=plots.PALETTE[3], linewidths=2)
        b.set(xscale="log", xlabel="I(Z;X) upper bound [bits, log scale]", ylabel="I(Z;Y) lower bound [bits]",
              title="the information plane (test set)")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        plt.close(fig)
        alt = (f"Left: 2-D posterior means of test digits and their 95% ellipses for the K=2 model at β={f['beta']:g}."
               " Right: the information plane of every model, this one circled.")
        src = base64.b64encode(buf.getvalue()).decode()
        display(HTML(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{src}" style="max-width:100%">'))

    out = w.interactive_output(show, {"i": slider})
    children = [slider, out]
    if data is not None:
        on_gpu = device is not None and torch.device(device).type == "cuda"
        new_beta = w.FloatLogSlider(value=3e-3, base=10, min=-6, max=0, step=0.25, description="new β")
        button = w.Button(description="train this β" if on_gpu else "train this β (slow on CPU)",
                          button_style="primary" if on_gpu else "warning", layout=w.Layout(width="auto"))
        log = w.Output()

        def train_new(_):
            """Train the β on the second slider (20 epochs, as the stored models) and add it to the slider."""
            from .config import TrainConfig
            from .training import train

            button.disabled = True
            try:
                with log:
                    base = config or TrainConfig(k=2, covariance="full", epochs=stored["epochs"], data_seed=0)
                    cfg = base.with_(beta=float(new_beta.value))
                    r = train(cfg, data, device=str(device) if device is not None else None)
                    print(f"trained β={cfg.beta:g}: test error {100 * r.final['ema_test']['avg_err']:.2f}%")
                frames["list"] = sorted(frames["list"] + [explorer._from_run(r, data, stored["images"])],
                                        key=lambda f: f["beta"])
                slider.options = options()
                slider.value = next(i for i, f in enumerate(frames["list"]) if f["beta"] == cfg.beta)
            finally:
                button.disabled = False

        button.on_click(train_new)
        children += [w.HBox([new_beta, button]), log]
    return w.VBox(children)
