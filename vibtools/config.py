"""A run's settings: the reference notebook's recipe as a validated, normalised, frozen dataclass; and the package's
checks of user input (integers, numbers, folders), each failing with one line."""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

# The version of the numbers a run produces. Bump it whenever training or evaluation numerics change: stored runs
# of another version are never served (the run-cache key includes it). tests/test_results_version.py fails when
# the training trajectory changes while this stays the same.
RESULTS_VERSION = 2

# q(z|x): diagonal (the paper's K=256 encoder), full (its K=2 encoder), unit (N(mu(x), I), CEB's common form),
# none (z = mu: the deterministic baseline)
COVARIANCES = ("diag", "full", "unit", "none")
# the objective's information term: "vib" is KL(q(z|x) || r(z)), a bound on I(Z;X) (Alemi et al. 2017); "ceb" is
# KL(q(z|x) || b(z|y)) with a learned class-conditional b(z|y) = N(mu_y, I), a bound on the residual information
# I(X;Z|Y) of the Conditional Entropy Bottleneck (Fischer 2020)
BOTTLENECKS = ("vib", "ceb")
CEB_COVARIANCES = ("unit",)  # CEB's common form (Fischer 2020); run names carry no covariance
MAX_EPOCHS = 100_000  # far beyond any protocol; a larger number is a typo, not a plan
MAX_SEED = 2**32 - 1  # streams derived from a seed use salted_seed(seed, salt), which must stay below 2**63
EVAL_CHUNK = 2000  # examples per evaluation batch (evaluation, attacks, and the memory estimate of vibtools.store)
# the fields the models of one stacked sweep may differ in: the loss settings and the seed
PER_MODEL = ("beta", "seed", "dropout", "label_smoothing", "confidence_penalty")
KEY_OMITS_AT_ZERO = ("dropout", "label_smoothing", "confidence_penalty")  # left out of the run key at 0
# options newer than every stored record: left out of as_dict (records, run keys) at their default, so that what
# was stored before they existed keeps its keys and still matches its config
OMITTED_AT_DEFAULT = {"mixture": 0, "encoder": "mlp", "bottleneck": "vib"}
MAX_MIXTURE = 1000


def salted_seed(seed: int, salt: int) -> int:
    """The seed of a random stream derived from a run's seed (evaluation noise of an epoch, dropout masks)."""
    return int(seed) * 1_000_003 + salt


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run's result; the defaults are the reference notebook's recipe."""

    beta: float = 1e-3
    k: int = 256
    epochs: int = 10
    seed: int = 0
    data_seed: int | None = None  # batch order; None uses ``seed``. A sweep shares one batch order.
    batch_size: int = 100
    lr: float = 1e-4
    adam_betas: tuple[float, float] = (0.5, 0.999)
    decay_rate: float = 0.97
    decay_epochs: int = 2
    ema_decay: float = 0.999
    covariance: str = "diag"  # "diag" (reference), "full" (paper's K=2 encoder), "none" (deterministic)
    hidden: int = 1024
    n_eval_samples: int = 12
    # the regularizers of the paper's Table 1 baselines (all off for VIB): see vibtools.baselines
    dropout: float = 0.0  # rate of dropout on the two hidden layers while training
    label_smoothing: float = 0.0  # epsilon: train against (1 - eps) one-hot + eps / classes
    confidence_penalty: float = 0.0  # weight of the bonus on the entropy of q(y|z), in bits
    # the marginal r(z): 0 is the paper's fixed N(0, I); C > 0 learns a mixture of C diagonal Gaussians with the
    # network (diagonal encoders only), and the info loss becomes a one-sample Monte Carlo estimate of the KL
    mixture: int = 0
    # the encoder: "mlp" is the paper's 784-1024-1024 network; another name is one registered with
    # vibtools.model.register_encoder (the extension point for, e.g., a convolutional encoder)
    encoder: str = "mlp"
    # the information term (see BOTTLENECKS): "ceb" trains the Conditional Entropy Bottleneck, beta * I(X;Z|Y) bound
    # plus the class loss, with the backward encoder b(z|y) learned beside the network
    bottleneck: str = "vib"

    def __post_init__(self):
        """Validate, then normalise the numbers."""
        check_config(self)
        # Normalise, so that equal runs compare and hash equal: 1 and 1.0, -0.0 and 0.0, lists and tuples.
        for name in ("k", "epochs", "seed", "batch_size", "decay_epochs", "hidden", "n_eval_samples", "mixture"):
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.data_seed is not None:
            object.__setattr__(self, "data_seed", int(self.data_seed))
        for name in ("beta", "lr", "decay_rate", "ema_decay", "dropout", "label_smoothing", "confidence_penalty"):
            object.__setattr__(self, name, float(getattr(self, name)) + 0.0)
        object.__setattr__(self, "adam_betas", tuple(float(b) + 0.0 for b in self.adam_betas))

    def with_(self, **changes) -> TrainConfig:
        """A copy with some fields changed."""
        return TrainConfig(**{**asdict(self), **changes})

    def as_dict(self) -> dict:
        """The config as JSON-friendly plain types."""
        d = asdict(self)
        d["adam_betas"] = list(d["adam_betas"])
        for name, default in OMITTED_AT_DEFAULT.items():
            if d[name] == default:
                del d[name]
        return d

    def key_dict(self) -> dict:
        """What identifies the run's result: :meth:`as_dict` with the batch order resolved (``data_seed``).

        Regularizers left at 0 are left out, so that runs stored before these options existed keep their keys.
        """
        d = self.as_dict()
        d["data_seed"] = self.batch_seed
        for name in KEY_OMITS_AT_ZERO:
            if d[name] == 0.0:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The config stored by :meth:`as_dict` or :meth:`key_dict` (unknown keys are an error)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown config fields {unknown}")
        return cls(**{k: tuple(v) if k == "adam_betas" else v for k, v in d.items()})

    @property
    def batch_seed(self) -> int:
        """The seed of the batch order: ``data_seed``, or ``seed`` when that is None."""
        return self.seed if self.data_seed is None else self.data_seed


def sweep_shared_fields() -> tuple[str, ...]:
    """The fields every model of one stacked sweep must share: all but :data:`PER_MODEL` (and the batch order)."""
    return tuple(f.name for f in fields(TrainConfig) if f.name not in PER_MODEL + ("data_seed",)) + ("batch_seed",)


def check_int(name: str, v, low: int = 1, high: int | None = None) -> int:
    """``v`` when it is an integer (not a bool) in [low, high]; else ValueError in one line naming ``name``.

    The package's one integer check: configs, training options, attacks, evaluation and the command line use it.
    """
    if not (isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low and (high is None or v <= high)):
        span = f">= {low}" if high is None else f"from {low} to {high}"
        raise ValueError(f"{name} must be an integer {span}, got {v!r}")
    return v


def check_number(name: str, v, low: float = 0.0, high: float | None = None, *, low_open: bool = False,
                 high_open: bool = True) -> float:
    """``v`` when it is a finite real (not a bool) in the interval from ``low`` to ``high`` (None: no upper end;
    each end open or closed); else ValueError in one line naming ``name``. The package's one number check."""
    inside = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
    inside = inside and (v > low if low_open else v >= low)
    inside = inside and (high is None or (v < high if high_open else v <= high))
    if not inside:
        span = (f"{'>' if low_open else '>='} {low:g}" if high is None else
                f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}")
        raise ValueError(f"{name} must be a finite number {span}, got {v!r}")
    return v


