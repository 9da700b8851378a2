"""Sealed results records: how vibtools seals them, and the one place that reads them back.

Every record ``reproduce`` and ``attack-study`` write is a JSON object with a ``format``, the ``code`` that made
it and a ``checksum`` (SHA-256 of its canonical JSON without the checksum), so that an edit by hand shows. This
module reads them with every check a reader relies on (:func:`load_results` for training records,
:func:`load_sealed` for the other formats) and imports no torch: ``vibtools.results``, which the book's pages use,
reads every committed record without it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .baselines import model_name
from .config import RESULTS_VERSION, TrainConfig
from .experiments import EXPERIMENTS, LABEL_SEED, run_name
from .jsonio import StoredJSONError, read_json

FORMAT = "vibtools-results"


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
    if record["experiment"] in EXPERIMENTS:
        exp = EXPERIMENTS[record["experiment"]]
        labels = record["data"].get("random_labels")
        if (labels is not None) != exp.random_labels or (labels is not None and labels != {"seed": LABEL_SEED}) or (
                exp.train_subset is not None and not 0 < record["data"].get("n_train", 0) <= exp.train_subset):
            raise ResultsError(f"{path} was made on other training data than its experiment "
                               f"{record['experiment']!r} uses ({exp.description}): rerun python -m vibtools "
                               f"reproduce {record['experiment']} to remake it")
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


def load_sealed(path: str | Path, fmt: str, command: str) -> dict:
    """One sealed record of format ``fmt`` (an attack-study record, ...), checked: readable, its format, its
    checksum, and a ``run`` that is its file's name. ResultsError in one line otherwise, naming ``command``, which
    remakes it."""
    path = Path(path)
    try:
        rec = read_json(path)
    except StoredJSONError as exc:
        raise ResultsError(f"{path} is not a readable {fmt} record (it {exc}); rerun {command} to rewrite it") \
            from None
    if not isinstance(rec, dict) or rec.get("format") != fmt:
        raise ResultsError(f"{path} is not a {fmt} record")
    if rec.get("checksum") != record_checksum(rec):
        raise ResultsError(f"{path} does not match its checksum (edited or damaged); rerun {command} to remake it")
    if rec.get("run") != path.stem:
        raise ResultsError(f"{path} holds the run {rec.get('run')!r}, not {path.stem!r}")
    return rec
