"""vibtools: the Deep Variational Information Bottleneck (Alemi et al., ICLR 2017) in PyTorch, for the VIB book."""

from . import book, plots, widgets  # modules the chapters use as vt.book, vt.plots, vt.widgets
from .bounds import LN2, class_loss_bits, info_loss_bits, izx_upper_bound, izy_lower_bound, vib_objective
from .checkpoint import CheckpointError, default_cache_dir, load_checkpoint, save_checkpoint
from .data import DataNotFoundError, MNISTTensors, default_data_root, load_mnist
from .device import pick_device
from .ema import EMA
from .evaluate import evaluate, format_line
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
from .model import VIB, posterior, prior, reparameterize
from .stack import VIBStack
from .train import RunResult, TrainConfig, load_run, train, train_sweep

__version__ = "0.1.0"

__all__ = [
    "LN2", "class_loss_bits", "info_loss_bits", "izx_upper_bound", "izy_lower_bound", "vib_objective",
    "CheckpointError", "default_cache_dir", "load_checkpoint", "save_checkpoint",
    "DataNotFoundError", "MNISTTensors", "default_data_root", "load_mnist", "pick_device", "EMA",
    "evaluate", "format_line", "VIB", "posterior", "prior", "reparameterize", "VIBStack",
    "RunResult", "TrainConfig", "load_run", "train", "train_sweep", "__version__",
    "DiscreteIB", "discrete_ib_example", "entropy_bits", "gaussian_kl_closed_form", "gaussian_kl_full_closed_form",
    "kl_bits", "mc_kl", "mutual_information", "nats_to_bits", "variational_bounds", "book", "plots", "widgets",
]
