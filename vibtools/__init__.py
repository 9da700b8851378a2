"""vibtools: the Deep Variational Information Bottleneck (Alemi et al., ICLR 2017) in PyTorch, for the VIB book.

``import vibtools`` loads the training core only; the chapters' helpers ``vibtools.plots`` (matplotlib) and
``vibtools.widgets`` (ipywidgets) are imported on first use, so the command line starts without them.
"""

import importlib

from . import attacks, book  # adversarial attacks (vt.attacks) and the chapters' settings (vt.book)
from .baselines import MODELS, model_config
from .bounds import (
    LN2,
    class_loss_bits,
    info_loss_bits,
    izx_upper_bound,
    izy_lower_bound,
    prediction_entropy_bits,
    smoothed_class_loss_bits,
    vib_objective,
)
from .config import TrainConfig
from .data import DataNotFoundError, MNISTFileError, MNISTTensors, default_data_root, load_mnist
from .device import pick_device
from .ema import EMA
from .evaluation import evaluate, format_line
from .infotheory import (
    DiscreteIB,
    discrete_ib_example,
    entropy_bits,
    gaussian_kl_closed_form,
    gaussian_kl_full_closed_form,
    kl_bits,
    mc_kl,
    mutual_information,
    nats_to_bits,
    variational_bounds,
)
from .model import VIB, VIBStack, posterior, prior, reparameterize
from .store import RESULTS_VERSION, CheckpointError, default_cache_dir, load_checkpoint, save_checkpoint
from .training import RunResult, TrainingInterrupted, load_run, train, train_sweep

__version__ = "0.2.0"

_LAZY = ("plots", "widgets", "stats")  # imported on first use (matplotlib, ipywidgets; the verdict rule)


def __getattr__(name: str):
    """Import the plotting and widget modules on first use (``vt.plots``, ``vt.widgets``)."""
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LN2", "class_loss_bits", "info_loss_bits", "izx_upper_bound", "izy_lower_bound", "vib_objective",
    "RESULTS_VERSION", "CheckpointError", "default_cache_dir", "load_checkpoint", "save_checkpoint",
    "DataNotFoundError", "MNISTFileError", "MNISTTensors", "default_data_root", "load_mnist", "pick_device", "EMA",
    "evaluate", "format_line", "VIB", "posterior", "prior", "reparameterize", "VIBStack",
    "MODELS", "model_config", "RunResult", "TrainConfig", "TrainingInterrupted", "load_run", "train", "train_sweep",
    "__version__", "prediction_entropy_bits", "smoothed_class_loss_bits",
    "DiscreteIB", "discrete_ib_example", "entropy_bits", "gaussian_kl_closed_form", "gaussian_kl_full_closed_form",
    "kl_bits", "mc_kl", "mutual_information", "nats_to_bits", "variational_bounds",
    "attacks", "book", "plots", "stats", "widgets",
]
