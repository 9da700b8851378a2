"""MNIST (and Fashion-MNIST, for out-of-distribution tests) as device-resident float tensors: read once, never a
per-step DataLoader.

``load_mnist`` checks the four raw IDX files itself (header, length, image size, label count and range) and reads
them from the checked bytes (torchvision downloads them when they are missing), so a truncated, garbled or
mismatched file stops the run with a one-line message naming the file, before any training starts. A failed
load leaves the data folder as it found it. Fashion-MNIST has MNIST's file names and format in its own folder
(``FashionMNIST/raw/``, torchvision's layout) and goes through the same reader (:func:`load_fashion_mnist`).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .paths import user_folder

ENV_DATA = "VIBTOOLS_DATA"

# (split, images file, labels file) in torchvision's layout; each file may also be present only as <name>.gz
_SPLITS = (("train", "train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
           ("t10k", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
_FILES = tuple(name for _, images, labels in _SPLITS for name in (images, labels))
_MAGIC = {"images": 0x00000803, "labels": 0x00000801}  # unsigned bytes; 3 dimensions for images, 1 for labels
_SIDE = 28
_CLASSES = 10
_REDO = "delete it and rerun to download it again, or put the original file there"
_REDO_BOTH = "delete both and rerun to download them again, or put the original files there"


class DataNotFoundError(RuntimeError):
    """MNIST is not in the data folder and could not be downloaded."""


class MNISTFileError(DataNotFoundError):
    """An MNIST file is present but wrong: truncated, not an IDX file, or inconsistent with its partner file."""


def default_data_root() -> Path:
    """The data folder: $VIBTOOLS_DATA if set, else a per-user cache folder (~/.cache/vibtools/data)."""
    return user_folder(ENV_DATA, "data")


@dataclass(eq=False)
class MNISTTensors:
    """Train and test images as (N, 784) floats in [0, 1] and labels as int64, all on one device.

    Two instances are equal when their four tensors have the same shapes, dtypes and values (compared on the first
    one's device when the devices differ); the cached fingerprint plays no part. Instances are unhashable, like
    tensors' contents.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    _fingerprint: str | None = field(default=None, repr=False, compare=False)
    _versions: tuple | None = field(default=None, repr=False, compare=False)  # tensors' versions when fingerprinted

    __hash__ = None  # type: ignore[assignment]  # equality is by value and the tensors are mutable

    def _tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The four tensors in a fixed order."""
        return self.train_x, self.train_y, self.test_x, self.test_y

    def __eq__(self, other: object) -> bool:
        """Equal shapes and values of all four tensors (the fingerprint is not compared)."""
        if not isinstance(other, MNISTTensors):
            return NotImplemented
        return all(a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b.to(a.device))
                   for a, b in zip(self._tensors(), other._tensors()))

    @property
    def device(self) -> torch.device:
        """The device all four tensors live on."""
        return self.train_x.device

    def to(self, device: torch.device | str, copy: bool = False) -> MNISTTensors:
        """The same data on ``device`` (the same tensors when they are there already, unless ``copy``)."""
        moved = tuple(t.to(device, copy=copy) for t in self._tensors())
        fresh = self._fingerprint is not None and self._versions == self._tensor_versions()
        return MNISTTensors(*moved, _fingerprint=self._fingerprint if fresh else None,
                            _versions=tuple(t._version for t in moved) if fresh else None)

    def _tensor_versions(self) -> tuple:
        """The four tensors' version counters, which every in-place change increments."""
        return tuple(t._version for t in self._tensors())

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> MNISTTensors:
        """Return the first ``n_train`` training and ``n_test`` test examples (reduced-settings runs and tests)."""
        return MNISTTensors(self.train_x[:n_train], self.train_y[:n_train], self.test_x[:n_test], self.test_y[:n_test])

    def only_classes(self, classes) -> MNISTTensors:
        """The training and test examples whose label is in ``classes`` (held-out-class experiments)."""
        keep = torch.tensor(sorted(set(int(c) for c in classes)), device=self.train_y.device)
        if not len(keep) or int(keep.min()) < 0 or int(keep.max()) >= _CLASSES:
            raise ValueError(f"classes must be labels from 0 to {_CLASSES - 1}, got {list(classes)!r}")
        tr, te = torch.isin(self.train_y, keep), torch.isin(self.test_y, keep)
        return MNISTTensors(self.train_x[tr], self.train_y[tr], self.test_x[te], self.test_y[te])

    def random_labels(self, seed: int = 0) -> MNISTTensors:
        """The same images with every training label replaced by a class drawn uniformly at random under ``seed``
        (the test labels stay true): the random-label test of regularization (Zhang et al. 2017). The draw is
        made on the CPU, so it is the same on every device."""
        g = torch.Generator().manual_seed(int(seed))
        y = torch.randint(0, _CLASSES, (len(self.train_y),), generator=g).to(self.train_y.device)
        return MNISTTensors(self.train_x, y, self.test_x, self.test_y)

    def fingerprint(self) -> str:
        """A short hash of the data, so the run cache never mixes results from different data.

        Computed once, and again after an in-place change to any of the tensors (their version counters move).
        """
        if self._fingerprint is not None and self._versions == self._tensor_versions():
            return self._fingerprint
        h = hashlib.sha1()
        for t in self._tensors():
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        self._fingerprint = h.hexdigest()[:16]
        self._versions = self._tensor_versions()
        return self._fingerprint


_CACHE: dict[str, MNISTTensors] = {}


@dataclass
class _IdxFile:
    """One checked raw file: where it is, its dimensions, and its (decompressed) bytes."""

    path: Path
    dims: tuple[int, ...]
    data: bytes


def _one_line(text: object) -> str:
    """``text`` with all whitespace runs (newlines included) collapsed to single spaces."""
    return " ".join(str(text).split())


MAX_IDX_BYTES = 64 << 20  # MNIST's largest file (the 60 000 training images) is 47 040 016 bytes


def _gunzip(path: Path) -> bytes:
    """The decompressed contents of ``path`` (at most :data:`MAX_IDX_BYTES`, so that a gzip bomb stops there), or
    MNISTFileError when it is not a complete gzip file or decompresses to more."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read(MAX_IDX_BYTES + 1)
        if len(data) > MAX_IDX_BYTES:
            raise MNISTFileError(f"{path} decompresses to more than {MAX_IDX_BYTES >> 20} MiB, more than any MNIST "
                                 f"file holds; {_REDO}")
        return data
    except EOFError:
        raise MNISTFileError(f"{path} is truncated: its gzip stream ends early; {_REDO}") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise MNISTFileError(f"{path} is not a valid gzip file ({_one_line(exc)}); {_REDO}") from None


def _check_idx(path: Path, kind: str, dataset: str = "MNIST") -> _IdxFile:
    """Parse and check the IDX header and length of ``path`` (``kind`` is 'images' or 'labels'); labels' range too."""
    gz = path.name.endswith(".gz")
    data = _gunzip(path) if gz else path.read_bytes()
    size = len(data)
    unzipped = " once decompressed" if gz else ""
    if size < 4:
        raise MNISTFileError(f"{path} is truncated: it holds {size} bytes{unzipped}, not even an IDX header; {_REDO}")
    magic = int.from_bytes(data[:4], "big")
    if magic != _MAGIC[kind]:
        raise MNISTFileError(f"{path} is not an MNIST IDX file (bad magic number 0x{magic:08x}, expected "
                             f"0x{_MAGIC[kind]:08x} for {kind}); {_REDO}")
    n_dims = magic & 0xFF
    header = 4 + 4 * n_dims
    if size < header:
        raise MNISTFileError(f"{path} is truncated: it holds {size} bytes{unzipped}, less than its {header}-byte "
                             f"header; {_REDO}")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(n_dims))
    if not dims or dims[0] == 0:
        raise MNISTFileError(f"{path} holds no {kind} (its header says 0); {_REDO}")
    if kind == "images" and dims[1:] != (_SIDE, _SIDE):
        raise MNISTFileError(f"{path} holds images of {dims[1]}x{dims[2]}, not {_SIDE}x{_SIDE}, so it is not "
                             f"{dataset}; {_REDO}")
    expected = header + math.prod(dims)
    if size != expected:
        what = "is truncated" if size < expected else "is longer than its header says"
        promised = f"{dims[0]} images of {dims[1]}x{dims[2]}" if kind == "images" else f"{dims[0]} labels"
        raise MNISTFileError(f"{path} {what}: its header promises {promised} ({expected} bytes) but "
                             f"it holds {size} bytes{unzipped}; {_REDO}")
    if kind == "labels" and (largest := max(data[header:], default=0)) >= _CLASSES:  # labels are unsigned
        raise MNISTFileError(f"{path} holds label values outside 0-{_CLASSES - 1} (found {largest}); {_REDO}")
    return _IdxFile(path, dims, data)