def check_config(c: TrainConfig) -> None:
    """Raise ValueError with a one-line message naming the first config value that is out of range."""
    check_number("beta", c.beta)
    for name in ("k", "batch_size", "decay_epochs", "hidden", "n_eval_samples"):
        check_int(name, getattr(c, name))
    check_int("epochs", c.epochs, 1, MAX_EPOCHS)
    check_int("seed", c.seed, 0, MAX_SEED)
    if c.data_seed is not None:
        check_int("data_seed", c.data_seed, 0, MAX_SEED)
    check_number("lr", c.lr, low_open=True)
    if not (isinstance(c.adam_betas, (tuple, list)) and len(c.adam_betas) == 2):
        raise ValueError(f"adam_betas must be two numbers in [0, 1), got {c.adam_betas!r}")
    for b in c.adam_betas:
        check_number("adam_betas", b, 0, 1)
    check_number("decay_rate", c.decay_rate, 0, 1, low_open=True, high_open=False)
    for name in ("ema_decay", "dropout", "label_smoothing"):
        check_number(name, getattr(c, name), 0, 1)
    check_number("confidence_penalty", c.confidence_penalty)
    if c.covariance not in COVARIANCES:
        raise ValueError(f"covariance must be one of {', '.join(COVARIANCES)}, got {c.covariance!r}")
    check_int("mixture", c.mixture, 0, MAX_MIXTURE)
    if not isinstance(c.encoder, str) or not c.encoder:
        raise ValueError(f"encoder must be the name of an encoder ('mlp', or one registered with "
                         f"vibtools.model.register_encoder), got {c.encoder!r}")
    if c.encoder != "mlp" and c.dropout:
        raise ValueError(f"dropout masks the MLP encoder's hidden layers, which the encoder {c.encoder!r} does not "
                         f"have: use dropout=0")
    if c.bottleneck not in BOTTLENECKS:
        raise ValueError(f"bottleneck must be one of {', '.join(BOTTLENECKS)}, got {c.bottleneck!r}")
    if c.bottleneck == "ceb" and (c.covariance not in CEB_COVARIANCES or c.mixture):
        raise ValueError(f"bottleneck='ceb' needs covariance='unit' (the encoder N(mu(x), I)) and no learned "
                         f"marginal (its marginal is b(z|y)); got covariance={c.covariance!r}, mixture={c.mixture}")
    if c.mixture and c.covariance != "diag":
        raise ValueError(f"mixture (a learned marginal) needs covariance='diag', got {c.covariance!r}; "
                         f"use mixture=0 for the fixed N(0, I)")


def user_path(text: str | os.PathLike, what: str) -> Path:
    """A folder the user named, ``~`` expanded; ValueError in one line for what no folder can be.

    Refused: an empty name (it would mean the current folder), ``~user`` of no user, a name longer than the file
    system allows, and a broken symbolic link or a loop of them (found before any work, not at the first write).
    """
    text = os.fspath(text)
    if not str(text).strip():
        raise ValueError(f"{what} is empty: name a folder (\".\" for the current one)")
    try:
        path = Path(text).expanduser()
    except RuntimeError:
        raise ValueError(f"{what} {str(text)!r}: its '~' names no user's home folder; give the path without it") \
            from None
    if any(len(os.fsencode(part)) > 255 for part in path.parts):
        raise ValueError(f"{what} {str(text)!r} has a name longer than 255 bytes: choose a shorter one")
    try:
        broken = path.is_symlink() and not path.exists()
    except OSError as exc:
        raise ValueError(f"{what} {str(text)!r} cannot be read ({exc.strerror or exc}): choose another folder") \
            from None
    if broken:
        raise ValueError(f"{what} {str(text)!r} is a broken symbolic link (or a loop of them): remove it or choose "
                         f"another folder")
    return path
