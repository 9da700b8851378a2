"""Shared fixtures and helpers: the MNIST folder, small MNIST subsets, a temporary run cache, one CPU thread, a fake
MNIST folder, the CLI as a process, and the tiny training config with the helpers that train it and compare runs."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vibtools as vt
from vibtools import TrainConfig

REPO = Path(__file__).resolve().parents[1]
TINY = TrainConfig(k=8, hidden=32, epochs=2)  # the small config most training tests start from
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


def write_idx(path: Path, data: torch.Tensor) -> None:
    """Write an IDX file as in the MNIST distribution: uint8 data, big-endian dimension sizes."""
    magic = 0x0800 | data.dim()
    path.write_bytes(struct.pack(f">{1 + data.dim()}i", magic, *data.shape) + data.numpy().tobytes())


def fake_mnist(root: Path, n_train: int = 200, n_test: int = 100) -> Path:
    """Write a random MNIST folder (torchvision layout) under ``root`` and return ``root``."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", torch.randint(0, 10, (n,), generator=g, dtype=torch.uint8))
    return root


def cli(args: list[str], cwd: Path, **env) -> subprocess.CompletedProcess:
    """Run ``python -m vibtools ARGS`` in ``cwd`` with the data and cache settings pointing into ``cwd``."""
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "VIBTOOLS_CACHE": str(cwd / "default-cache"),
               "VIBTOOLS_DATA": str(cwd / "default-data"), **env}
    return subprocess.run([sys.executable, "-m", "vibtools", *args], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=120)


def fit(config, data, **kwargs):
    """train() on the CPU without progress bars (the tests compare runs exactly, which needs one device)."""
    return vt.train(config, data, device="cpu", progress=False, **kwargs)


def fit_sweep(configs, data, **kwargs):
    return vt.train_sweep(configs, data, device="cpu", progress=False, **kwargs)


def numeric(history: dict) -> dict:
    """The history without the wall-clock columns, the only part allowed to vary between runs."""
    assert "seconds" in history and "eval_seconds" in history
    return {k: v for k, v in history.items() if k not in ("seconds", "eval_seconds")}


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name
