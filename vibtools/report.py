"""What the chapters print beside our numbers: the paper's and the reference notebook's numbers, Markdown tables,
formatted values and verdicts, the provenance line and the collapsed page note."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch, and the chapters' settings, load only where a page note needs them (figures never do)
    import torch

    from .book import Stopwatch


# Numbers printed by the reference notebook (the TensorFlow 1 notebook this book ports) and the paper
# (Alemi et al. 2017, section 4.1 and figure 2). They are the bars we compare against, not our results.


REFERENCE_EPOCHS = {  # per-epoch test metrics of the raw weights, epochs 0-9
    "izy": [3.03, 3.13, 3.14, 3.16, 3.17, 3.19, 3.19, 3.19, 3.20, 3.20],
    "izx": [124.24, 102.63, 90.19, 82.35, 78.39, 71.32, 77.62, 66.89, 69.95, 62.87],
    "err": [0.0593, 0.0437, 0.0390, 0.0353, 0.0330, 0.0309, 0.0280, 0.0258, 0.0260, 0.0242],
    "avg_err": [0.0503, 0.0340, 0.0292, 0.0268, 0.0260, 0.0232, 0.0227, 0.0197, 0.0190, 0.0190],
}


REFERENCE_EMA = {"izy": 3.228585, "izx": 71.078026, "err": 0.0202, "avg_err": 0.0161}
PAPER_K2 = {  # beta -> (1-sample error, 12-sample error), K=2, full covariance
    1e-3: (0.0324, 0.0318), 1e-1: (0.0432, 0.0344), 1.0: (0.6281, 0.3382),
}


# Test error of the paper's Table 1 (Alemi et al. 2017) for a 784-1024-1024 network: a deterministic baseline and
# three regularizers (following Pereyra et al. 2017), against VIB with K=256, beta=1e-3, 12-sample prediction.
PAPER_TABLE1 = {"deterministic": 0.0138, "dropout": 0.0134, "label-smoothing": 0.0140,
                "confidence-penalty": 0.0136, "vib": 0.0113}
TABLE1_LABELS = {"deterministic": "baseline (deterministic)", "dropout": "dropout", "label-smoothing":
                 "label smoothing", "confidence-penalty": "confidence penalty", "vib": "VIB (β = 1e-3)"}


def device_label(text: str) -> str:
    """A record's device text as the book prints it: "1 threads" (records written before ``describe_device`` said
    "1 thread") reads "1 thread"."""
    return re.sub(r"\b1 threads\b", "1 thread", text)


def provenance(device: torch.device | str, epochs: int | str, seconds: float, what: str = "wall time") -> str:
    """The line each chapter prints under its results: version, mode, device, epochs, wall time.

    Args:
        device: a torch device, or the ``RunResult.device`` text of the runs shown.
        epochs: epochs of the runs shown ("n/a" for chapters without training).
        seconds: the time of the work shown.
        what: what ``seconds`` measures: "wall time" of the notebook, or "training time" summed over the
            epochs of the runs shown (:func:`training_seconds`), which stays true when the runs come from the cache.
    """
    from ._version import __version__
    from .book import settings
    from .device import describe_device

    where = device_label(device if isinstance(device, str) and "(" in device else describe_device(device))
    return (f"provenance: vibtools {__version__}, mode={settings().mode}, device={where}, epochs={epochs}, "
            f"{what} {seconds:.0f} s")


def history_lines(result) -> list[str]:
    """The run's per-epoch test lines and the EMA line, in the reference notebook's print format."""
    from .evaluation import format_line

    h = result.history
    lines = []
    for i, epoch in enumerate(h["epoch"]):
        m = {k[len("test_"):]: v[i] for k, v in h.items() if k.startswith("test_")}
        lines.append(format_line(str(epoch), m))
    if result.final:
        lines.append(format_line("EMA", result.final["ema_test"]))
    return lines


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table; a "|" inside a cell (as in "p(y|z)") is escaped, so it cannot split the cell."""
    import re

    def cells(values) -> str:
        return " | ".join(re.sub(r"(?<!\\)\|", r"\\|", str(v)) for v in values)

    out = ["| " + cells(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + cells(row) + " |" for row in rows]
    return "\n".join(out)


def pct(x: float | None) -> str:
    """An error rate as a percentage with two decimals ("—" for missing)."""
    return "—" if x is None else f"{100 * x:.2f}%"


def pct_range(low: float, high: float) -> str:
    """A range of percentages (``low`` and ``high`` already in %) that never reads as empty: "12–47%", or with one
    decimal where whole numbers would round to the same ("46.6–47.2%", not "47–47%"); one value when they agree."""
    for digits in (0, 1):
        a, b = f"{low:.{digits}f}", f"{high:.{digits}f}"
        if a != b:
            return f"{a}–{b}%"
    return f"{a}%"


def format_mean_sd(mean: float, sd: float) -> str:
    """An error rate and its spread as percentages: "1.61% ± 0.06"."""
    return f"{100 * mean:.2f}% ± {100 * sd:.2f}"


def mean_ci(mean: float, sd: float, n: int) -> str:
    """An error over n seeds as "1.29% ± 0.13": the mean and the half-width of its 95% t-interval, in points."""
    from .stats import interval_of

    return f"{100 * mean:.2f}% ± {100 * interval_of(mean, sd, n).half:.2f}"


def prediction_range(row: dict) -> str:
    """A verdict row's 95% prediction interval for one run, as a range of percentages ("1.03–1.55%"); an error
    cannot be negative, so the range starts at 0% at the lowest."""
    low, high = max(0.0, row["mean"] - row["pred_half"]), row["mean"] + row["pred_half"]
    return f"{100 * low:.2f}–{100 * high:.2f}%"


VERDICT_QUESTION = "paper's run consistent with one of ours? (inside our 95% prediction interval)"
AVERAGE_QUESTION = "paper's number inside the 95% interval of our mean?"


def verdict_text(row: dict, question: str = "reproduced") -> str:
    """A verdict column (:data:`VERDICT_QUESTION`): is the paper's single run inside our 95% prediction interval for
    one run? "yes", or "no" and on which side our mean lies, or why it is undecided; with the protocol when it is
    not the paper's. ``question="average"`` answers :data:`AVERAGE_QUESTION` instead (the t-interval of our mean).
    """
    short = f"; {row['epochs']} of 200 epochs" if row["epochs"] != 200 else ""
    verdict = row[question]
    if verdict is None:
        if row["sd"] != row["sd"]:
            return "no spread (one seed)"
        half = row["pred_half"] if question == "reproduced" else row["half"]
        return f"undecided: interval too wide (± {100 * half:.1f} points){short}"
    if verdict:
        return "yes" if row["epochs"] == 200 else f"yes ({row['epochs']} of 200 epochs)"
    side = "above" if row["mean"] > row["paper"] else "below"
    return f"no: ours {side}{short}"


class PageNote:
    """The collapsed "How this page was made" note that closes each chapter (HTML on the page, text elsewhere)."""

    def __init__(self, items: list[tuple[str, str]]):
        self.items = items

    def __repr__(self) -> str:
        return "How this page was made\n" + "\n".join(f"- {k}: {v}" for k, v in self.items)

    def _repr_html_(self) -> str:
        import html

        rows = "".join(f"<li><b>{html.escape(k)}:</b> {html.escape(v)}</li>" for k, v in self.items)
        return f'<details class="how-made"><summary>How this page was made</summary><ul>{rows}</ul></details>'


def how_made(watch: Stopwatch, device, epochs, seconds: float, what: str = "training time (sum of epochs)", *,
             trained_on: str | None = None, loaded_seconds: float = 0.0,
             colab_work: str = "runs every cell", not_shown: Sequence[str] = (),
             facts: Sequence[tuple[str, str]] = ()) -> PageNote:
    """A chapter's closing note: provenance, settings, its own wall time, and what it costs in a fresh Colab.

    Args:
        watch: the stopwatch started at the top of the chapter.
        device: the device the page ran on.
        epochs, seconds, what: as in :func:`provenance`.
        trained_on: where the runs shown were trained (``RunResult.device`` or a record's ``device``); default
            ``device``.
        loaded_seconds: recorded training time of the runs the page loaded from the run cache instead of
            training them (a fresh Colab runtime has to train them).
        colab_work: what the page does in a fresh runtime, as a clause ("downloads MNIST and trains ...").
        facts: further (title, text) items of the note: facts about how the page's numbers were made that the
            reading refers to.
        not_shown: the configurations of a protocol with seeds not yet stored, as
            :func:`vibtools.results.protocol_progress` lists them (an item of their own when there are any).
    Returns:
        A :class:`PageNote`; as a cell's last expression it renders as a collapsed box.
    """
    from .book import settings
    from .device import describe_device

    s = settings()
    wall = watch.seconds
    here = describe_device(device)
    sizes = ("all 60 000 training and 10 000 test images" if s.n_train is None
             else f"{s.n_train} training and {s.n_test} test images")
    loaded = (f"; it loaded runs from the run cache instead of training them, which had taken about "
              f"{loaded_seconds:.0f} s (their share of the stacked passes that trained them)"
              if loaded_seconds > 0 else "")
    total = _minutes(wall + loaded_seconds)
    if here.startswith("cpu"):
        colab = (f"On a CPU runtime expect {total}: an estimate, this page's wall time plus the training time of "
                 f"what it loaded, both measured on the CPU above (Colab's CPU runtime also has 2 cores, which may "
                 f"be slower). On a GPU runtime: not measured, as this page ran on a CPU; there the training runs on "
                 f"the GPU.")
    else:
        colab = (f"On a GPU runtime expect {total} on a GPU like this page's ({here}); Colab's GPUs may be "
                 f"slower. On a CPU runtime: not estimated, as this page ran on a GPU.")
    items = [
        ("Run", provenance(trained_on or device, epochs, seconds, what)),
        ("Settings", f"{s.mode} ({sizes}); the notebook tests run the same cells at reduced sizes "
                     f"(VIBTOOLS_QUICK=1)"),
        ("This page", f"{'under a second' if wall < 1 else f'{wall:.0f} s'} of wall time on {here}{loaded}"),
        ("In Colab", f"every Colab notebook starts with an empty run cache and no data: it installs vibtools "
                     f"and {colab_work}. {colab}"),
    ]
    if not_shown:
        items.append(("The paper's protocol, runs not in the book", "; ".join(not_shown)))
    items.extend(facts)
    return PageNote(items)


def _minutes(seconds: float) -> str:
    """A duration in words: "under a minute", "about 3 min"."""
    return "under a minute" if seconds < 60 else f"about {round(seconds / 60):.0f} min"
