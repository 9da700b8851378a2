"""A run's settings: the reference notebook's recipe as a validated, normalised, frozen dataclass."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields

COVARIANCES = ("diag", "full", "none")  # q(z|x): diagonal, full (the paper's K=2 encoder), none (z = mu)
MAX_SEED = 2**32 - 1  # streams derived from a seed use salted_seed(seed, salt), which must stay below 2**63
EVAL_CHUNK = 2000  # examples per evaluation batch (evaluation, attacks, and the memory estimate of vibtools.store)
# the fields the models of one stacked sweep may differ in: the loss settings and the seed
PER_MODEL = ("beta", "seed", "dropout", "label_smoothing", "confidence_penalty")
OPTIONAL_AT_ZERO = ("dropout", "label_smoothing", "confidence_penalty")  # left out of the run key at 0


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

    def __post_init__(self):
        """Validate, then normalise the numbers."""
        check_config(self)
        # Normalise, so that equal runs compare and hash equal: 1 and 1.0, -0.0 and 0.0, lists and tuples.
        for name in ("k", "epochs", "seed", "batch_size", "decay_epochs", "hidden", "n_eval_samples"):
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
        return d

    def key_dict(self) -> dict:
        """What identifies the run's result: :meth:`as_dict` with the batch order resolved (``data_seed``).

        Regularizers left at 0 are left out, so that runs stored before these options existed keep their keys.
        """
        d = self.as_dict()
        d["data_seed"] = self.batch_seed
        for name in OPTIONAL_AT_ZERO:
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


def _is_int(v) -> bool:
    """True for a Python or NumPy integer that is not a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    """True for a finite real number (Python or NumPy) that is not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def check_config(c: TrainConfig) -> None:
    """Raise ValueError with a one-line message naming the first config value that is out of range."""
    if not (_is_real(c.beta) and c.beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {c.beta!r}")
    for name in ("k", "epochs", "batch_size", "decay_epochs", "hidden", "n_eval_samples"):
        v = getattr(c, name)
        if not _is_int(v) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    for name in ("seed", "data_seed"):
        v = getattr(c, name)
        if v is None and name == "data_seed":
            continue
        if not _is_int(v) or not 0 <= v <= MAX_SEED:
            raise ValueError(f"{name} must be an integer from 0 to {MAX_SEED}, got {v!r}")
    if not (_is_real(c.lr) and c.lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {c.lr!r}")
    betas = c.adam_betas
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(_is_real(b) and 0 <= b < 1 for b in betas)):
        raise ValueError(f"adam_betas must be two numbers in [0, 1), got {betas!r}")
    if not (_is_real(c.decay_rate) and 0 < c.decay_rate <= 1):
        raise ValueError(f"decay_rate must be in (0, 1], got {c.decay_rate!r}")
    if not (_is_real(c.ema_decay) and 0 <= c.ema_decay < 1):
        raise ValueError(f"ema_decay must be in [0, 1), got {c.ema_decay!r}")
    for name in ("dropout", "label_smoothing"):
        v = getattr(c, name)
        if not (_is_real(v) and 0 <= v < 1):
            raise ValueError(f"{name} must be a number in [0, 1), got {v!r}")
    if not (_is_real(c.confidence_penalty) and c.confidence_penalty >= 0):
        raise ValueError(f"confidence_penalty must be a finite number >= 0, got {c.confidence_penalty!r}")
    if c.covariance not in COVARIANCES:
        raise ValueError(f"covariance must be one of {', '.join(COVARIANCES)}, got {c.covariance!r}")
