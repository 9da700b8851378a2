"""The run cache's policy: one verified file per (configuration, data, results version), one writer at a time.

A run is stored as ``<folder>/<key>.pt``; the key hashes the normalised config, the data fingerprint and
:data:`~vibtools.checkpoint.RESULTS_VERSION`, so a change in numerics never serves an old result. A stored run is
used only after its checksum and the keys and shapes the loader needs are verified; anything else is reported in
one line and retrained. A lock file beside each run (``filelock``) makes a second process wait for the first and
then load its run instead of training it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from filelock import FileLock, Timeout

from .checkpoint import (
    FORMAT,
    RESULTS_VERSION,
    CheckpointError,
    check_run_payload,
    default_cache_dir,
    load_checkpoint,
    remove_stale_tmp,
)
from .config import TrainConfig
from .model import parameter_shapes


def run_key(config: TrainConfig, data_fingerprint: str) -> str:
    """A stable file name for a run: the first 20 hex digits of a SHA-1 of config, data and results version."""
    blob = json.dumps({"format": FORMAT, "version": RESULTS_VERSION, "config": config.key_dict(),
                       "data": data_fingerprint}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:20]


def cache_folder(cache: bool | str | os.PathLike | None) -> Path | None:
    """The folder a ``cache=`` argument names: True for the default, a path (``~`` expanded), False/None for none."""
    if cache is False or cache is None:
        return None
    if cache is True:
        return default_cache_dir()
    return Path(cache).expanduser()


def check_writable(folder: Path, needed_bytes: int, what: str = "cache folder") -> None:
    """Raise ValueError (one line) unless ``folder`` can be created or written and has room; creates nothing.

    Args:
        folder: the folder files will be written to (it may not exist yet).
        needed_bytes: the space the files need; twice that must be free (a new file is written beside the old).
        what: how the message names the folder.
    """
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{what} {str(folder)!r} cannot be created: {str(probe)!r} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {str(folder)!r} is not writable (no write permission on {str(probe)!r}): "
                         f"choose another folder")
    free = shutil.disk_usage(probe).free
    if free < 2 * needed_bytes:
        raise ValueError(f"{what} {str(folder)!r} has {free / 2**20:.0f} MiB free, the run needs about "
                         f"{2 * needed_bytes / 2**20:.0f} MiB: free some space or choose another folder")


def checkpoint_bytes(config: TrainConfig) -> int:
    """About how large a partial run's file is: five float32 copies of the weights (raw, EMA, shadow, 2 moments)."""
    n = sum(math.prod(s) for s in parameter_shapes(config.k, config.covariance, config.hidden).values())
    return 5 * 4 * n + 2**20



class RunCache:
    """The run files of one cache folder: paths, locks, verified reads.

    Args:
        folder: the cache folder (created on the first write, not before).
    """

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, config: TrainConfig, data_fingerprint: str) -> Path:
        """Where the run of ``config`` on this data is stored."""
        return self.folder / f"{run_key(config, data_fingerprint)}.pt"

    @contextlib.contextmanager
    def locked(self, paths: Sequence[Path]) -> Iterator[None]:
        """Hold the lock of every run in ``paths`` (taken in sorted order, so two sweeps never deadlock).

        While the locks are held no other process trains or writes these runs, so temporary files left beside
        them are stale and are removed.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            for path in sorted(set(paths)):
                lock = FileLock(str(path.with_name(f".{path.name}.lock")))
                try:
                    lock.acquire(timeout=1)
                except Timeout:
                    warnings.warn(f"waiting for another process that is training {path.name} in {self.folder}",
                                  stacklevel=4)
                    lock.acquire()
                stack.callback(lock.release)
                remove_stale_tmp(path)
                remove_stale_tmp(path.with_suffix(".json"))  # the command line's history file beside the run
            yield

    def read(self, path: Path, config: TrainConfig, data_fingerprint: str) -> dict | None:
        """The verified stored run at ``path``, or None; a file that fails any check is reported in one line."""
        if not path.exists():
            return None
        try:
            payload = load_checkpoint(path)
            check_run_payload(payload, parameter_shapes(config.k, config.covariance, config.hidden), path)
            try:
                same = TrainConfig.from_dict(payload["config"]).key_dict() == config.key_dict()
            except (TypeError, ValueError):
                same = False
            if not same or payload["data"] != data_fingerprint:
                raise CheckpointError(f"{path} holds a different configuration or data set")
            if payload["epochs_done"] < config.epochs:  # to resume, the training state must be whole too
                check_run_payload(payload, parameter_shapes(config.k, config.covariance, config.hidden), path,
                                  need_training=True)
            return payload
        except CheckpointError as exc:
            warnings.warn(f"ignoring stored run: {exc}; it will be retrained and overwritten", stacklevel=3)
            return None
