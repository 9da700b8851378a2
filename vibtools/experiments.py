"""The paper's experiments: which runs each one is, in the order they are trained, and their names.

Torch-free (configs only), so that ``python -m vibtools reproduce --list`` and every argument error answer before
torch is imported. :mod:`vibtools.reproduce` trains them and writes their results files.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .baselines import model_config, model_name
from .config import TrainConfig, sweep_shared_fields

PAPER_EPOCHS = 200  # the paper's protocol (Alemi et al. 2017, section 4.1)
SEEDS = (0, 1, 2)
POWER_SEEDS = (3, 4)  # more seeds of VIB and the deterministic net at the paper's protocol: does VIB regularize?
K2_BETA_EFF = (0.5, math.log(2))  # K=2 at beta 1/2 and ln 2: is the paper's beta=1 an effective beta below 1?
PAPER_LR = 1e-3  # the learning rate section 4.1.1 of the paper states (the authors' code, and ours, uses 1e-4)
LR_SEEDS = (0,)
# at most this many model-epochs per stacked pass: two 200-epoch models, 2 to 3.5 h in the CPU lanes (results/)
PASS_MODEL_EPOCHS = 400


def batch_order(epochs: int, seed: int) -> int:
    """The ``data_seed`` of a run of an experiment: its own seed under the paper's protocol, else 0.

    Under the paper's protocol (:data:`PAPER_EPOCHS`) training seeds differ in initialization, noise *and* batch
    order, so the spread over seeds contains all three. The shorter CPU protocols (10 and 20 epochs, and the
    book's quick mode) were made with one shared batch order (``data_seed=0``) and keep it, so that their stored
    results and cached runs stay what they are: their spread over seeds leaves batch order out.
    """
    return seed if epochs >= PAPER_EPOCHS else 0


@dataclass(frozen=True)
class Experiment:
    """A named set of runs, listed in the order they are trained (what decides the most comes first)."""

    name: str
    description: str
    runs: Callable[[int], list[TrainConfig]]  # epochs -> configs, in priority order
    classes: tuple[int, ...] | None = None  # train and test on these digits only (None: all ten)
    uncertainty: bool = False  # records also hold calibration and OOD detection (vibtools.uncertainty)
    train_subset: int | None = None  # train on the first this many training images only (None: all 60 000)
    random_labels: bool = False  # replace those images' labels by uniformly random classes (test labels stay true)

    def data_for(self, data):
        """The experiment's data from full MNIST (:class:`vibtools.data.MNISTTensors`): its classes, its training
        subset, its labels."""
        if self.classes is not None:
            data = data.only_classes(self.classes)
        if self.train_subset is not None:
            data = data.subset(self.train_subset, None)
        return data.random_labels(LABEL_SEED) if self.random_labels else data

    @property
    def needs_fashion(self) -> bool:
        """True when its uncertainty numbers test against Fashion-MNIST (all but a held-out-class experiment)."""
        return self.uncertainty and self.classes is None


def _table1(epochs: int) -> list[TrainConfig]:
    """VIB (K=256, beta=1e-3) and the deterministic net seed by seed, then dropout, label smoothing, confidence;
    under the paper's protocol, then seeds 3 and 4 of VIB and the deterministic net (:data:`POWER_SEEDS`)."""
    power = POWER_SEEDS if epochs >= PAPER_EPOCHS else ()
    return [model_config(name, epochs=epochs, seed=s, data_seed=batch_order(epochs, s))
            for names, seeds in ((("vib", "deterministic"), SEEDS),
                                 (("dropout", "label-smoothing", "confidence-penalty"), SEEDS),
                                 (("vib", "deterministic"), power))
            for s in seeds for name in names]


def _k2(epochs: int) -> list[TrainConfig]:
    """K=2 with the paper's full-covariance encoder: beta 1e-1 and 1 seed by seed first, then 1e-3 and 1e-2;
    under the paper's protocol, then seed 0 at the effective betas of :data:`K2_BETA_EFF`."""
    eff = K2_BETA_EFF if epochs >= PAPER_EPOCHS else ()
    return [TrainConfig(beta=b, k=2, covariance="full", epochs=epochs, seed=s, data_seed=batch_order(epochs, s))
            for betas, seeds in (((1e-1, 1.0), SEEDS), ((1e-3, 1e-2), SEEDS), (eff, (0,)))
            for s in seeds for b in betas]


def _learning_rate(epochs: int) -> list[TrainConfig]:
    """VIB (K=256, beta=1e-3) and the deterministic net at the paper's stated learning rate, seed 0: a test of
    whether the stated rate comes closer to the paper's numbers (seeds 1 and 2 join if it does)."""
    return [model_config(name, epochs=epochs, seed=s, data_seed=batch_order(epochs, s), lr=PAPER_LR)
            for s in LR_SEEDS for name in ("vib", "deterministic")]


def _beta_sweep(epochs: int) -> list[TrainConfig]:
    """The information-plane grid: K=256, beta = 1e-9 ... 1 (ten values), three seeds, seed by seed."""
    return [TrainConfig(beta=10.0 ** e, epochs=epochs, seed=s, data_seed=batch_order(epochs, s))
            for s in SEEDS for e in range(-9, 1)]


def _held_out_digits(epochs: int) -> list[TrainConfig]:
    """The deterministic net, then VIB at beta 1e-3 and 1e-2 (trained on digits 0-4 only), three seeds each."""
    return [model_config("deterministic", epochs=epochs, seed=s, data_seed=batch_order(epochs, s)) if b is None
            else TrainConfig(beta=b, epochs=epochs, seed=s, data_seed=batch_order(epochs, s))
            for b in (None, 1e-3, 1e-2) for s in SEEDS]


def _learned_marginal(epochs: int) -> list[TrainConfig]:
    """K=256 VIB whose marginal r(z) is a learned mixture of 10 Gaussians, beta 1e-3 and 1e-2, seed by seed."""
    return [TrainConfig(beta=b, mixture=MIXTURE, epochs=epochs, seed=s, data_seed=batch_order(epochs, s))
            for s in SEEDS for b in (1e-3, 1e-2)]


def _uncertainty(epochs: int) -> list[TrainConfig]:
    """The deterministic net and dropout, then K=256 VIB at beta 1e-4 ... 1e-1 (the beta sweep's runs), 3 seeds."""
    baselines = [model_config(name, epochs=epochs, seed=s, data_seed=batch_order(epochs, s))
                 for s in SEEDS for name in ("deterministic", "dropout")]
    return baselines + [TrainConfig(beta=b, epochs=epochs, seed=s, data_seed=batch_order(epochs, s))
                        for s in SEEDS for b in UNCERTAINTY_BETAS]


def _ceb(epochs: int) -> list[TrainConfig]:
    """The Conditional Entropy Bottleneck (K=256, unit-variance encoder, learned b(z|y)) at :data:`CEB_BETAS`,
    seed by seed."""
    return [TrainConfig(beta=b, covariance="unit", bottleneck="ceb", epochs=epochs, seed=s,
                        data_seed=batch_order(epochs, s)) for s in SEEDS for b in CEB_BETAS]


def _memorization(epochs: int) -> list[TrainConfig]:
    """The models of the random-label test, seed by seed: the deterministic net and dropout, VIB at
    :data:`MEMORIZATION_BETAS`, CEB at :data:`MEMORIZATION_CEB_BETAS`. Seeds differ in initialization, noise and
    batch order (``data_seed = seed``)."""
    out = []
    for s in SEEDS:
        out += [model_config(name, epochs=epochs, seed=s, data_seed=s) for name in ("deterministic", "dropout")]
        out += [TrainConfig(beta=b, epochs=epochs, seed=s, data_seed=s) for b in MEMORIZATION_BETAS]
        out += [TrainConfig(beta=b, covariance="unit", bottleneck="ceb", epochs=epochs, seed=s, data_seed=s)
                for b in MEMORIZATION_CEB_BETAS]
    return out


MIXTURE = 10  # components of the learned marginal
CEB_BETAS = (1e-3, 1e-2, 1e-1, 1.0)
# The random-label test (Zhang et al. 2017): the first MEMORIZATION_TRAIN training images, their labels random, for
# MEMORIZATION_EPOCHS epochs: the deterministic net's running training error on them falls below 0.2% by epoch 100
# (seed 0, measured with this recipe), so every model has had the steps it needs to memorize, if it can.
MEMORIZATION_TRAIN = 5000
MEMORIZATION_EPOCHS = 100
MEMORIZATION_BETAS = (1e-4, 1e-3, 1e-2, 1e-1)
MEMORIZATION_CEB_BETAS = (1e-2, 1.0)
LABEL_SEED = 0  # the random labels: one draw, the same for every model and seed
UNCERTAINTY_BETAS = (1e-4, 1e-3, 1e-2, 1e-1)
HELD_OUT_TRAIN = (0, 1, 2, 3, 4)  # the digits the held-out-class models see; 5-9 are their near-OOD test

EXPERIMENTS = {e.name: e for e in (
    Experiment("table1", "VIB K=256 beta=1e-3 and the four baselines of the paper's Table 1, 3 seeds (VIB and "
               "the deterministic net: 5 at 200 epochs)", _table1),
    Experiment("k2", "K=2 full-covariance VIB at beta 1e-3, 1e-2, 1e-1, 1, 3 seeds (at 200 epochs also "
               "beta 0.5 and ln 2, seed 0)", _k2),
    Experiment("beta-sweep", "K=256 VIB at beta 1e-9 ... 1 (the information plane), 3 seeds", _beta_sweep),
    Experiment("uncertainty", "calibration and out-of-distribution detection of the deterministic net, dropout "
               "and K=256 VIB at beta 1e-4 ... 1e-1, 3 seeds", _uncertainty, uncertainty=True),
    Experiment("held-out-digits", "trained on digits 0-4 only, tested on 5-9 as unseen classes: the deterministic "
               "net and K=256 VIB at beta 1e-3 and 1e-2, 3 seeds", _held_out_digits, classes=HELD_OUT_TRAIN,
               uncertainty=True),
    Experiment("learned-marginal", f"K=256 VIB with a learned {MIXTURE}-component mixture marginal r(z), beta "
               "1e-3 and 1e-2, 3 seeds", _learned_marginal, uncertainty=True),
    Experiment("ceb", "the Conditional Entropy Bottleneck, K=256 with a unit-variance encoder, beta "
               f"{', '.join(f'{b:g}' for b in CEB_BETAS)}, 3 seeds", _ceb, uncertainty=True),
    Experiment("random-labels", f"the random-label test: the first {MEMORIZATION_TRAIN} training images with random "
               f"labels; the deterministic net, dropout, VIB at beta "
               f"{', '.join(f'{b:g}' for b in MEMORIZATION_BETAS)}, CEB at beta "
               f"{', '.join(f'{b:g}' for b in MEMORIZATION_CEB_BETAS)}, 3 seeds (protocol: "
               f"{MEMORIZATION_EPOCHS} epochs)", _memorization, train_subset=MEMORIZATION_TRAIN, random_labels=True),
    Experiment("true-labels-5k", f"the random-label test's control: the same models on the same "
               f"{MEMORIZATION_TRAIN} images with their true labels, 3 seeds (protocol: {MEMORIZATION_EPOCHS} "
               "epochs)", _memorization, train_subset=MEMORIZATION_TRAIN),
    Experiment("learning-rate", f"VIB K=256 beta=1e-3 and the deterministic net at the learning rate the paper "
               f"states ({PAPER_LR:g}; the recipe's is 1e-4), seed 0", _learning_rate),
)}


def plan_passes(configs: Sequence[TrainConfig], max_model_epochs: int = PASS_MODEL_EPOCHS) -> list[list[TrainConfig]]:
    """Split configs, in order, into stacked passes: consecutive runs that can share one pass (same shape, batch
    order and recipe), at most ``max_model_epochs`` model-epochs each, so that results land pass by pass."""
    passes: list[list[TrainConfig]] = []
    for c in configs:
        if passes and _pass_key(passes[-1][0]) == _pass_key(c) and (len(passes[-1]) + 1) * c.epochs <= max_model_epochs:
            passes[-1].append(c)
        else:
            passes.append([c])
    return passes


def _pass_key(c: TrainConfig) -> tuple:
    """What every model of one stacked pass shares."""
    return tuple(getattr(c, name) for name in sweep_shared_fields())


def select(configs: Sequence[TrainConfig], only: Sequence[str] | None) -> list[TrainConfig]:
    """The configs whose run name matches one of the shell patterns in ``only`` (all when ``only`` is empty).

    Raises:
        ValueError: a pattern that matches none of them (a typo would otherwise train nothing, silently).
    """
    if not only:
        return list(configs)
    names = [run_name(c) for c in configs]
    for pattern in only:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise ValueError(f"--only {pattern!r} matches no run (runs are named like {names[0]!r}); "
                             f"see python -m vibtools reproduce --list")
    return [c for c, n in zip(configs, names) if any(fnmatch.fnmatchcase(n, p) for p in only)]


def select_across(configs: dict[str, Sequence[TrainConfig]], only: Sequence[str] | None) -> dict[str, list]:
    """:func:`select` over several experiments at once: each pattern has to match a run of one of them, not of
    each (``reproduce table1 k2 --only 'vib-*,deterministic-*'`` is not refused although k2 has no deterministic
    run: it takes the VIB runs of both and the deterministic runs of table1).

    Args:
        configs: experiment name -> its runs.
        only: shell patterns of run names; None or empty selects every run.
    Raises:
        ValueError: a pattern that matches no run of any of them.
    """
    if not only:
        return {name: list(cs) for name, cs in configs.items()}
    names = {name: [run_name(c) for c in cs] for name, cs in configs.items()}
    for pattern in only:
        if not any(fnmatch.fnmatchcase(n, pattern) for ns in names.values() for n in ns):
            example = next((ns[0] for ns in names.values() if ns), "?")
            raise ValueError(f"--only {pattern!r} matches no run of {', '.join(configs)} (runs are named like "
                             f"{example!r}); see python -m vibtools reproduce --list")
    return {name: [c for c, n in zip(cs, names[name]) if any(fnmatch.fnmatchcase(n, p) for p in only)]
            for name, cs in configs.items()}


def run_name(c: TrainConfig) -> str:
    """A results file's name: model, beta for VIB, K, epochs and seed ("vib-beta0.001-k256-e200-seed0"); a
    learning rate other than the recipe's is named too ("deterministic-lr0.001-k256-e200-seed0")."""
    name = model_name(c)
    beta = f"-beta{c.beta:g}" if name in ("vib", "ceb", "custom") else ""
    marginal = f"-mog{c.mixture}" if c.mixture else ""
    marginal += "-unit" if name == "vib" and c.covariance == "unit" else ""  # VIB with CEB's encoder
    lr = f"-lr{c.lr:g}" if c.lr != TrainConfig.lr else ""
    return f"{name}{beta}{marginal}{lr}-k{c.k}-e{c.epochs}-seed{c.seed}"
