"""The book's figure style and plots: learning curves, the information plane, 2-D embeddings, the explorer view."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch

# Okabe & Ito's colour-blind-safe palette, then two greys for the 9th/10th classes.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
           "#999999", "#882255")
CEILING = math.log2(10)


def nearest(results, beta: float):
    """The run among ``results`` whose β is nearest to ``beta`` on a log scale (β = 0 counts as the smallest)."""
    return min(results, key=lambda r: abs(math.log10(max(r.config.beta, 1e-30)) - math.log10(max(beta, 1e-30))))


def use_style() -> None:
    """Apply the book's matplotlib style: colour-blind-safe cycle, readable sizes, light grid."""
    mpl.rcParams.update({
        "axes.prop_cycle": mpl.cycler(color=PALETTE),
        "figure.figsize": (6.4, 4.0), "figure.dpi": 110, "savefig.dpi": 110,
        "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
        "font.size": 10, "axes.titlesize": 11, "legend.frameon": False, "image.cmap": "viridis",
    })


def plot_learning_curves(history: dict[str, list], reference: dict[str, Sequence[float]] | None = None,
                         bottleneck: str = "vib"):
    """Three panels per epoch: I(Z;X) bound, I(Z;Y) bound, test error (1- and 12-sample, raw and EMA weights).

    Args:
        history: a RunResult.history.
        reference: optional {"izx": [...], "izy": [...], "err": [...], "avg_err": [...]} per epoch to overlay.
        bottleneck: the run's ``TrainConfig.bottleneck``. For "ceb" the running training rate is the residual
            bound on I(X;Z|Y), not an I(Z;X) bound, so it is left off the I(Z;X) panel.
    Returns:
        The matplotlib Figure.
    """
    ep = np.asarray(history["epoch"]) + 1
    # 2 x 2 with the error panel's long legend in the fourth cell: at most 8.6 in wide, so the page shows the figure
    # at 70% of its size or more (tests/test_site.py) and no legend covers a curve.
    fig, grid = plt.subplots(2, 2, figsize=(8.6, 6.2))
    axes, legend_ax = [grid[0, 0], grid[0, 1], grid[1, 0]], grid[1, 1]
    for tag, style in (("test", "-"), ("ema_test", "--")):
        label = "raw weights" if tag == "test" else "EMA weights"
        axes[0].plot(ep, history[f"{tag}_izx"], style, color=PALETTE[0], label=label)
        axes[1].plot(ep, history[f"{tag}_izy"], style, color=PALETTE[0], label=label)
        axes[2].plot(ep, 100 * np.asarray(history[f"{tag}_err"]), style, color=PALETTE[1], label=f"1 sample, {label}")
        axes[2].plot(ep, 100 * np.asarray(history[f"{tag}_avg_err"]), style, color=PALETTE[2],
                     label=f"12 samples, {label}")
    if bottleneck == "vib":
        axes[0].plot(ep, history["train_info_bits"], ":", color=PALETTE[4], label="train (running)")
    if reference:
        rep = np.arange(1, len(reference["izx"]) + 1)
        axes[0].plot(rep, reference["izx"], "o", color=PALETTE[7], ms=3, label="reference notebook")
        axes[1].plot(rep, reference["izy"], "o", color=PALETTE[7], ms=3, label="reference notebook")
        axes[2].plot(rep, 100 * np.asarray(reference["err"]), "o", color=PALETTE[1], ms=3, label="reference, 1 sample")
        axes[2].plot(rep, 100 * np.asarray(reference["avg_err"]), "s", color=PALETTE[2], ms=3,
                     label="reference, 12 samples")
    axes[1].axhline(CEILING, color="grey", lw=0.8, ls=":", label="log2(10) ceiling")
    for ax, ylabel in zip(axes, ("I(Z;X) upper bound [bits]", "I(Z;Y) lower bound [bits]", "test error [%]")):
        ax.set(xlabel="epoch", ylabel=ylabel)
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    legend_ax.axis("off")
    legend_ax.legend(*axes[2].get_legend_handles_labels(), loc="center", fontsize=8, title="test error")
    fig.tight_layout()
    return fig


