"""MNIST as device-resident float tensors (chapter 3): read once with torchvision, never a per-step DataLoader."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

ENV_DATA = "VIBTOOLS_DATA"


class DataNotFoundError(RuntimeError):
    """MNIST is not in the data folder and could not be downloaded."""


def user_folder(env: str, name: str) -> Path:
    """$env if set, else the per-user cache folder ($XDG_CACHE_HOME or ~/.cache)/vibtools/name."""
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "vibtools" / name


def default_data_root() -> Path:
    """The data folder: $VIBTOOLS_DATA if set, else a per-user cache folder (~/.cache/vibtools/data)."""
    return user_folder(ENV_DATA, "data")


@dataclass
class MNISTTensors:
    """Train and test images as (N, 784) floats in [0, 1] and labels as int64, all on one device."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    def to(self, device: torch.device | str) -> MNISTTensors:
        """Return a copy on ``device``."""
        moved = (t.to(device) for t in (self.train_x, self.train_y, self.test_x, self.test_y))
        return MNISTTensors(*moved, _fingerprint=self._fingerprint)  # same data, same fingerprint

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> MNISTTensors:
        """Return the first ``n_train`` training and ``n_test`` test examples (reduced-settings runs and tests)."""
        return MNISTTensors(self.train_x[:n_train], self.train_y[:n_train], self.test_x[:n_test], self.test_y[:n_test])

    def fingerprint(self) -> str:
        """A short hash of the data, so the run cache never mixes results from different data (computed once)."""
        if self._fingerprint is not None:
            return self._fingerprint
        h = hashlib.sha1()
        for t in (self.train_x, self.train_y, self.test_x, self.test_y):
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


_CACHE: dict[str, MNISTTensors] = {}


def load_mnist(root: str | os.PathLike | None = None, device: torch.device | str = "cpu",
               download: bool = True) -> MNISTTensors:
    """Load MNIST through ``torchvision.datasets.MNIST`` as (N, 784) float tensors in [0, 1] on ``device``.

    Args:
        root: folder holding ``MNIST/raw/`` (torchvision's layout); None uses :func:`default_data_root`.
        device: where the tensors live (the training device).
        download: try to download the files when they are missing.
    Returns:
        The four tensors as :class:`MNISTTensors`.
    Raises:
        DataNotFoundError: the files are missing and could not be downloaded.
    """
    from torchvision.datasets import MNIST

    root = Path(root).expanduser() if root is not None else default_data_root()
    key = str(root.resolve())
    if key not in _CACHE:
        try:
            sets = [MNIST(str(root), train=train, download=download) for train in (True, False)]
        except Exception as exc:  # torchvision raises RuntimeError, URLError or OSError depending on the failure
            raise DataNotFoundError(
                f"MNIST not found in {root / 'MNIST' / 'raw'} and the download failed ({type(exc).__name__}): "
                f"put the four files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                f"t10k-labels-idx1-ubyte (optionally .gz) in that folder, or pass another data folder"
            ) from None
        tensors = []
        for s in sets:
            tensors += [s.data.reshape(len(s.data), 784).float().div_(255.0), s.targets.long()]
        _CACHE[key] = MNISTTensors(*tensors)
    return _CACHE[key].to(device)
