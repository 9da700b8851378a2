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

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .baselines import model_name
from .config import TrainConfig
from .data import MNISTTensors
from .evaluation import evaluate
from .experiments import EXPERIMENTS, LABEL_SEED, PAPER_EPOCHS, PASS_MODEL_EPOCHS, plan_passes, run_name, select_across
from .records import (  # noqa: F401  (re-exported: readers written before records.py import them from here)
    FORMAT,
    ResultsError,
    code_version,
    h_y_bits,
    load_experiment,
    load_protocol_runs,
    load_results,
    record_checksum,
    sealed,
    summarize,
)
from .store import RESULTS_VERSION, remove_stale_tmp, save_json

NOISE_DRAWS = 5  # draws of the evaluation noise per run (each on the whole test set)
N_EMBED = 1000  # test images whose K=2 posteriors are stored
MI_DRAWS = 2  # independent draws of the codes for the I(Z;X) bounds on the test set
N_OOD = 10_000  # images of each out-of-distribution set
UNCERTAINTY_SEED = 3000  # seed of the evaluation noise of the uncertainty numbers
RATE_EDGES = [10 ** (e / 10) for e in range(-20, 61)]  # log-spaced bins of R(x) in bits, 1e-2 ... 1e6


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


def data_record(data: MNISTTensors, classes: Sequence[int] | None = None, random_labels: bool = False) -> dict:
    """What a results record says of the data it was made on: the images' fingerprint, the set sizes, the
    digits kept when an experiment trains on some classes only, and the seed of random training labels."""
    record = {"fingerprint": data.fingerprint(), "n_train": len(data.train_x), "n_test": len(data.test_x)}
    if classes is not None:
        record["classes"] = list(classes)
    if random_labels:
        record["random_labels"] = {"seed": LABEL_SEED}
    return record


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
    exp = EXPERIMENTS[experiment]
    record = {"format": FORMAT, "results_version": RESULTS_VERSION, "experiment": experiment,
              "run": run_name(result.config), "model": model_name(result.config), "protocol": {"epochs": epochs},
              "config": result.config.as_dict(), "data": data_record(data, exp.classes, exp.random_labels),
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
        exp_data = EXPERIMENTS[name].data_for(data)
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
    than trained twice. Only between experiments whose records hold the same fields (same classes, training
    images and labels, neither with the uncertainty numbers).
    """
    here = EXPERIMENTS[experiment]
    if here.uncertainty:
        return False
    for name, other in EXPERIMENTS.items():
        source = path.parents[1] / name / path.name
        same_data = (other.classes, other.train_subset, other.random_labels) == (here.classes, here.train_subset,
                                                                                    here.random_labels)
        if name == experiment or other.uncertainty or not same_data or not source.is_file():
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
