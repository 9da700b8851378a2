"""Settings shared by the book's chapters: full or reduced (VIBTOOLS_QUICK=1) sizes, and a provenance line."""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, field

import torch

ENV_QUICK = "VIBTOOLS_QUICK"


def quick_mode() -> bool:
    """True when $VIBTOOLS_QUICK is set to 1/true/yes: the reduced sizes used by the notebook tests."""
    return os.environ.get(ENV_QUICK, "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class BookSettings:
    """Sizes the chapters run at. The mode only sets sizes; every number shown is computed from the run."""

    mode: str
    n_train: int | None  # None = all 60 000
    n_test: int | None  # None = all 10 000
    reference_epochs: int  # the training chapter: the reference run
    scratch_epochs: int  # the training chapter: the from-scratch PyTorch model
    sweep_epochs: int  # the β-sweep chapter at K=256
    sweep_betas: tuple[float, ...]
    embed_epochs: int  # the embeddings and explorer chapters: K=2 models
    embed_betas: tuple[float, ...]
    n_embed_points: int = 1000
    seeds: tuple[int, ...] = field(default=(0,))
    adv_epochs: int = 10  # the adversarial chapter: the models attacked (the protocol of results/beta-sweep)
    adv_seeds: tuple[int, ...] = (0, 1, 2)
    adv_betas: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
    n_attack: int = 1000  # test images attacked
    adv_steps: int = 20  # PGD steps
    cw_steps: int = 60  # Adam steps per round of the Carlini-Wagner search
    cw_rounds: int = 4  # rounds of its search over c


FULL = BookSettings(
    mode="full", n_train=None, n_test=None, reference_epochs=10, scratch_epochs=3,
    sweep_epochs=8, sweep_betas=tuple(10.0 ** e for e in range(-9, 1)),
    embed_epochs=20, embed_betas=(1e-3, 1e-2, 1e-1, 1.0),
)
QUICK = BookSettings(
    mode="quick", n_train=2000, n_test=1000, reference_epochs=2, scratch_epochs=1,
    sweep_epochs=2, sweep_betas=(1e-9, 1e-3, 1e-2, 1.0),
    embed_epochs=2, embed_betas=(1e-3, 1e-1, 1.0), n_embed_points=300,
    adv_epochs=2, adv_seeds=(0, 1), n_attack=100, adv_steps=5, cw_steps=10, cw_rounds=2,
)


def settings() -> BookSettings:
    """The chapters' sizes: :data:`QUICK` when $VIBTOOLS_QUICK is set, else :data:`FULL`."""
    return QUICK if quick_mode() else FULL


def book_data(device: torch.device | str | None = None):
    """MNIST on the training device, cut to the current settings' sizes."""
    from .data import load_mnist
    from .device import pick_device

    s = settings()
    data = load_mnist(device=pick_device(device) if not isinstance(device, torch.device) else device)
    return data if s.mode == "full" else data.subset(s.n_train, s.n_test)


class Stopwatch:
    """Wall time since creation, for the provenance line."""

    def __init__(self):
        self.t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Seconds since the stopwatch was made."""
        return time.perf_counter() - self.t0


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
    from .device import describe_device

    where = device if isinstance(device, str) and "(" in device else describe_device(device)
    return (f"provenance: vibtools {__version__}, mode={settings().mode}, device={where}, epochs={epochs}, "
            f"{what} {seconds:.0f} s")


def reference_config():
    """The training chapter's run: the reference notebook's recipe (K=256, β=1e-3) at the current settings' epochs."""
    from .config import TrainConfig

    return TrainConfig(epochs=settings().reference_epochs)


def sweep_configs() -> list:
    """The β-sweep chapter's grid at K=256 (log-spaced, 1e-9 to 1), one shared batch order."""
    from .config import TrainConfig

    s = settings()
    return [TrainConfig(beta=b, epochs=s.sweep_epochs, data_seed=0) for b in s.sweep_betas]


def embed_configs() -> list:
    """The explorer chapter's K=2 models (the paper's full-covariance encoder over a β grid), seed 0.

    At full settings they equal the seed-0 runs of ``reproduce k2``, whose stored results the embeddings chapter
    draws, so the explorer shows the same models and loads them from the run cache where that command ran.
    """
    from .config import TrainConfig

    s = settings()
    return [TrainConfig(beta=b, k=2, covariance="full", epochs=s.embed_epochs, data_seed=0) for b in s.embed_betas]


def adversarial_configs() -> dict[str, list]:
    """The adversarial chapter's models: the deterministic baseline and K=256 VIB at a few β, several seeds each.

    The VIB configs equal those of ``reproduce beta-sweep`` and the deterministic ones those of ``reproduce table1``
    at the same epochs, so runs those commands trained are loaded from the run cache.
    """
    from .baselines import model_config
    from .config import TrainConfig

    s = settings()
    det = [model_config("deterministic", epochs=s.adv_epochs, seed=k, data_seed=0) for k in s.adv_seeds]
    vib = [TrainConfig(beta=b, epochs=s.adv_epochs, seed=k, data_seed=0) for b in s.adv_betas for k in s.adv_seeds]
    return {"deterministic": det, "vib": vib}


def training_seconds(results) -> float:
    """Total training wall time recorded in the histories of some runs (what the provenance line reports)."""
    results = results if isinstance(results, (list, tuple)) else [results]
    seen, total = set(), 0.0
    for r in results:
        key = tuple(r.history.get("seconds", []))
        if key not in seen:  # models of one sweep share their epoch times
            seen.add(key)
            total += sum(key)
    return total


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


def nearest(results, beta: float):
    """The run among ``results`` whose β is nearest to ``beta`` on a log scale."""
    import math

    return min(results, key=lambda r: abs(math.log10(max(r.config.beta, 1e-30)) - math.log10(max(beta, 1e-30))))


# ----------------------------------------------------------------------------- the paper's Table 1
# Test error of the paper's Table 1 (Alemi et al. 2017) for a 784-1024-1024 network: a deterministic baseline and
# three regularizers (following Pereyra et al. 2017), against VIB with K=256, beta=1e-3, 12-sample prediction.
PAPER_TABLE1 = {"deterministic": 0.0138, "dropout": 0.0134, "label-smoothing": 0.0140,
                "confidence-penalty": 0.0136, "vib": 0.0113}
TABLE1_LABELS = {"deterministic": "baseline (deterministic)", "dropout": "dropout", "label-smoothing":
                 "label smoothing", "confidence-penalty": "confidence penalty", "vib": "VIB (β = 1e-3)"}
ENV_RESULTS = "VIBTOOLS_RESULTS"


REPOSITORY = "https://github.com/vib-book/vib-book"  # the book's repository, as in _config.yml and the install cells
RESULTS_ARCHIVE = f"{REPOSITORY}/archive/refs/heads/main.tar.gz"


def results_dir():
    """The results folder the chapters read.

    $VIBTOOLS_RESULTS if set; else ``results/`` of the repository checkout; else (a package installed with pip,
    as in Colab) the repository's committed ``results/``, downloaded once by :func:`fetch_results`.
    """
    from pathlib import Path

    if os.environ.get(ENV_RESULTS):
        return Path(os.environ[ENV_RESULTS]).expanduser()
    local = Path(__file__).resolve().parents[1] / "results"
    return local if local.is_dir() else fetch_results()


def results_cache_folder(url: str = RESULTS_ARCHIVE):
    """Where :func:`fetch_results` keeps a download: one folder per results version, vibtools version and URL, so a
    newer vibtools never serves results fetched for an older one ($VIBTOOLS_RESULTS_CACHE overrides)."""
    import hashlib

    from ._version import __version__
    from .store import RESULTS_VERSION, user_folder

    tag = hashlib.sha1(url.encode()).hexdigest()[:8]
    return user_folder("VIBTOOLS_RESULTS_CACHE", f"results-v{RESULTS_VERSION}-{__version__}-{tag}")


def fetch_results(url: str = RESULTS_ARCHIVE, dest=None):
    """Download the repository's committed ``results/`` once, into :func:`results_cache_folder`.

    Only ``results/**.json`` and ``.md`` files of the archive are written, under their relative paths; the
    folder appears complete or not at all (it is assembled beside its place and renamed).

    Args:
        url: a .tar.gz of the repository (GitHub's archive of the main branch by default).
        dest: where the results go (default: the user cache).
    Returns:
        The folder.
    Raises:
        ResultsError: the archive could not be read (one line saying what to do instead).
    """
    import shutil
    import tarfile
    import tempfile
    import urllib.request
    from pathlib import Path, PurePosixPath

    from .reproduce import ResultsError

    dest = Path(dest) if dest is not None else results_cache_folder(url)
    if (dest / ".complete").is_file():
        return dest
    hint = f"set ${ENV_RESULTS} to a folder holding the results, or run python -m vibtools reproduce"
    try:
        with tempfile.TemporaryDirectory(prefix="vib-results-") as tmp:
            archive = Path(tmp) / "repo.tar.gz"
            with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as out:
                shutil.copyfileobj(response, out)
            staged = Path(tmp) / "results"
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar.getmembers():
                    parts = PurePosixPath(member.name).parts
                    inside = parts[2:] if len(parts) > 2 and parts[1] == "results" else ()
                    if (not member.isfile() or not inside or any(p in ("", ".", "..") for p in inside)
                            or PurePosixPath(*inside).suffix not in (".json", ".md")):
                        continue
                    target = staged.joinpath(*inside)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(tar.extractfile(member).read())
            if not staged.is_dir():
                raise ResultsError(f"{url} holds no results/ folder: {hint}")
            (staged / ".complete").write_text(url + "\n")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():  # an incomplete earlier copy
                shutil.rmtree(dest)
            shutil.move(str(staged), str(dest))
    except (OSError, tarfile.TarError, ValueError) as exc:
        if isinstance(exc, ResultsError):
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ResultsError(f"could not fetch the stored results from {url} ({first}): {hint}") from None
    return dest


def experiment_records(name: str, device=None) -> tuple[list[dict], str]:
    """An experiment's runs: the stored full results, or in quick mode a reduced run of the same code (and its source).

    Args:
        name: an experiment of ``python -m vibtools reproduce`` ("table1", "k2", "beta-sweep").
        device: where a quick-mode run trains.
    Returns:
        (results records, a sentence saying where they come from).
    """
    import tempfile

    from .reproduce import load_experiment, reproduce

    if settings().mode == "full":
        folder = results_dir()
        return load_experiment(folder, name), f"stored results in {folder.name}/{name}"
    with tempfile.TemporaryDirectory(prefix=f"vib-{name}-") as tmp:  # the records are read into memory
        reproduce([name], book_data(device), epochs=settings().reference_epochs, device=device,
                  results_dir=tmp, progress=False)
        return load_experiment(tmp, name), "a reduced run made now (quick mode)"


def table1_records(device=None) -> tuple[list[dict], str]:
    """The Table 1 runs (see :func:`experiment_records`)."""
    return experiment_records("table1", device)


def seed_means(records: list[dict]) -> list:
    """One entry per configuration (runs differing only in seed): its config and seed-averaged final metrics.

    Each entry has ``config`` (of the first seed), ``final`` (every final metric averaged over seeds, so the
    plotting functions that take RunResults accept it), ``final_sd`` (their sd over seeds), ``runs`` and
    ``n_seeds``; entries are sorted by β.
    """
    from types import SimpleNamespace

    from .config import TrainConfig

    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["run"].rsplit("-seed", 1)[0], []).append(r)
    out = []
    for runs in groups.values():
        final, final_sd = {}, {}
        for split, metrics in runs[0]["final"].items():
            stats = {k: mean_and_sd(r["final"][split][k] for r in runs) for k in metrics}
            final[split] = {k: m for k, (m, _) in stats.items()}
            final_sd[split] = {k: sd for k, (_, sd) in stats.items()}
        out.append(SimpleNamespace(config=TrainConfig.from_dict(runs[0]["config"]), final=final, final_sd=final_sd,
                                   runs=runs, n_seeds=len(runs)))
    return sorted(out, key=lambda e: e.config.beta)


