"""The β explorer chapter's widgets: ipywidgets sliders over trained K=2 models, and training a new β from the page."""

from __future__ import annotations

import base64
import html
import io

import matplotlib.pyplot as plt
import torch

from . import plots
from .plots import nearest


def beta_explorer(results, x: torch.Tensor, y: torch.Tensor, data=None, device: torch.device | None = None):
    """A widget: a β slider that redraws the embedding and the information-plane marker, plus "train this β".

    Needs a live kernel (Jupyter, Colab). The train button is enabled on a GPU; on a CPU it still works but
    a run takes minutes, so the button says so.

    Args:
        results: trained K=2 RunResults (one per β), e.g. from ``train_sweep(vt.book.embed_configs())``.
        x: images to embed, on the models' device.
        y: their labels.
        data: the MNIST tensors to train new β values on (None disables training).
        device: the device to train on.
    Returns:
        An ``ipywidgets.VBox`` to display.
    """
    import ipywidgets as w
    from IPython.display import HTML, display

    state = {"results": sorted(results, key=lambda r: r.config.beta)}

    def options():
        """The slider's choices: the β of every run, in order."""
        return [(f"{r.config.beta:g}", r.config.beta) for r in state["results"]]

    slider = w.SelectionSlider(options=options(), value=state["results"][0].config.beta, description="β",
                               continuous_update=False, layout=w.Layout(width="60%"))

    def show(beta):
        """Redraw the explorer view for one β."""
        # An <img> with alt text rather than plt.show(): the stored widget output is rendered without a kernel in
        # the book's pages too, and a figure there needs its alt text.
        r = nearest(state["results"], beta)
        fig = plots.explore_figure(r, state["results"], x, y)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        plt.close(fig)
        alt = (f"Left: 2-D posterior means of test digits and their 95% ellipses for the K=2 model at "
               f"beta={r.config.beta:g}, over the decoder's entropy. Right: the information plane of all K=2 models "
               "with this one circled.")
        src = base64.b64encode(buf.getvalue()).decode()
        display(HTML(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{src}" style="max-width:100%">'))

    out = w.interactive_output(show, {"beta": slider})
    children = [slider, out]
    if data is not None:
        on_gpu = device is not None and torch.device(device).type == "cuda"
        new_beta = w.FloatLogSlider(value=3e-3, base=10, min=-6, max=0, step=0.25, description="new β")
        button = w.Button(description="train this β" if on_gpu else "train this β (slow on CPU)",
                          button_style="primary" if on_gpu else "warning", layout=w.Layout(width="auto"))
        log = w.Output()

        def train_new(_):
            """Train the β on the second slider and add it to the explorer."""
            from .training import train

            button.disabled = True
            try:
                with log:
                    cfg = state["results"][0].config.with_(beta=float(new_beta.value))
                    r = train(cfg, data, device=str(device) if device is not None else None)
                    print(f"trained β={cfg.beta:g}: test error {100 * r.final['ema_test']['avg_err']:.2f}%")
                state["results"] = sorted(state["results"] + [r], key=lambda r: r.config.beta)
                slider.options = options()
                slider.value = r.config.beta
            finally:
                button.disabled = False

        button.on_click(train_new)
        children += [w.HBox([new_beta, button]), log]
    return w.VBox(children)
