"""vibtools: the Deep Variational Information Bottleneck (Alemi et al., ICLR 2017) in PyTorch, for the VIB book.

The names below are the package's face. Each is imported from its module on first use (PEP 562), so
``import vibtools`` and ``python -m vibtools --help`` load neither torch nor the chapters' helpers; ``vt.train``
loads the training core, ``vt.book``, ``vt.results``, ``vt.report``, ``vt.plots``, ``vt.stats``, ``vt.attacks`` or
``vt.uncertainty`` their own modules.
"""

from __future__ import annotations

import importlib

from ._version import __version__

_NAMES = {  # name -> module that defines it
    **dict.fromkeys(("MODELS", "model_config"), "baselines"),
    **dict.fromkeys(("LN2", "class_loss_bits", "info_loss_bits", "izx_upper_bound", "izy_lower_bound",
                     "prediction_entropy_bits", "smoothed_class_loss_bits", "vib_objective"), "bounds"),
    **dict.fromkeys(("RESULTS_VERSION", "CheckpointError", "default_cache_dir", "load_checkpoint",
                     "save_checkpoint"), "store"),
    "TrainConfig": "config",
    **dict.fromkeys(("DataNotFoundError", "MNISTFileError", "MNISTTensors", "default_data_root", "load_fashion_mnist",
                     "load_mnist"), "data"),
    "pick_device": "device",
    "EMA": "ema",
    **dict.fromkeys(("evaluate", "format_line"), "evaluation"),
    **dict.fromkeys(("DiscreteIB", "discrete_ib_example", "entropy_bits", "gaussian_kl_closed_form",
                     "gaussian_kl_full_closed_form", "kl_bits", "mc_kl", "mutual_information", "nats_to_bits",
                     "variational_bounds"), "infotheory"),
    **dict.fromkeys(("VIB", "VIBStack", "posterior", "prior", "reparameterize"), "model"),
    **dict.fromkeys(("RunResult", "TrainingInterrupted", "load_run", "train", "train_sweep"), "training"),
}
# listed in __all__; every other submodule (vt.infotheory, vt.model, ...) is reachable too
_MODULES = ("attacks", "book", "experiments", "plots", "report", "reproduce", "results", "stats", "store",
            "uncertainty", "widgets")

__all__ = [*_NAMES, *_MODULES, "__version__"]


def __getattr__(name: str):
    """Import a name of the package face, or one of its modules, on first use."""
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if not name.startswith("_"):  # any submodule: vt.plots, vt.infotheory, vt.model, ...
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise  # the submodule exists but something it imports does not
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