def plot_information_plane(results, ax=None, marker_for: float | None = None):
    """I(Z;Y) against I(Z;X) (final EMA weights) for a β sweep, train and test, with the log2(10) ceiling.

    Args:
        results: RunResults of one sweep (their ``final`` holds ema_train and ema_test metrics).
        ax: axes to draw on (a new figure if None).
        marker_for: a β to highlight with a large marker (the slider chapter).
    Returns:
        The axes.
    """
    ax = ax if ax is not None else plt.subplots(figsize=(6.4, 4.4))[1]
    betas = np.array([r.config.beta for r in results])
    positive = betas[betas > 0]
    if positive.size:  # log colours over the positive betas; beta = 0 takes the colour of the smallest one
        norm = mpl.colors.LogNorm(positive.min(), positive.max())
        betas = np.where(betas > 0, betas, positive.min())
    else:
        norm = mpl.colors.Normalize()
    for split, mk, ls in (("train", "o", "-"), ("test", "s", "--")):
        x = [r.final[f"ema_{split}"]["izx"] for r in results]
        y = [r.final[f"ema_{split}"]["izy"] for r in results]
        ax.plot(x, y, ls, color="grey", lw=0.8, zorder=1)
        sc = ax.scatter(x, y, c=betas, norm=norm, cmap="viridis", marker=mk, zorder=2, label=split,
                        edgecolors="k", linewidths=0.4)
    if marker_for is not None:
        r = nearest(results, marker_for)
        ax.scatter([r.final["ema_test"]["izx"]], [r.final["ema_test"]["izy"]], s=220, facecolors="none",
                   edgecolors=PALETTE[3], linewidths=2, zorder=3, label=f"β = {r.config.beta:g}")
    ax.axhline(CEILING, color="grey", lw=0.8, ls=":", label="H(Y) = log2(10)")
    # log x: the bound is a KL, so positive; it spans four orders of magnitude across β
    ax.set(xscale="log", xlabel="I(Z;X) upper bound [bits, log scale]", ylabel="I(Z;Y) lower bound [bits]")
    ax.figure.colorbar(sc, ax=ax, label="β")
    ax.legend(loc="lower right", fontsize=8)
    return ax


@torch.no_grad()
def embedding_lim(model, x: torch.Tensor) -> float:
    """Half-width of a square that holds 99.5% of the posterior means of ``x``, with a margin."""
    return float(np.percentile(np.abs(model.encode(x).mean.cpu().numpy()), 99.5)) * 1.15 + 1e-3


@torch.no_grad()
def plot_embedding(model, x: torch.Tensor, y: torch.Tensor, ax=None, lim: float | None = None, title: str = ""):
    """Posterior means of 2-D codes coloured by class, 95% ellipses, over the decoder's entropy map.

    Args:
        model: a trained VIB with K=2.
        x: (N, 784) images on the model's device (1000 test images in the book).
        y: (N,) labels.
        ax: axes (a new figure if None).
        lim: half-width of the square shown (None: from the data).
        title: axes title.
    Returns:
        The axes.
    """
    if model.k != 2:
        raise ValueError(f"plot_embedding needs a K=2 model, got K={model.k}")
    ax = ax if ax is not None else plt.subplots(figsize=(5, 5))[1]
    q = model.encode(x)
    cov = (q.covariance_matrix if hasattr(q, "covariance_matrix") else torch.diag_embed(q.variance)).cpu().numpy()
    lim = embedding_lim(model, x) if lim is None else lim
    # the decoder's class-probability entropy (bits) on a 200 x 200 grid of 2-D codes
    g = torch.linspace(-lim, lim, 200, device=model.dec_weight.device)
    p = model.decode(torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)).softmax(-1)
    ent = -(p * p.clamp_min(1e-12).log2()).sum(-1).reshape(200, 200).cpu().numpy()
    im = ax.imshow(ent, origin="lower", extent=(-lim, lim, -lim, lim), cmap="Greys", vmin=0, vmax=CEILING,
                   alpha=0.55)
    _draw_posteriors(ax, q.mean.cpu().numpy(), cov, y.cpu().numpy())
    r95 = math.sqrt(CHI2_95)  # the prior N(0, I)'s 95% circle, as in plot_stored_embedding
    ax.add_patch(mpl.patches.Circle((0, 0), r95, fill=False, ls="--", lw=1.0, color="k", label="prior 95%"))
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel="z₁ (posterior mean)", ylabel="z₂ (posterior mean)",
           aspect="equal", title=title)
    ax.grid(False)
    # below the axes, so that no cluster is hidden behind it
    legend_by_rows(ax, *ax.get_legend_handles_labels(), ncol=6, markerscale=3, fontsize=8, loc="upper center",
                    bbox_to_anchor=(0.5, -0.16), title="digit", title_fontsize=8)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, label="decoder entropy [bits]")
    return ax