def table1_rows(records: list[dict]) -> list[dict]:
    """One row per Table 1 model: ours (each seed, mean, sd over seeds, sd over noise draws, the half-width of the
    mean's 95% t-interval), the paper's, and the verdict of :func:`vibtools.stats.against_paper`."""
    by_model: dict[str, list[dict]] = {}
    for r in records:
        by_model.setdefault(r["model"], []).append(r)
    return [{"model": name, "label": TABLE1_LABELS[name], **_judged(by_model[name], "avg_err", PAPER_TABLE1[name])}
            for name in PAPER_TABLE1 if name in by_model]


def _judged(runs: list[dict], key: str, paper: float) -> dict:
    """The fields every verdict row shares: each seed's number, the 95% t-interval of their mean, the verdict."""
    from .reproduce import summarize
    from .stats import against_paper, interval_of

    s = summarize(runs, key)
    ours = interval_of(s["mean"], s["sd_seeds"], s["n_seeds"])
    per_seed = {r["config"].get("seed", i): statistics.mean(r["eval_noise"][key]) for i, r in enumerate(runs)}
    return {**s, "sd": s["sd_seeds"], "half": ours.half, "per_seed": dict(sorted(per_seed.items())),
            "paper": paper, "epochs": runs[0]["protocol"]["epochs"], "reproduced": against_paper(ours, paper)}


