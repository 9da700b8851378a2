"""The paper's experiments as named, resumable runs whose compact results go to a committed ``results/`` folder.

``python -m vibtools reproduce [NAME ...] [--epochs N]`` trains what is missing (models that share a shape in
one stacked pass, with per-model loss settings), resumes interrupted runs from the run cache, and writes, per run,
``results/<experiment>/<run>.json``: the config, the per-epoch history, the final metrics, the test error of the
EMA weights under several draws of the evaluation noise, the device, the training time and the code version.
For stochastic encoders the record holds lower and upper bounds on the true I(Z;X) over the test set
(:func:`vibtools.infotheory.encoder_mi_bounds`). No weights and no optimizer state are written; for K=2 runs the
posterior means and covariances of the first :data:`N_EMBED` test images are, so that the embeddings can be
redrawn. The experiments of the uncertainty chapter add its calibration and out-of-distribution numbers
(:func:`uncertainty_record`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
import subprocess
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .baselines import model_name
from .config import TrainConfig
from .data import MNISTTensors
from .evaluation import evaluate
from .experiments import EXPERIMENTS, PAPER_EPOCHS, PASS_MODEL_EPOCHS, plan_passes, run_name, select_across
from .jsonio import StoredJSONError, read_json
from .store import RESULTS_VERSION, remove_stale_tmp, save_json

NOISE_DRAWS = 5  # draws of the evaluation noise per run (each on the whole test set)
N_EMBED = 1000  # test images whose K=2 posteriors are stored
MI_DRAWS = 2  # independent draws of the codes for the I(Z;X) bounds on the test set
FORMAT = "vibtools-results"
N_OOD = 10_000  # images of each out-of-distribution set
UNCERTAINTY_SEED = 3000  # seed of the evaluation noise of the uncertainty numbers
RATE_EDGES = [10 ** (e / 10) for e in range(-20, 61)]  # log-spaced bins of R(x) in bits, 1e-2 ... 1e6


class ResultsError(ValueError):
    """A results file is unreadable, of another format, or lacks what a reader needs."""


def code_version() -> dict:
    """vibtools' version, the results version, and the git commit when the package runs from a checkout."""
    from ._version import __version__

    commit = None
    here = Path(__file__).resolve().parent
    try:  # only when the package's folder is part of the checkout (not a wheel installed inside another repository)
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=10,
                             cwd=here)
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "__init__.py"], capture_output=True,
                                 text=True, timeout=10, cwd=here)
        if top.returncode == 0 and tracked.returncode == 0 and Path(top.stdout.strip()) == here.parent:
            out = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                                 timeout=10, cwd=here)
            commit = (out.stdout.strip() or None) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"vibtools": __version__, "results_version": RESULTS_VERSION, "commit": commit}


def _noise_spread(result, data: MNISTTensors) -> dict:
    """Test errors of the EMA weights under :data:`NOISE_DRAWS` seeds of the evaluation noise."""
    draws = [evaluate(result.ema_model, data.test_x, data.test_y, result.config.n_eval_samples, seed=1000 + d)
             for d in range(NOISE_DRAWS)]
    return {"draws": NOISE_DRAWS, "err": [d["err"] for d in draws], "avg_err": [d["avg_err"] for d in draws]}


@torch.no_grad()
def _embedding(result, data: MNISTTensors) -> dict:
    """Posterior means and covariances of the first :data:`N_EMBED` test images (K=2 runs), rounded."""
    q = result.ema_model.encode(data.test_x[:N_EMBED])
    return {"labels": data.test_y[:N_EMBED].tolist(),
            "mean": [[round(v, 4) for v in row] for row in q.mean.tolist()],
            "covariance": [[round(v, 5) for v in row.flatten().tolist()] for row in _covariances(q)]}


def _covariances(q) -> torch.Tensor:
    """(N, K, K) covariance matrices of a full-covariance or diagonal Gaussian posterior."""
    return q.covariance_matrix if hasattr(q, "covariance_matrix") else torch.diag_embed(q.variance)