CHI2_95 = 5.991  # 95% quantile of the chi-square distribution with 2 degrees of freedom


def _draw_posteriors(ax, mu: np.ndarray, cov: np.ndarray, labels: np.ndarray, n_ellipses: int = 200) -> None:
    """Posterior means coloured by class and the 95% ellipses of the first ``n_ellipses`` posteriors."""
    for c in range(10):
        sel = labels == c
        ax.scatter(mu[sel, 0], mu[sel, 1], s=5, color=PALETTE[c], label=str(c), zorder=3)
    for m, s, c in zip(mu[:n_ellipses], cov[:n_ellipses], labels[:n_ellipses]):
        vals, vecs = np.linalg.eigh(s)
        angle = math.degrees(math.atan2(vecs[1, 1], vecs[0, 1]))
        w, h = 2 * np.sqrt(CHI2_95 * np.maximum(vals[::-1], 0))
        ax.add_patch(mpl.patches.Ellipse(m, w, h, angle=angle, fill=False, lw=0.5, color=PALETTE[c], alpha=0.7,
                                         zorder=2))


def plot_stored_embedding(record: dict, ax=None, lim: float = 4.0, title: str = "", n_ellipses: int = 200):
    """A K=2 run's stored test embedding: posterior means by digit, 95% ellipses, and the prior's 95% circle.

    Args:
        record: a results record of the ``k2`` experiment (its ``embedding``: labels, means, covariances).
        ax: axes (a new figure if None).
        lim: half-width of the square shown (the same for every panel, so panels compare).
        title: axes title.
        n_ellipses: how many posteriors get their 95% ellipse.
    Returns:
        The axes.
    """
    if "embedding" not in record:
        raise ValueError(f"{record.get('run')!r} holds no embedding: only K=2 runs of reproduce k2 store one")
    emb = record["embedding"]
    mu = np.asarray(emb["mean"], dtype=float)
    cov = np.asarray(emb["covariance"], dtype=float).reshape(-1, 2, 2)
    ax = ax if ax is not None else plt.subplots(figsize=(5, 5))[1]
    ax.add_patch(mpl.patches.Circle((0, 0), math.sqrt(CHI2_95), fill=False, ls="--", lw=1.2, color="#555555",
                                    zorder=4, label="prior 95%"))
    _draw_posteriors(ax, mu, cov, np.asarray(emb["labels"]), n_ellipses)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xlabel="z₁", ylabel="z₂", title=title)
    ax.grid(False)
    return ax


def plot_error_vs_beta(results, ax=None, split: str = "test"):
    """Test error (1-sample and 12-sample, raw and EMA weights) against β on a log axis.

    Args:
        results: RunResults of one β sweep.
        ax: axes (a new figure if None).
        split: "test" or "train".
    Returns:
        The axes.
    """
    ax = ax if ax is not None else plt.subplots(figsize=(6.4, 4.0))[1]
    betas = [r.config.beta for r in results]
    for tag, ls in (("ema", "-"), ("raw", ":")):
        for key, color, mk, name in (("err", PALETTE[1], "o", "1 sample"), ("avg_err", PALETTE[2], "s", "12 samples")):
            ax.plot(betas, [100 * r.final[f"{tag}_{split}"][key] for r in results], ls, marker=mk, color=color,
                    label=f"{name}, {'EMA' if tag == 'ema' else 'raw'} weights", ms=4)
    ax.axhline(90, color="grey", lw=0.8, ls=":", label="chance (90%)")
    ax.set(xscale="log", xlabel="β", ylabel=f"{split} error [%, log scale]")
    _plain_log_yaxis(ax)
    ax.legend(fontsize=8)
    return ax


