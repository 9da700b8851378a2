"""Loading MNIST: tensors, the data-folder setting, clear errors for missing or damaged files, and no leftovers."""

from __future__ import annotations

import gzip
import os
import random
import shutil
import socket
import time
from pathlib import Path

import pytest
import torch

import vibtools
import vibtools.data as data
from vibtools import DataNotFoundError, load_mnist
from vibtools.data import MNISTFileError, MNISTTensors

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture
def offline(monkeypatch):
    """No network: every connection fails at once (so a test never waits on DNS)."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def fresh_cache(monkeypatch):
    """An empty in-process MNIST cache for the test, so a load from a temporary folder is not kept afterwards."""
    monkeypatch.setattr(data, "_CACHE", {})


def source_file(root: Path, name: str) -> Path:
    """The real file ``name`` (plain, else .gz) in the shared MNIST folder."""
    raw = root / "MNIST" / "raw"
    return raw / name if (raw / name).is_file() else raw / f"{name}.gz"


def plain_bytes(root: Path, name: str) -> bytes:
    """The decompressed contents of the real file ``name``."""
    path = source_file(root, name)
    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


def copy_mnist(data_root: Path, dest: Path, gz: bool = False) -> Path:
    """A copy of the four real files (plain, or gzipped only) in ``dest``/MNIST/raw; returns that folder."""
    raw = dest / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES:
        if gz:
            (raw / f"{name}.gz").write_bytes(gzip.compress(plain_bytes(data_root, name), compresslevel=1))
        elif source_file(data_root, name).suffix == ".gz":
            (raw / name).write_bytes(plain_bytes(data_root, name))
        else:
            shutil.copyfile(source_file(data_root, name), raw / name)
    return raw


def tree(path: Path) -> dict[str, tuple[bool, int, int]]:
    """Every entry under ``path`` (itself included) with (is folder, size, mtime), to prove nothing changed."""
    if not path.exists():
        return {}
    entries = [path, *path.rglob("*")]
    return {str(p.relative_to(path)): (p.is_dir(), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns)
            for p in entries}


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
    assert "\n" not in message
    assert list(empty.iterdir()) == []  # created nothing


def test_missing_data_with_failed_download_names_the_folder(tmp_path, offline):
    empty = tmp_path / "offline"
    empty.mkdir()
    t0 = time.perf_counter()
    with pytest.raises(DataNotFoundError) as info:
        load_mnist(empty, download=True)
    assert time.perf_counter() - t0 < 30
    assert str(empty / "MNIST" / "raw") in str(info.value)
    assert "download failed" in str(info.value)
    assert "\n" not in str(info.value)
    assert list(empty.iterdir()) == []  # torchvision made MNIST/raw for the download; the failed load removed it


@pytest.mark.parametrize("download", [False, True])
def test_missing_data_folder_is_not_created(tmp_path, offline, download):
    root = tmp_path / "new" / "data"
    with pytest.raises(DataNotFoundError):
        load_mnist(root, download=download)
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its missing parent was left behind


@pytest.mark.parametrize("download", [False, True])
def test_partly_missing_data_leaves_the_folder_as_it_was(data_root, tmp_path, offline, download):
    raw = copy_mnist(data_root, tmp_path)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    before = tree(tmp_path)
    with pytest.raises(DataNotFoundError) as info:
        load_mnist(tmp_path, download=download)
    assert not isinstance(info.value, MNISTFileError)
    assert "t10k-labels-idx1-ubyte" in str(info.value) and str(raw) in str(info.value)
    assert tree(tmp_path) == before


def test_failed_download_removes_its_partial_files(tmp_path, monkeypatch):
    def partial_download(root: Path, dataset: str = "MNIST") -> None:
        raw = root / "MNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b partial")
        raise OSError("connection reset")

    monkeypatch.setattr(data, "_download", partial_download)
    with pytest.raises(DataNotFoundError) as info:
        load_mnist(tmp_path / "data", download=True)
    assert "download failed" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_bad_download_is_reported_and_removed(data_root, tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"

    def bad_download(root: Path, dataset: str = "MNIST") -> None:
        raw.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            (raw / name).write_bytes(plain_bytes(data_root, name)[:100])

    monkeypatch.setattr(data, "_download", bad_download)
    with pytest.raises(MNISTFileError, match="is truncated"):
        load_mnist(tmp_path, download=True)
    assert list(tmp_path.iterdir()) == []


def test_data_folder_that_is_a_file(tmp_path):
    path = tmp_path / "data"
    path.write_text("not a folder")
    with pytest.raises(DataNotFoundError) as info:
        load_mnist(path)
    assert str(path) in str(info.value) and "is a file" in str(info.value) and "\n" not in str(info.value)
    assert path.read_text() == "not a folder"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions and a non-root user")
def test_unreadable_data_folder(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    path.chmod(0)
    try:
        with pytest.raises(DataNotFoundError, match="cannot read"):
            load_mnist(path)
    finally:
        path.chmod(0o700)


def _truncate(raw: Path) -> Path:
    """Cut the training images to 1234 bytes."""
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1234])
    return path


def _bad_magic(raw: Path) -> Path:
    """Overwrite the magic number of the test images."""
    path = raw / "t10k-images-idx3-ubyte"
    blob = bytearray(path.read_bytes())
    blob[:4] = b"\xde\xad\xbe\xef"
    path.write_bytes(bytes(blob))
    return path


def _one_label_fewer(raw: Path) -> Path:
    """A consistent training-labels file with one label fewer than there are images."""
    path = raw / "train-labels-idx1-ubyte"
    blob = bytearray(path.read_bytes())
    blob[4:8] = (int.from_bytes(blob[4:8], "big") - 1).to_bytes(4, "big")
    path.write_bytes(bytes(blob[:-1]))
    return path


def _label_255(raw: Path) -> Path:
    """Set one test label to 255."""
    path = raw / "t10k-labels-idx1-ubyte"
    blob = bytearray(path.read_bytes())
    blob[8 + 1234] = 255
    path.write_bytes(bytes(blob))
    return path


def _garble(raw: Path) -> Path:
    """Replace the test labels with random bytes of the same length."""
    path = raw / "t10k-labels-idx1-ubyte"
    path.write_bytes(random.Random(0).randbytes(path.stat().st_size))
    return path


def _wrong_image_size(raw: Path) -> Path:
    """Claim the test images are 28x29."""
    path = raw / "t10k-images-idx3-ubyte"
    blob = bytearray(path.read_bytes())
    blob[12:16] = (29).to_bytes(4, "big")
    path.write_bytes(bytes(blob))
    return path


def _one_byte_more(raw: Path) -> Path:
    """Append a byte to the test labels."""
    path = raw / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\x00")
    return path


def _truncated_gz(raw: Path) -> Path:
    """Keep the training labels only as a .gz cut short."""
    path = raw / "train-labels-idx1-ubyte"
    gz = raw / "train-labels-idx1-ubyte.gz"
    gz.write_bytes(gzip.compress(path.read_bytes())[:5000])
    path.unlink()
    return gz


def _garbled_gz(raw: Path) -> Path:
    """Keep the test images only as a .gz holding random bytes (not gzip at all)."""
    path = raw / "t10k-images-idx3-ubyte"
    gz = raw / "t10k-images-idx3-ubyte.gz"
    gz.write_bytes(random.Random(1).randbytes(4096))
    path.unlink()
    return gz


def _truncated_inside_gz(raw: Path) -> Path:
    """Keep the test labels only as a valid .gz of a truncated file."""
    path = raw / "t10k-labels-idx1-ubyte"
    gz = raw / "t10k-labels-idx1-ubyte.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()[:300]))
    path.unlink()
    return gz


DAMAGES = [
    (_truncate, ["is truncated", "60000 images of 28x28 (47040016 bytes)", "holds 1234 bytes"]),
    (_bad_magic, ["is not an MNIST IDX file", "0xdeadbeef"]),
    (_one_label_fewer, ["holds 59999 labels for 60000 images", "delete both"]),
    (_label_255, ["outside 0-9", "found 255"]),
    (_garble, ["is not an MNIST IDX file"]),
    (_wrong_image_size, ["28x29", "not 28x28"]),
    (_one_byte_more, ["is longer than its header says", "10000 labels (10008 bytes)", "10009 bytes"]),
    (_truncated_gz, ["is truncated"]),
    (_garbled_gz, ["is not a valid gzip file"]),
    (_truncated_inside_gz, ["is truncated", "10000 labels (10008 bytes)", "holds 300 bytes once decompressed"]),
]


@pytest.mark.parametrize("damage, words", DAMAGES, ids=[d.__name__.strip("_") for d, _ in DAMAGES])
def test_damaged_file_is_named_before_any_work(data_root, tmp_path, offline, fresh_cache, damage, words):
    raw = copy_mnist(data_root, tmp_path)
    bad = damage(raw)
    before = tree(tmp_path)
    for download in (False, True):  # present-but-wrong files are reported, never re-downloaded over
        with pytest.raises(MNISTFileError) as info:
            load_mnist(tmp_path, download=download)
        message = str(info.value)
        assert isinstance(info.value, DataNotFoundError)
        assert "\n" not in message and message.startswith(str(bad))
        assert "delete" in message and "rerun" in message
        for word in words:
            assert word in message
        assert tree(tmp_path) == before  # created, changed and removed nothing
    assert data._CACHE == {}


def test_gzipped_only_copy_loads_the_same_data_and_writes_nothing(data_root, mnist, tmp_path, offline, fresh_cache):
    raw = copy_mnist(data_root, tmp_path, gz=True)
    before = tree(tmp_path)
    loaded = load_mnist(tmp_path, download=False)
    assert loaded == mnist
    assert loaded.fingerprint() == mnist.fingerprint()
    assert tree(tmp_path) == before  # no decompressed copies in the data folder
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{name}.gz" for name in FILES)
    assert load_mnist(tmp_path, download=True) == mnist  # all present: no download attempted (offline)


def test_mnist_tensors_equality(mnist, small):
    assert small == mnist.subset(1000, 500)
    assert small == MNISTTensors(*(t.clone() for t in (small.train_x, small.train_y, small.test_x, small.test_y)),
                                 _fingerprint="not compared")
    assert small.to("cpu") == small and mnist.to("cpu") == mnist
    assert small != mnist.subset(1000, 499) and small != mnist.subset(999, 500)
    changed = MNISTTensors(small.train_x, small.train_y.clone(), small.test_x, small.test_y)
    changed.train_y[0] = (changed.train_y[0] + 1) % 10
    assert changed != small
    assert MNISTTensors(small.train_x.double(), small.train_y, small.test_x, small.test_y) != small
    assert small != "small" and (small == "small") is False
    with pytest.raises(TypeError):
        hash(small)
    if torch.cuda.is_available():
        assert small.to("cuda") == small


def test_each_load_gets_its_own_tensors_and_an_edit_changes_the_fingerprint(data_root):
    first = load_mnist(data_root, download=False)
    fp = first.fingerprint()
    first.train_x[0].zero_()  # an in-place edit by one caller ...
    second = load_mnist(data_root, download=False)
    assert second.train_x[0].abs().sum() > 0 and second.fingerprint() == fp  # ... stays theirs
    assert first.fingerprint() != fp  # and their data is no longer keyed as the original
    assert first.to("cpu").fingerprint() == first.fingerprint()