def verdict_text(row: dict) -> str:
    """The table's last column: is the paper's number inside the 95% t-interval of our mean over seeds? "yes", or
    "no" and on which side our mean lies, or why it is undecided; with the protocol when it is not the paper's."""
    short = f"; {row['epochs']} of 200 epochs" if row["epochs"] != 200 else ""
    if row["reproduced"] is None:
        if row["sd"] != row["sd"]:
            return "no spread (one seed)"
        return f"undecided: interval too wide (± {100 * row['half']:.1f} points){short}"
    if row["reproduced"]:
        return "yes" if row["epochs"] == 200 else f"yes ({row['epochs']} of 200 epochs)"
    side = "above" if row["mean"] > row["paper"] else "below"
    return f"no: ours {side}{short}"


def k2_rows(records: list[dict]) -> list[dict]:
    """One row per β of the paper's K=2 figures: ours (1- and 12-sample error, mean and sd over seeds) and the paper's.

    Args:
        records: results records of the ``k2`` experiment.
    """
    from .reproduce import summarize

    rows = []
    for beta, (p1, p12) in PAPER_K2.items():
        runs = [r for r in records if abs(r["config"]["beta"] - beta) <= 1e-12 * max(beta, 1.0)]
        if not runs:
            continue
        one, avg = summarize(runs, "err"), summarize(runs, "avg_err")
        rows.append({"beta": beta, "paper_err": p1, "paper_avg_err": p12, "err": one, "avg_err": avg,
                     **_judged(runs, "avg_err", p12)})
    return rows


