"""The chapters' settings: full or reduced (VIBTOOLS_QUICK=1) sizes, the data cut to them, and the runs each
chapter trains (its configs)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import torch

from .config import TrainConfig

ENV_QUICK = "VIBTOOLS_QUICK"


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
    adv_epochs: int = 10  # the adversarial chapter: the two models it attacks itself (those of its stored study)
    n_attack: int = 1000  # test images of its from-scratch check
    unc_epochs: int = 10  # the uncertainty chapter: the model it checks by hand (the protocol of its records)
    n_ood: int = 10_000  # images of each out-of-distribution set in that check


FULL = BookSettings(
    mode="full", n_train=None, n_test=None, reference_epochs=10, scratch_epochs=3,
    sweep_epochs=8, sweep_betas=tuple(10.0 ** e for e in range(-9, 1)),
    embed_epochs=20, embed_betas=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 0.3, 1.0),
)


QUICK = BookSettings(  # the notebook tests: every cell runs, at sizes that take seconds
    mode="quick", n_train=1000, n_test=500, reference_epochs=2, scratch_epochs=1,
    sweep_epochs=2, sweep_betas=(1e-9, 1e-3, 1e-2, 1.0),
    embed_epochs=2, embed_betas=(1e-3, 1e-1, 1.0), n_embed_points=300,
    adv_epochs=2, n_attack=50, unc_epochs=2, n_ood=500,
)


def settings() -> BookSettings:
    """The chapters' sizes: :data:`QUICK` when $VIBTOOLS_QUICK is 1/true/yes (the reduced sizes used by the
    notebook tests), :data:`FULL` when it is unset, empty or 0/false/no.

    Raises:
        ValueError: any other value (a typo would otherwise mean the full, hours-long settings).
    """
    value = os.environ.get(ENV_QUICK, "").strip().lower()
    if value in ("1", "true", "yes"):
        return QUICK
    if value in ("", "0", "false", "no"):
        return FULL
    raise ValueError(f"{ENV_QUICK}={os.environ[ENV_QUICK]!r} is not a setting: use 1 for the reduced sizes, or 0 "
                     f"(or leave it unset) for the full ones")


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


def reference_config():
    """The training chapter's run: the reference notebook's recipe (K=256, β=1e-3) at the current settings' epochs."""
    return TrainConfig(epochs=settings().reference_epochs)


def sweep_configs() -> list:
    """The β-sweep chapter's grid at K=256 (log-spaced, 1e-9 to 1), one shared batch order."""
    s = settings()
    return [TrainConfig(beta=b, epochs=s.sweep_epochs, data_seed=0) for b in s.sweep_betas]


def embed_configs() -> list:
    """The explorer chapter's K=2 models (the paper's full-covariance encoder over a β grid), seed 0.

    At full settings they hold the seed-0 runs of ``reproduce k2`` (β 1e-3, 1e-2, 1e-1, 1), whose stored results
    the embeddings chapter draws, so the explorer shows those models (loaded from the run cache where that
    command ran), and the half-decades between them, so that its slider has a frame every half decade of β.
    """
    s = settings()
    return [TrainConfig(beta=b, k=2, covariance="full", epochs=s.embed_epochs, data_seed=0) for b in s.embed_betas]


def adversarial_configs() -> dict:
    """The two models the adversarial chapter attacks itself: the deterministic net and K=256 VIB at β=1e-2, seed 0.

    At full settings they are models of its stored study (``python -m vibtools attack-study``), trained with the
    recipe of ``reproduce beta-sweep`` / ``reproduce table1``, so they come from the run cache where those ran.
    """
    from .baselines import model_config

    s = settings()
    return {"deterministic": model_config("deterministic", epochs=s.adv_epochs, seed=0, data_seed=0),
            "VIB β=0.01": TrainConfig(beta=1e-2, epochs=s.adv_epochs, seed=0, data_seed=0)}