@torch.no_grad()
def _mi_bounds(result, data: MNISTTensors) -> dict:
    """Poole et al.'s lower and upper bounds on I(Z;X) of the EMA encoder over the test set, per draw, in bits."""
    from .infotheory import encoder_mi_bounds

    q = result.ema_model.encode(data.test_x)
    g = torch.Generator(device=data.test_x.device).manual_seed(2000)
    draws = [encoder_mi_bounds(q, generator=g) for _ in range(MI_DRAWS)]
    return {"split": "test", "n": draws[0].n, "ceiling": draws[0].ceiling,
            "lower": [d.lower for d in draws], "upper": [d.upper for d in draws]}


def data_record(data: MNISTTensors, classes: Sequence[int] | None = None) -> dict:
    """What a results record says of the data it was made on: the images' fingerprint, the set sizes, and the
    digits kept when an experiment trains on some classes only."""
    record = {"fingerprint": data.fingerprint(), "n_train": len(data.train_x), "n_test": len(data.test_x)}
    return record if classes is None else {**record, "classes": list(classes)}


def uncertainty_record(result, data: MNISTTensors, ood: dict[str, torch.Tensor]) -> dict:
    """Calibration on the test set and detection of each OOD set by each score (:mod:`vibtools.uncertainty`), and
    for VIB the histogram of the rate R(x) over :data:`RATE_EDGES`; for dropout models also as MC-dropout."""
    from .uncertainty import assess

    def compact(a: dict) -> dict:
        rel = {k: [None if v != v else float(v) for v in t.tolist()] for k, t in a["reliability"].items()}
        out = {"calibration": a["calibration"], "reliability": rel, "detection": a["detection"]}
        if "rate" in a["scores"]["in"]:
            edges = torch.tensor(RATE_EDGES, dtype=torch.float64)
            out["rate_histogram"] = {
                name: torch.histc(torch.log10(v["rate"].double().clamp(edges[0], edges[-1])),
                                  len(RATE_EDGES) - 1, math.log10(RATE_EDGES[0]), math.log10(RATE_EDGES[-1]))
                .long().tolist() for name, v in a["scores"].items()}
        return out

    model, x, y = result.ema_model, data.test_x, data.test_y
    record = compact(assess(model, x, y, ood, result.config.n_eval_samples, UNCERTAINTY_SEED))
    if result.config.dropout:
        record["mc_dropout"] = compact(assess(model, x, y, ood, result.config.n_eval_samples, UNCERTAINTY_SEED,
                                              dropout=result.config.dropout))
    return record


def ood_for(experiment: str, full: MNISTTensors, fashion: MNISTTensors | None) -> dict[str, torch.Tensor]:
    """The OOD sets of an experiment's uncertainty numbers: the held-out digits of the full test set for a
    held-out-class experiment, else the sets of :func:`vibtools.uncertainty.ood_sets` (which need Fashion-MNIST)."""
    from .uncertainty import ood_sets

    classes = EXPERIMENTS[experiment].classes
    if classes is not None:
        unseen = ~torch.isin(full.test_y, torch.tensor(classes, device=full.test_y.device))
        names = sorted(set(range(10)) - set(classes))
        return {f"digits {names[0]}–{names[-1]}": full.test_x[unseen]}
    if fashion is None:
        raise ValueError(f"experiment {experiment!r} tests against Fashion-MNIST: pass fashion=load_fashion_mnist()")
    return ood_sets(full.test_x, fashion.test_x.to(full.test_x.device), n=N_OOD)


def result_record(result, data: MNISTTensors, experiment: str, epochs: int,
                  ood: dict[str, torch.Tensor] | None = None) -> dict:
    """The results-file contents of one finished run (``ood``: the OOD sets of an uncertainty experiment)."""
    record = {"format": FORMAT, "results_version": RESULTS_VERSION, "experiment": experiment,
              "run": run_name(result.config), "model": model_name(result.config), "protocol": {"epochs": epochs},
              "config": result.config.as_dict(), "data": data_record(data, EXPERIMENTS[experiment].classes),
              "device": result.device,
              "seconds": result.seconds, "pass": result.timing.get("pass"),
              "code": code_version(), "history": result.history, "final": result.final,
              "eval_noise": _noise_spread(result, data)}
    if int(torch.unique(data.test_y).numel()) < 10:  # the I(Z;Y) bounds' H(Y) (vibtools.evaluation)
        record["h_y_bits"] = math.log2(int(torch.unique(data.test_y).numel()))
    if result.config.covariance != "none":
        record["mi_bounds"] = _mi_bounds(result, data)
    if result.config.k == 2 and result.config.covariance != "none":
        record["embedding"] = _embedding(result, data)
    if ood is not None:
        record["uncertainty"] = uncertainty_record(result, data, ood)
    return sealed(record)