def mean_sd(mean: float, sd: float) -> str:
    """An error rate and its spread as percentages: "1.61% ± 0.06"."""
    return f"{100 * mean:.2f}% ± {100 * sd:.2f}"


def mean_and_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation of some numbers (sd NaN for fewer than two; both NaN if one is NaN)."""
    import statistics

    values = list(values)
    if any(v != v for v in values):
        return math.nan, math.nan
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else math.nan)


def mi_summary(group) -> dict:
    """The stored I(Z;X) readings of one seed group on the test set, each as (mean, sd over seeds), in bits.

    Per run, each bound is first averaged over its draws of the codes. ``lower`` is Poole et al.'s minibatch
    bound, which is also the exact I(Z;X) for X uniform over the N test images; ``upper`` the leave-one-out
    bound; ``bound`` the info loss (the variational bound); ``slack`` = bound - lower, an estimate of
    KL(p(z) || r(z)) for the test set's aggregate posterior p(z).

    Args:
        group: an entry of :func:`seed_means` whose runs hold ``mi_bounds``.
    Returns:
        A dict with those four keys, plus ``ceiling`` (log2 N) and ``n`` (N).
    """
    runs = group.runs
    if any("mi_bounds" not in r for r in runs):
        raise ValueError(f"{runs[0]['run']}: the stored runs hold no I(Z;X) bounds (deterministic encoder, or "
                         f"results written before they were recorded: rerun python -m vibtools reproduce)")
    lower = [mean_and_sd(r["mi_bounds"]["lower"])[0] for r in runs]
    upper = [mean_and_sd(r["mi_bounds"]["upper"])[0] for r in runs]
    bound = [r["final"]["ema_test"]["izx"] for r in runs]
    return {"lower": mean_and_sd(lower), "upper": mean_and_sd(upper), "bound": mean_and_sd(bound),
            "slack": mean_and_sd(b - lo for b, lo in zip(bound, lower)),
            "ceiling": runs[0]["mi_bounds"]["ceiling"], "n": runs[0]["mi_bounds"]["n"]}


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
             colab_work: str = "runs every cell") -> PageNote:
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
    Returns:
        A :class:`PageNote`; as a cell's last expression it renders as a collapsed box.
    """
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
                 f"be slower). On a GPU runtime: not measured, as no GPU was available to us; there the training "
                 f"runs on the GPU.")
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
    return PageNote(items)


def _minutes(seconds: float) -> str:
    """A duration in words: "under a minute", "about 3 min"."""
    return "under a minute" if seconds < 60 else f"about {round(seconds / 60):.0f} min"


def stored_training_seconds(records: list[dict]) -> float:
    """Total training time of stored runs (results records), counting each stacked pass once."""
    return sum({tuple(r["history"]["seconds"]): r["seconds"]["training"] for r in records}.values())


def cold_training_seconds(results, records=()) -> float:
    """About how long training the cached runs among ``results`` again would take, from their recorded times.

    A run trained in a stacked pass shares its recorded epoch times with every model of that pass. Where the
    pass's other runs are among ``records`` (stored results), the run is charged its share of the pass (the
    pass's time divided by the runs in it); otherwise the pass's full time is charged once.

    Args:
        results: RunResults a page used; those with ``from_cache`` are counted.
        records: results records (``reproduce``) that may hold the other runs of the same passes.
    Returns:
        Seconds, on the device the runs were trained on.
    """
    passes: dict[tuple, int] = {}
    for r in records:
        key = tuple(r["history"]["seconds"])
        passes[key] = passes.get(key, 0) + 1
    cached = [r for r in (results if isinstance(results, (list, tuple)) else [results]) if r.from_cache]
    keys = [tuple(r.history.get("seconds", [])) for r in cached]
    shares = sum(sum(k) / passes[k] for k in keys if k in passes)
    return shares + training_seconds([r for r, k in zip(cached, keys) if k not in passes])
