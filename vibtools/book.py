"""Settings shared by the book's chapters: full or reduced (VIBTOOLS_QUICK=1) sizes, and a provenance line."""

from __future__ import annotations

import os
import platform
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
    reference_epochs: int  # chapter 3: the reference run
    sweep_epochs: int  # chapter 4: the beta sweep at K=256
    sweep_betas: tuple[float, ...]
    embed_epochs: int  # chapters 5 and 6: K=2 models
    embed_betas: tuple[float, ...]
    n_embed_points: int = 1000
    seeds: tuple[int, ...] = field(default=(0,))


FULL = BookSettings(
    mode="full", n_train=None, n_test=None, reference_epochs=10,
    sweep_epochs=8, sweep_betas=tuple(10.0 ** e for e in range(-9, 1)),
    embed_epochs=10, embed_betas=(1e-4, 1e-3, 1e-2, 1e-1, 3e-1, 1.0),
)
QUICK = BookSettings(
    mode="quick", n_train=2000, n_test=1000, reference_epochs=2,
    sweep_epochs=2, sweep_betas=(1e-9, 1e-3, 1e-2, 1.0),
    embed_epochs=2, embed_betas=(1e-3, 1e-1, 1.0), n_embed_points=300,
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
        return time.perf_counter() - self.t0


def provenance(device: torch.device | str, epochs: int | str, seconds: float) -> str:
    """The line each chapter prints under its results: version, mode, device, epochs, wall time."""
    from . import __version__

    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    threads = torch.get_num_threads()
    return (f"provenance: vibtools {__version__}, mode={settings().mode}, device={dev.type} ({name}, "
            f"{threads} threads), epochs={epochs}, wall time {seconds:.0f} s")