def record_checksum(record: dict) -> str:
    """SHA-256 of a results record's canonical JSON, its own ``checksum`` left out."""
    body = {k: v for k, v in record.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def sealed(record: dict) -> dict:
    """The record with its checksum, which :func:`load_results` verifies (an edit by hand shows)."""
    return {**record, "checksum": record_checksum(record)}


def load_results(path: str | Path) -> dict:
    """Read one results file and check what readers need; ResultsError (one line) on anything else."""
    path = Path(path)

    def fail(what: str, redo: str = "remake") -> None:
        """Raise the one-line error that says how to make the file again."""
        raise ResultsError(f"{path} {what}; rerun python -m vibtools reproduce to {redo} it")

    try:
        record = read_json(path)
    except StoredJSONError as exc:
        raise ResultsError(f"{path} is not a readable results file (it {exc}); rerun python -m vibtools reproduce "
                           f"to rewrite it") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise ResultsError(f"{path} is not a vibtools results file (format {found!r})")
    for key in ("experiment", "run", "config", "history", "final", "eval_noise", "protocol", "data", "checksum"):
        if key not in record:
            fail(f"lacks {key!r}", "rewrite")
    if record["checksum"] != record_checksum(record):
        fail("does not match its checksum (edited or damaged)")
    for key in ("config", "history", "final", "eval_noise", "protocol", "data"):
        if not isinstance(record[key], dict):
            fail(f"holds a {type(record[key]).__name__} as {key!r}, not a mapping")
    if record["run"] != path.stem:
        fail(f"holds the run {record['run']!r}, not {path.stem!r}")
    made_on = record["data"].get("fingerprint")
    if not isinstance(made_on, str) or not re.fullmatch(r"[0-9a-f]{16}", made_on):
        fail("names no data fingerprint, so nothing says which images it was made on", "rewrite")
    for split in ("raw_test", "ema_test", "ema_train"):
        if not isinstance(record["final"].get(split), dict) or "avg_err" not in record["final"][split]:
            fail(f"lacks final[{split!r}]", "rewrite")
    version = record.get("results_version")
    if version != RESULTS_VERSION:
        fail(f"holds results version {version!r}, this vibtools makes {RESULTS_VERSION}")
    try:
        config = TrainConfig.from_dict(record["config"])
    except (TypeError, ValueError) as exc:
        raise ResultsError(f"{path} holds an unusable config ({exc})") from None
    for key, column in record["history"].items():
        if not isinstance(column, list):
            raise ResultsError(f"{path} holds a number that cannot be true (history[{key!r}] is a "
                               f"{type(column).__name__}, not a list of numbers); rerun python -m vibtools reproduce "
                               f"to remake it")
    epochs = record["protocol"].get("epochs") if isinstance(record["protocol"], dict) else None
    lengths = {len(v) for v in record["history"].values()} if isinstance(record["history"], dict) else {None}
    if epochs != config.epochs or lengths != {epochs}:
        raise ResultsError(f"{path} is inconsistent: protocol {epochs} epochs, config {config.epochs}, history "
                           f"{sorted(lengths, key=str)}")
    if record.get("model") != model_name(config) or record["run"] != run_name(config):
        raise ResultsError(f"{path} names its run {record['run']!r} ({record.get('model')!r}) but holds the config "
                           f"of {run_name(config)!r}")
    draws = record["eval_noise"].get("avg_err") if isinstance(record["eval_noise"], dict) else None
    if not isinstance(draws, list) or len(draws) < 2:
        raise ResultsError(f"{path} lacks its evaluation-noise draws")
    if path.parent.name in EXPERIMENTS and record["experiment"] != path.parent.name:
        raise ResultsError(f"{path} is a record of the experiment {record['experiment']!r}, not of the folder "
                           f"{path.parent.name!r} it is in: move it back")
    wanted = EXPERIMENTS[record["experiment"]].classes if record["experiment"] in EXPERIMENTS else None
    classes = record["data"].get("classes")
    if record["experiment"] in EXPERIMENTS and (list(wanted) if wanted else None) != classes:
        raise ResultsError(f"{path} was made on the classes {classes or 'all'}, its experiment "
                           f"{record['experiment']!r} uses {list(wanted) if wanted else 'all'}")
    if classes is not None and len(classes) < 10 and "h_y_bits" not in record:
        raise ResultsError(f"{path} was written before its I(Z;Y) bounds used the H(Y) of its {len(classes)} "
                           f"classes: run python scripts/migrate_results.py --data DATA {path.parent}")
    impossible = _impossible_number(record)
    if impossible:
        raise ResultsError(f"{path} holds a number that cannot be true ({impossible}); rerun python -m vibtools "
                           f"reproduce to remake it")
    return record


def h_y_bits(record: dict) -> float:
    """H(Y) in bits as a record's I(Z;Y) bounds use it: log2 of the number of its classes, as if balanced.

    This is the authors' convention (vib_demo's ``IZY_bound = math.log(10, 2) - class_loss``). MNIST's test labels
    are not quite balanced: their entropy is 3.3194 bits, 0.0025 below log2 10 (2.3198 against log2 5 = 2.3219
    for digits 0-4), so a bound may overstate I(Z;Y) by up to that much. Records on fewer than ten classes carry
    it (``h_y_bits``); full-MNIST records, which lack it, use log2 10.
    """
    value = record.get("h_y_bits", math.log2(10))
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _impossible_number(record: dict) -> str | None:
    """What in a record's history, final metrics and noise draws cannot be true, or None.

    Every number finite; errors and accuracies in [0, 1]; rates and losses >= 0; I(Z;Y) bounds at most H(Y).
    """
    h_y, classes = h_y_bits(record), record["data"].get("classes")
    if not abs(h_y - math.log2(len(classes) if classes else 10)) <= 1e-9:  # NaN (not a number) fails too
        return f"h_y_bits = {h_y!r} for {len(classes) if classes else 10} classes"
    columns = [(f"history[{k!r}]", k, v) for k, v in record["history"].items()]
    columns += [(f"final[{s!r}][{k!r}]", k, [v]) for s, m in record["final"].items() if isinstance(m, dict)
                for k, v in m.items()]
    columns += [(f"eval_noise[{k!r}]", k, v) for k, v in record["eval_noise"].items() if k != "draws"]
    said, stored = record["eval_noise"].get("draws"), len(record["eval_noise"]["avg_err"])
    if said != stored:
        return f"eval_noise: {said!r} draws said, {stored} stored"
    for where, key, values in columns:
        if not isinstance(values, list):
            return f"{where} is a {type(values).__name__}, not a list of numbers"
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                return f"{where} holds {v!r}"
            if (key.endswith(("err", "acc")) and not 0.0 <= v <= 1.0) \
                    or (key.endswith(("izx", "_bits", "seconds", "lr")) and v < 0.0) \
                    or (key.endswith("izy") and v > h_y + 1e-6):
                return f"{where} = {v!r}"
    return None


def load_experiment(results_dir: str | Path, experiment: str, epochs: int | None = None) -> list[dict]:
    """Every run of one experiment under one protocol, checked complete; ResultsError (one line) otherwise.

    Args:
        results_dir: the results folder.
        experiment: a name of :data:`EXPERIMENTS`.
        epochs: the protocol to read; None reads the longest one stored complete (a longer protocol still being
            trained, run by run, does not hide a complete shorter one).
    Returns:
        The records, sorted by run name.
    """
    if experiment not in EXPERIMENTS:
        raise ResultsError(f"unknown experiment {experiment!r}: use one of {', '.join(EXPERIMENTS)}")
    folder = Path(results_dir) / experiment
    records = [load_results(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    if not records:
        raise ResultsError(f"no results for {experiment!r} in {folder}: run python -m vibtools reproduce "
                           f"{experiment}")
    stored = sorted({r["protocol"]["epochs"] for r in records}, reverse=True)
    if epochs is None:
        complete = [e for e in stored if not _missing(records, experiment, e)]
        epochs = complete[0] if complete else stored[0]
    expected = {run_name(c) for c in EXPERIMENTS[experiment].runs(epochs)}
    missing = _missing(records, experiment, epochs)
    if missing:
        raise ResultsError(f"{folder} holds {len(expected) - len(missing)} of the {len(expected)} runs of the "
                           f"{epochs}-epoch protocol (missing {missing[0]}, ...): run python -m vibtools reproduce "
                           f"{experiment} --epochs {epochs}")
    return [r for r in records if r["protocol"]["epochs"] == epochs and r["run"] in expected]


def _missing(records: list[dict], experiment: str, epochs: int) -> list[str]:
    """The run names of one protocol that ``records`` lack, sorted."""
    have = {r["run"] for r in records if r["protocol"]["epochs"] == epochs}
    return sorted({run_name(c) for c in EXPERIMENTS[experiment].runs(epochs)} - have)


def load_protocol_runs(results_dir: str | Path, experiment: str, epochs: int) -> list[dict]:
    """The runs of one protocol stored so far, complete or not (a protocol being trained run by run); may be []."""
    if experiment not in EXPERIMENTS:
        raise ResultsError(f"unknown experiment {experiment!r}: use one of {', '.join(EXPERIMENTS)}")
    folder = Path(results_dir) / experiment
    return [r for r in (load_results(p) for p in sorted(folder.glob(f"*-e{epochs}-*.json")))
            if r["protocol"]["epochs"] == epochs] if folder.is_dir() else []


def summarize(records: Sequence[dict], key: str = "avg_err") -> dict:
    """A test error over training seeds: each run's value is its mean over the evaluation-noise draws.

    Returns:
        n_seeds; mean and sd_seeds (the spread over seeds, which contains what is left of the evaluation noise);
        sd_noise, the typical sd of one evaluation-noise draw of one trained model (NaN where undefined).
    """
    per_run = [statistics.mean(r["eval_noise"][key]) for r in records]
    noise = [statistics.stdev(r["eval_noise"][key]) for r in records if len(r["eval_noise"][key]) > 1]
    return {"n_seeds": len(per_run), "mean": statistics.mean(per_run),
            "sd_seeds": statistics.stdev(per_run) if len(per_run) > 1 else math.nan,
            "sd_noise": statistics.mean(noise) if noise else math.nan}


def reproduce(names: Sequence[str], data: MNISTTensors, *, epochs: int = PAPER_EPOCHS, device=None,
              results_dir: str | Path = "results", cache=True, progress: bool = True,
              on_group: Callable[[str, int, int, list[str]], None] | None = None,
              overrides: dict | None = None, compile: bool | str = False,
              only: Sequence[str] | None = None, max_pass: int = PASS_MODEL_EPOCHS,
              fashion: MNISTTensors | None = None) -> list[Path]:
    """Train the named experiments (what is missing), resume interrupted runs, and write their results files.

    Runs are trained in each experiment's priority order, in stacked passes of at most
    :data:`PASS_MODEL_EPOCHS` model-epochs (:func:`plan_passes`); each pass writes its runs' results files as
    soon as it ends, so an interrupted ``reproduce`` keeps every finished pass and resumes the one it was in.

    Args:
        names: experiment names (:data:`EXPERIMENTS`).
        data: the MNIST tensors.
        epochs: training epochs of every run (the paper's 200 by default).
        device, cache, progress: as in :func:`vibtools.train_sweep`.
        results_dir: where ``<experiment>/<run>.json`` files go.
        on_group: called before each pass that trains with (experiment, pass index, number of passes, run names).
        overrides: config fields set on every run (small networks for tests: ``{"hidden": 32}``).
        compile: as in :func:`vibtools.train_sweep` ("reduce-overhead" captures CUDA graphs on a GPU).
        only: shell patterns of run names to train (``["vib-*", "deterministic-*"]``); None trains all.
        max_pass: at most this many model-epochs per stacked pass (a GPU takes larger ones).
        fashion: Fashion-MNIST (:func:`vibtools.data.load_fashion_mnist`), the far OOD set of the uncertainty
            experiments; needed only by them.
    Returns:
        The results files written.
    """
    from .training import train_sweep

    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment {unknown[0]!r}: use one of {', '.join(EXPERIMENTS)}")
    chosen = select_across({name: [c.with_(**(overrides or {})) for c in EXPERIMENTS[name].runs(epochs)]
                            for name in names}, only)  # every pattern is checked before any work
    for name in names:
        if EXPERIMENTS[name].needs_fashion and fashion is None:
            raise ValueError(f"experiment {name!r} tests against Fashion-MNIST: pass fashion=load_fashion_mnist()")
    written = []
    for name, configs in chosen.items():
        classes = EXPERIMENTS[name].classes
        exp_data = data if classes is None else data.only_classes(classes)
        fingerprint = exp_data.fingerprint()
        passes = plan_passes(configs, max_pass)
        ood = None  # the experiment's OOD sets, made once, when its first pass has trained
        for g, group in enumerate(passes):
            paths = [Path(results_dir) / name / f"{run_name(c)}.json" for c in group]
            for path in paths:  # a write killed mid-way (SIGKILL) left its temporary file in the results folder
                remove_stale_tmp(path)
            todo = [c for c, path in zip(group, paths)
                    if not _stored(path, c, fingerprint) and not _reused(path, c, fingerprint, name)]
            if not todo:  # every run of this pass has its results file: nothing to train
                continue
            if on_group is not None:
                on_group(name, g, len(passes), [run_name(c) for c in todo])
            results = train_sweep(todo, exp_data, device=device, cache=cache, progress=progress, compile=compile)
            exp_data = exp_data.to(results[0].ema_model.dec_weight.device)  # evaluate where the models are
            if ood is None and EXPERIMENTS[name].uncertainty:
                ood = ood_for(name, data.to(exp_data.device), fashion)
            for r in results:
                path = Path(results_dir) / name / f"{run_name(r.config)}.json"
                save_json(path, result_record(r, exp_data, name, epochs, ood))
                written.append(path)
    return written


def _reused(path: Path, config: TrainConfig, fingerprint: str, experiment: str) -> bool:
    """Write this run's record from another experiment's record of the same run, if one is stored; True if so.

    One run can belong to two experiments: the beta sweep's K=256 run at beta=1e-3 is Table 1's VIB run, config for
    config. Its record is copied under this experiment's name, with ``reused_from`` naming the original, rather
    than trained twice. Only between experiments whose records hold the same fields (same classes, neither with
    the uncertainty numbers).
    """
    here = EXPERIMENTS[experiment]
    if here.uncertainty:
        return False
    for name, other in EXPERIMENTS.items():
        source = path.parents[1] / name / path.name
        if name == experiment or other.uncertainty or other.classes != here.classes or not source.is_file():
            continue
        if not any(c == config for c in other.runs(config.epochs)):
            continue
        with warnings.catch_warnings():  # a damaged or other-data source is simply not reused
            warnings.simplefilter("ignore")
            if not _stored(source, config, fingerprint):
                continue
        record = {k: v for k, v in load_results(source).items() if k != "checksum"}
        save_json(path, sealed({**record, "experiment": experiment, "reused_from": f"{name}/{path.name}"}))
        return True
    return False


def _stored(path: Path, config: TrainConfig, fingerprint: str) -> bool:
    """True when ``path`` holds a valid results file of exactly this run on this data.

    A damaged file, or one made with another config or on other data, is reported in one line and remade.
    """
    if not path.exists():
        return False
    if path.is_dir():  # a folder cannot be replaced by a results file: say so before any training
        raise ValueError(f"{path} is a folder where this run's results file goes: move it away")
    try:
        record = load_results(path)
    except ResultsError as exc:
        warnings.warn(f"remaking {path.name}: {exc}", stacklevel=3)
        return False
    made_on = record["data"]["fingerprint"]  # load_results checked it
    if record["config"] != config.as_dict():
        differ = sorted(k for k in config.as_dict() if record["config"].get(k) != config.as_dict()[k])
        warnings.warn(f"remaking {path.name}: it was made with another config (differs in {', '.join(differ)})",
                      stacklevel=3)
        return False
    if made_on != fingerprint:
        warnings.warn(f"remaking {path.name}: it was made on other data (fingerprint {made_on[:12]}..., these "
                      f"images {fingerprint[:12]}...)", stacklevel=3)
        return False
    return True
