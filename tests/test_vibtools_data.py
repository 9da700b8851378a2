"""Loading MNIST: tensors, the data-folder setting, and a clear error when the files are missing."""

from __future__ import annotations

import socket
import time

import pytest
import torch

import vibtools
from vibtools import DataNotFoundError, load_mnist


def test_mnist_tensors(mnist, small):
    assert mnist.train_x.shape == (60000, 784) and mnist.test_x.shape == (10000, 784)
    assert mnist.train_x.dtype == torch.float32 and mnist.train_y.dtype == torch.int64
    assert 0.0 <= mnist.train_x.min().item() and mnist.train_x.max().item() == 1.0
    assert sorted(mnist.train_y.unique().tolist()) == list(range(10))
    assert small.train_x.shape == (1000, 784) and small.test_y.shape == (500,)
    assert torch.equal(small.train_x, mnist.train_x[:1000])
    assert small.fingerprint() == mnist.subset(1000, 500).fingerprint()
    assert small.fingerprint() != mnist.subset(1000, 499).fingerprint()


def test_default_data_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VIBTOOLS_DATA", str(tmp_path / "somewhere"))
    assert vibtools.default_data_root() == tmp_path / "somewhere"
    monkeypatch.delenv("VIBTOOLS_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert vibtools.default_data_root() == tmp_path / "xdg" / "vibtools" / "data"


def test_missing_data_without_download_names_the_folder(tmp_path):
    empty = tmp_path / "no-mnist-here"
    empty.mkdir()
    with pytest.raises(DataNotFoundError) as info:
        load_mnist(empty, download=False)
    message = str(info.value)
    assert str(empty / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message  # says what to put there


def test_missing_data_with_failed_download_names_the_folder(tmp_path, monkeypatch):
    """No network: every connection fails at once (so the test never waits on DNS)."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    empty = tmp_path / "offline"
    empty.mkdir()
    t0 = time.perf_counter()
    with pytest.raises(DataNotFoundError) as info:
        load_mnist(empty, download=True)
    assert time.perf_counter() - t0 < 30
    assert str(empty / "MNIST" / "raw") in str(info.value)
    assert "download failed" in str(info.value)
