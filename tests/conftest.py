"""Shared fixtures: the MNIST folder, small MNIST subsets, a temporary run cache, one CPU thread."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def mnist_root() -> Path:
    """$VIBTOOLS_DATA if set, else <repo>/../shared/data."""
    env = os.environ.get("VIBTOOLS_DATA")
    return Path(env).expanduser() if env else REPO.parent / "shared" / "data"


def has_mnist(root: Path) -> bool:
    raw = root / "MNIST" / "raw"
    return all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for f in MNIST_FILES)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Keep the tests at one intra-op thread (they run beside other jobs); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The MNIST folder (torchvision layout); the tests that need it are skipped when it is absent."""
    root = mnist_root()
    if not has_mnist(root):
        pytest.skip(f"MNIST not found in {root / 'MNIST' / 'raw'}: set VIBTOOLS_DATA to a folder holding "
                    f"MNIST/raw/ (torchvision layout) to run the tests that train on MNIST")
    return root


@pytest.fixture(scope="session")
def mnist(data_root):
    """The full MNIST tensors on the CPU."""
    import vibtools

    return vibtools.load_mnist(data_root, download=False)


@pytest.fixture(scope="session")
def small(mnist):
    """1000 training and 500 test examples: enough for the mechanics, fast on one core."""
    return mnist.subset(1000, 500)


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    """A fresh, empty run-cache folder."""
    path = tmp_path / "cache"
    path.mkdir()
    return path
