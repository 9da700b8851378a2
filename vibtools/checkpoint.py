"""Checkpoints and the run cache: atomic writes, safe loads, one file per trained configuration (chapter 3)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .data import user_folder

FORMAT = "vibtools-run-v1"
ENV_CACHE = "VIBTOOLS_CACHE"


class CheckpointError(RuntimeError):
    """A stored run could not be read or does not belong to the configuration asked for."""


def default_cache_dir() -> Path:
    """The run cache: $VIBTOOLS_CACHE if set, else ~/.cache/vibtools/runs."""
    return user_folder(ENV_CACHE, "runs")


def run_key(config: dict, data_fingerprint: str) -> str:
    """A stable name for a (configuration, data) pair: the first 20 hex digits of a SHA-1."""
    blob = json.dumps({"format": FORMAT, "config": config, "data": data_fingerprint}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:20]


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` (tensors, numbers, strings, lists, dicts only) to a temporary file, then rename it."""
    _atomic_write(Path(path), lambda fh: torch.save({"format": FORMAT, **payload}, fh))


def save_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    _atomic_write(Path(path), lambda fh: fh.write(json.dumps(obj, indent=1).encode()))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` without unpickling arbitrary objects.

    Raises:
        CheckpointError: the file is unreadable, corrupted, or not a vibtools run of this format.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable vibtools checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} has format {found!r}, expected {FORMAT!r}")
    return payload