def _check_folders(root: Path, dataset: str = "MNIST") -> None:
    """DataNotFoundError when the data folder, MNIST/ or MNIST/raw/ exists but is a file or cannot be read."""
    for path in (root, root / dataset, root / dataset / "raw"):
        try:
            is_dir = path.is_dir()
            exists = is_dir or path.exists()
        except OSError as exc:
            raise DataNotFoundError(f"cannot read {path} ({_one_line(exc.strerror or exc)}): pass a data folder you "
                                    f"can read, or fix its permissions") from None
        if not exists:
            return
        if not is_dir:
            raise DataNotFoundError(f"{path} is a file, not a folder: pass a data folder that holds {dataset}/raw/ "
                                    f"(torchvision's layout), or an empty or new folder to download {dataset} into")
        if not os.access(path, os.R_OK | os.X_OK):
            raise DataNotFoundError(f"cannot read the folder {path} (permission denied): pass a data folder you can "
                                    f"read, or fix its permissions")


def _check_present(raw: Path, dataset: str = "MNIST") -> dict[str, _IdxFile]:
    """Check every MNIST file present in ``raw`` (missing ones are skipped), pairs included when both are there."""
    found: dict[str, _IdxFile] = {}
    for _, images, labels in _SPLITS:
        for name, kind in ((images, "images"), (labels, "labels")):
            # the file torchvision would use: the plain file, else name.gz
            path = next((p for p in (raw / name, raw / f"{name}.gz") if p.is_file()), None)
            if path is not None:
                found[name] = _check_idx(path, kind, dataset)
        im, lb = found.get(images), found.get(labels)
        if im and lb and im.dims[0] != lb.dims[0]:  # a labels file must hold one label per image of its partner
            raise MNISTFileError(f"{lb.path} holds {lb.dims[0]} labels for {im.dims[0]} images (in {im.path}); "
                                 f"{_REDO_BOTH}")
    return found