def _plain_log_yaxis(ax) -> None:
    """A log-scale y axis labelled in plain numbers at 1, 1.2, 1.5, 2, 3, 5, 7 times each power of ten."""
    ax.set_yscale("log")
    axis = ax.yaxis
    axis.set_major_locator(mpl.ticker.LogLocator(base=10, subs=(1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 7.0)))
    axis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(mpl.ticker.NullFormatter())


def legend_by_rows(target, handles, labels, ncol: int, **kw):
    """A legend whose entries read left to right, row by row (matplotlib fills columns first)."""
    # entry i belongs in row i // ncol, column i % ncol; matplotlib takes the entries column by column
    by_column = sorted(range(len(handles)), key=lambda i: (i % ncol, i // ncol))
    return target.legend([handles[i] for i in by_column], [labels[i] for i in by_column], ncol=ncol, **kw)


def plot_mean_curves(groups: dict[str, list[dict]], key: str = "ema_test_avg_err", ax=None,
                     paper: dict[str, float] | None = None, log: bool = True, paper_marks: str = "line"):
    """A per-epoch history of several groups of runs: the mean over each group's seeds and a band for its range.

    Args:
        groups: label -> results records (one per seed) whose ``history`` holds ``key``.
        key: the history entry (an error rate, drawn in percent).
        ax: axes to draw on (a new figure if None).
        paper: label -> the paper's final value, in the group's colour.
        log: a log scale for the error axis.
        paper_marks: "line", a dotted line across the axes per paper value; or "edge", one triangle per value just
            right of the axes, staggered so that close values do not hide each other (nor read as curves).
    Returns:
        The axes.
    """
    ax = ax if ax is not None else plt.subplots(figsize=(6.0, 4.2))[1]  # the legend goes to the right of it
    edge = ax.get_yaxis_transform()  # x in axes coordinates, y in data
    marks = 0  # paper marks drawn so far: each next one a little further right
    for color, (label, runs) in zip(PALETTE, groups.items()):
        if not runs:
            continue
        curves = np.array([r["history"][key] for r in runs]) * 100
        ep = np.arange(1, curves.shape[1] + 1)
        ax.plot(ep, curves.mean(0), color=color, label=f"{label} ({len(runs)} seed{'s' if len(runs) != 1 else ''})")
        ax.fill_between(ep, curves.min(0), curves.max(0), color=color, alpha=0.2, lw=0)
        if paper and label in paper and paper_marks == "edge":
            ax.plot([1.02 + 0.04 * marks], [100 * paper[label]], marker="<", ms=8, color=color, mec="black",
                    mew=0.6, transform=edge, clip_on=False, ls="none")
            marks += 1
        elif paper and label in paper:
            ax.axhline(100 * paper[label], color=color, ls=":", lw=1)
    if paper and paper_marks == "edge":
        ax.plot([], [], marker="<", ms=8, color="white", mec="black", mew=0.6, ls="none",
                label="the paper, 200 epochs (right of the axes)")
    ax.set(xlabel="epoch", ylabel="test error, EMA weights, 12 samples [%]")
    if log:
        _plain_log_yaxis(ax)
    if paper and paper_marks == "edge":  # inside, top right: the curves fall from the top left; the marks sit right
        ax.legend(fontsize=8, loc="upper right")
    else:  # outside the axes: the paper's dotted lines run along the bottom, where "best" would put it
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


def plot_table1_curves(records: list[dict], ax=None):
    """Test error of the EMA weights (12 samples) per epoch for each Table 1 model: mean over seeds and its range.

    Args:
        records: results records of the ``table1`` experiment (``vibtools.reproduce.load_experiment``).
        ax: axes to draw on (a new figure if None).
    Returns:
        The axes.
    """
    from .report import PAPER_TABLE1, TABLE1_LABELS

    groups = {TABLE1_LABELS[n]: [r for r in records if r["model"] == n] for n in PAPER_TABLE1}
    paper = {TABLE1_LABELS[n]: v for n, v in PAPER_TABLE1.items()}
    return plot_mean_curves(groups, ax=ax, paper=paper, paper_marks="edge")


def plot_digit_rows(rows: Sequence[torch.Tensor], preds: Sequence[torch.Tensor], row_labels: Sequence[str],
                    labels: torch.Tensor):
    """Rows of digits (an original row, then attacked copies), each titled with a prediction; red marks a wrong one.

    Args:
        rows: per row, (n, 784) images in [0, 1].
        preds: per row, the (n,) predicted labels.
        row_labels: per row, a label written left of it.
        labels: the (n,) true labels.
    Returns:
        The matplotlib Figure.
    """
    n = len(labels)
    fig, axes = plt.subplots(len(rows), n, figsize=(0.85 * n + 1.4, 1.05 * len(rows) + 0.2), squeeze=False)
    for r, (imgs, pred, name) in enumerate(zip(rows, preds, row_labels)):
        for i in range(n):
            ax = axes[r, i]
            ax.imshow(imgs[i].detach().cpu().view(28, 28), cmap="gray_r", vmin=0, vmax=1)
            wrong = int(pred[i]) != int(labels[i])
            ax.set_title(f"→ {int(pred[i])}", fontsize=10, color="#D55E00" if wrong else "#000000",
                         fontweight="bold" if wrong else "normal")
            ax.set(xticks=[], yticks=[])
            ax.grid(False)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return fig


def plot_plane_trajectories(groups, ax=None):
    """The information plane over training time: per β, the path of the two bounds from epoch 1 to the last.

    Test points (solid, squares at the end) are the EMA weights' bounds on the test set after each epoch; training
    points (dashed) are the running means of the training losses over each epoch (raw weights, noisy by nature).
    Each path is the mean over the seeds of one β.

    Args:
        groups: entries of :func:`vibtools.results.seed_means` (their ``runs`` hold the stored histories).
        ax: axes (a new figure if None).
    Returns:
        The axes.
    """
    ax = ax if ax is not None else plt.subplots(figsize=(7.2, 4.6))[1]
    betas = np.array([max(g.config.beta, 1e-30) for g in groups])
    norm = mpl.colors.LogNorm(betas.min(), betas.max()) if len(betas) > 1 else mpl.colors.Normalize()
    cmap = mpl.colormaps["viridis"]
    for g, b in zip(groups, betas):
        color = cmap(norm(b))
        def mean(key, runs=g.runs):
            return np.mean([r["history"][key] for r in runs], axis=0)

        ax.plot(mean("ema_test_izx"), mean("ema_test_izy"), "-", color=color, lw=1.4)
        ax.plot(mean("ema_test_izx")[-1:], mean("ema_test_izy")[-1:], "s", color=color, mec="k", mew=0.4)
        if g.config.bottleneck == "vib":  # CEB's running rate bounds I(X;Z|Y), not I(Z;X)
            ax.plot(mean("train_info_bits"), CEILING - mean("train_class_bits"), "--", color=color, lw=0.9,
                    alpha=0.8)
    ax.axhline(CEILING, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", xlabel="I(Z;X) upper bound [bits, log scale]", ylabel="I(Z;Y) lower bound [bits]")
    sm = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
    ax.figure.colorbar(sm, ax=ax, label="β")
    ax.plot([], [], "-", color="grey", label="test, EMA weights (square: last epoch)")
    ax.plot([], [], "--", color="grey", label="training batches, raw weights")
    # the top left of the plane is empty (no β keeps the label there); a frame keeps the ceiling line off the text
    ax.legend(loc="center right", bbox_to_anchor=(1.0, 0.38), fontsize=8, frameon=True, framealpha=0.9)  # empty there
    return ax


def plot_izx_readings(groups, axes=None, plane: bool = True):
    """The variational bound on I(Z;X) beside estimates of the true I(Z;X), against β and on the plane.

    Top: per β, the info loss (the variational upper bound), Poole et al.'s leave-one-out upper bound and
    minibatch lower bound on the test set, and the log2 N ceiling; the shaded band runs from the lower bound to
    the smaller of the two upper bounds: where I(Z;X) itself lies, so that the slack KL(p(z) || r(z)) is the
    distance from a point of the band up to the info loss (an interval, not one number). Bottom: the information
    plane with each β drawn twice, at its info loss (square) and at its lower bound (diamond), joined by a line.
    Means over seeds; bars span ± 1 sd.

    Args:
        groups: entries of :func:`vibtools.results.seed_means` whose runs hold ``mi_bounds``.
        axes: two axes, or one where ``plane`` is False (a new figure if None).
        plane: draw the bottom panel (False: the top one alone).
    Returns:
        The figure.
    """
    from .results import mi_summary

    if not plane:
        ax1 = axes if axes is not None else plt.subplots(figsize=(7.0, 4.4))[1]
    else:
        ax1, ax2 = axes if axes is not None else plt.subplots(2, 1, figsize=(7.0, 8.8))[1]
    s = [mi_summary(g) for g in groups]
    betas = np.array([g.config.beta for g in groups])

    def col(key, i=0):
        return np.array([row[key][i] for row in s])

    ax1.fill_between(betas, col("lower"), np.minimum(col("upper"), col("bound")), color=PALETTE[0], alpha=0.18,
                     lw=0, label="I(Z;X) lies here; the slack is the rest up to the info loss")
    for key, mk, c, label in (("bound", "s", PALETTE[1], "info loss (variational bound)"),
                              ("upper", "^", PALETTE[4], "leave-one-out upper bound"),
                              ("lower", "D", PALETTE[0], "minibatch lower bound")):
        ax1.errorbar(betas, col(key), yerr=col(key, 1), fmt=mk + "-", color=c, ms=5, lw=1.2, capsize=2,
                     label=label)
    ceiling = s[0]["ceiling"]
    ax1.axhline(ceiling, color="grey", ls=":", lw=1.0, label=f"log2 N = {ceiling:.1f} (N = {s[0]['n']:,})")
    ax1.set(xscale="log", yscale="log", xlabel="β", ylabel="bits, test set [log scale]",
            title="I(Z;X): the bound and the estimates")
    ax1.legend(fontsize=8, loc="upper right")
    if not plane:
        ax1.figure.tight_layout()
        return ax1.figure

    norm = mpl.colors.LogNorm(betas.min(), betas.max()) if len(betas) > 1 else mpl.colors.Normalize()
    cmap = mpl.colormaps["viridis"]
    izy = np.array([g.final["ema_test"]["izy"] for g in groups])
    for b, lo, hi, y in zip(betas, col("lower"), col("bound"), izy):
        ax2.plot([lo, hi], [y, y], "-", color=cmap(norm(b)), lw=1.0, alpha=0.8)
    ax2.scatter(col("bound"), izy, c=betas, norm=norm, cmap=cmap, marker="s", edgecolors="k", linewidths=0.4,
                label="at the info loss (bound)", zorder=3)
    sc = ax2.scatter(col("lower"), izy, c=betas, norm=norm, cmap=cmap, marker="D", edgecolors="k",
                     linewidths=0.4, label="at the lower bound (estimate)", zorder=3)
    ax2.axvline(ceiling, color="grey", ls=":", lw=1.0)
    ax2.axhline(CEILING, color="grey", ls=":", lw=0.8)
    ax2.set(xscale="log", xlabel="I(Z;X) [bits, test set, log scale]", ylabel="I(Z;Y) lower bound [bits, test set]",
            title="The plane, drawn at both readings")
    ax2.figure.colorbar(sc, ax=ax2, label="β")
    ax2.legend(fontsize=8, loc="lower right")
    ax2.figure.tight_layout()
    return ax2.figure