def _missing_message(raw: Path, missing: list[str], reason: str, dataset: str = "MNIST") -> str:
    """The one-line DataNotFoundError message: the folder, what is missing, why, and what to put there."""
    which = "" if len(missing) == len(_FILES) else f" (missing {', '.join(missing)})"
    return (f"{dataset} not found in {raw}{which} and {reason}: put the four files "
            f"train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte "
            f"(optionally .gz) in that folder, or pass another data folder")


def _download(root: Path, dataset: str = "MNIST") -> None:
    """Download the missing files into ``root``/<dataset>/raw with torchvision's downloader, without parsing them."""
    import torchvision.datasets

    # download() needs only ``root``; building the dataset would also parse the files before we check them
    cls = getattr(torchvision.datasets, dataset)
    made = cls.__new__(cls)
    made.root = os.fspath(root)
    made.download()


def _read(checked: _IdxFile) -> torch.Tensor:
    """The body of a checked IDX file as a uint8 tensor of its header's shape."""
    header = 4 + 4 * len(checked.dims)
    return torch.frombuffer(bytearray(checked.data[header:]), dtype=torch.uint8).reshape(checked.dims)


def _parse(files: dict[str, _IdxFile]) -> list[torch.Tensor]:
    """The checked files as [train_x, train_y, test_x, test_y]: (N, 784) floats in [0, 1] and int64 labels.

    The files were parsed above to check them, so the tensors are built from those bytes directly rather than by
    ``torchvision.datasets.MNIST``: importing torchvision alone took 1.2 s on the project's CPU machine, against
    0.14 s for this whole function, and it is a tenth of a one-epoch command-line run. torchvision still downloads.
    """
    tensors: list[torch.Tensor] = []
    for _, images, labels in _SPLITS:
        x, y = _read(files[images]), _read(files[labels])
        tensors += [x.reshape(len(x), _SIDE * _SIDE).float().div_(255.0), y.long()]
    return tensors


def _download_checked(root: Path, raw: Path, missing: list[str], dataset: str = "MNIST") -> dict[str, _IdxFile]:
    """Download the missing files and check them all; on any failure, remove what the download wrote.

    What is removed: files at names that held nothing before (plain and .gz) and the folders the download
    created, so a failed load leaves the data folder as it found it, symbolic links included.
    """
    created = [p for p in (raw, raw.parent, root, *root.parents) if not p.exists()]  # deepest first
    # what the download may write: names that hold nothing now, not even a broken link (which is not ours)
    new_files = [p for name in missing for p in (raw / name, raw / f"{name}.gz") if not os.path.lexists(p)]
    try:
        try:
            _download(root, dataset)
        except Exception as exc:  # torchvision raises RuntimeError, URLError or OSError depending on failure
            reason = f"the download failed ({type(exc).__name__})"
            raise DataNotFoundError(_missing_message(raw, missing, reason, dataset)) from None
        found = _check_present(raw, dataset)
        absent = [name for name in _FILES if name not in found]
        if absent:
            raise DataNotFoundError(_missing_message(raw, absent, "the download failed (files absent)", dataset))
        return found
    except BaseException:
        for path in new_files:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        for path in created:
            with contextlib.suppress(OSError):  # rmdir refuses a folder that is not empty
                path.rmdir()
        raise


def load_mnist(root: str | os.PathLike | None = None, device: torch.device | str = "cpu",
               download: bool = True) -> MNISTTensors:
    """Load MNIST (downloaded by ``torchvision.datasets.MNIST`` if missing) as (N, 784) floats in [0, 1] on ``device``.

    The raw files are checked before they are read (header, length, counts, label range). A failed load removes
    the folders it created and any partial download, and writes nothing into a folder it only reads.

    Args:
        root: folder holding ``MNIST/raw/`` (torchvision's layout); None uses :func:`default_data_root`.
        device: where the tensors live (the training device).
        download: try to download the files when they are missing.
    Returns:
        The four tensors as :class:`MNISTTensors`.
    Raises:
        MNISTFileError: a file is present but wrong (truncated, not an IDX file, labels not matching the images).
        DataNotFoundError: the files are missing and could not be downloaded, or the data folder cannot be used.
    """
    return _load("MNIST", root, device, download)


def load_fashion_mnist(root: str | os.PathLike | None = None, device: torch.device | str = "cpu",
                       download: bool = True) -> MNISTTensors:
    """Load Fashion-MNIST from ``root``/FashionMNIST/raw/ exactly as :func:`load_mnist` loads MNIST (same checks).

    Fashion-MNIST (Xiao et al. 2017) has MNIST's format, sizes and file names: 28x28 grey images of ten kinds of
    clothing. The book uses its test set as far out-of-distribution inputs for models trained on MNIST.
    """
    return _load("FashionMNIST", root, device, download)


def _load(dataset: str, root, device, download: bool) -> MNISTTensors:
    """The checked, cached loader behind :func:`load_mnist` and :func:`load_fashion_mnist`."""
    root = Path(root).expanduser() if root is not None else default_data_root()
    _check_folders(root, dataset)
    key = f"{dataset}:{root.resolve()}"
    if key not in _CACHE:
        raw = root / dataset / "raw"
        found = _check_present(raw, dataset)
        missing = [name for name in _FILES if name not in found]
        if missing and not download:
            raise DataNotFoundError(_missing_message(raw, missing, "downloading is switched off", dataset))
        if missing:
            found = _download_checked(root, raw, missing, dataset)
        _CACHE[key] = MNISTTensors(*_parse(found))
    return _CACHE[key].to(device, copy=True)  # the caller's own tensors: an in-place edit stays theirs
