"""The stored-run file format: atomic writes, a checksum, safe loads, and the keys and shapes a loader needs.

A run file holds plain data only (tensors, numbers, strings, lists, dicts), so it is read with
``torch.load(..., weights_only=True)`` and never unpickles code. Its payload:

- ``format``, ``version`` (:data:`RESULTS_VERSION`), ``checksum`` (SHA-256 of everything else, see :func:`digest`);
- ``config`` (``TrainConfig.as_dict()``), ``data`` (the data fingerprint), ``epochs_done``, ``device``;
- ``model`` and ``ema_model``: the raw and the debiased EMA weights, by parameter name, (in, out) layout;
- ``history`` (per-epoch metrics) and ``final`` (final evaluation, None until the run is finished);
- ``training``: what resuming needs (Adam moments, schedule, EMA shadow, random-stream states and the device type
  they belong to). A finished run drops it: loading a finished run needs only the two models and their record.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from .data import user_folder

FORMAT = "vibtools-run"
# The version of the numbers a run produces. Bump it whenever training or evaluation numerics change: stored runs
# of another version are never served (the run-cache key includes it). tests/test_results_version.py fails when
# the training trajectory changes while this stays the same.
RESULTS_VERSION = 2
ENV_CACHE = "VIBTOOLS_CACHE"
TMP_SUFFIX = ".tmp"
METRICS = ("izy", "izx", "err", "avg_err", "acc", "avg_acc")  # what every evaluation records
HISTORY_KEYS = ("epoch", "lr", "seconds", "train_class_bits", "train_info_bits", "train_err",
                *(f"{tag}_{m}" for tag in ("test", "ema_test") for m in METRICS))  # per-epoch columns


class CheckpointError(RuntimeError):
    """A stored run could not be read, is damaged, or does not belong to the configuration asked for."""


def default_cache_dir() -> Path:
    """The run cache: $VIBTOOLS_CACHE if set, else ~/.cache/vibtools/runs."""
    return user_folder(ENV_CACHE, "runs")


def digest(obj: Any) -> str:
    """SHA-256 of a nested payload: keys, numbers, strings, and every tensor's dtype, shape and bytes."""
    h = hashlib.sha256()

    def walk(o: Any) -> None:
        """Feed one value to the hash, recursively, in a canonical order."""
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(o, Mapping):
            h.update(b"{")
            for k in sorted(o, key=str):
                h.update(json.dumps(str(k)).encode())
                walk(o[k])
            h.update(b"}")
        elif isinstance(o, (list, tuple)):
            h.update(b"[")
            for v in o:
                walk(v)
            h.update(b"]")
        else:
            h.update(json.dumps(o).encode())

    walk(obj)
    return h.hexdigest()


def _umask() -> int:
    """The process's current file-creation mask: from /proc (no side effect), else by setting and restoring it."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: briefly set, then restored
    os.umask(mask)
    return mask


def tmp_prefix(path: Path) -> str:
    """The name prefix of the temporary files an atomic write of ``path`` creates beside it."""
    return f".{path.name}."


def atomic_write(path: str | os.PathLike, write: Callable) -> None:
    """Write a file through a temporary file beside it and a rename, so a reader never sees half a file.

    The file gets the usual permissions (0666 less the umask); the temporary file is removed on any error,
    Ctrl-C and SIGTERM included (a SIGKILL leaves it behind: :func:`remove_stale_tmp` clears it later).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=tmp_prefix(path), suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_tmp(path: str | os.PathLike) -> list[Path]:
    """Delete temporary files left beside ``path`` by a killed writer; call only while holding the run's lock."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = [p for p in path.parent.glob(f"{tmp_prefix(path)}*{TMP_SUFFIX}") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` (tensors, numbers, strings, lists, dicts only) with format, version and checksum."""
    body = {"format": FORMAT, "version": RESULTS_VERSION, **payload}
    body.pop("checksum", None)
    body["checksum"] = digest(body)
    atomic_write(path, lambda fh: torch.save(body, fh))


def save_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write(path, lambda fh: fh.write(json.dumps(obj, indent=1).encode()))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a run file written by :func:`save_checkpoint` without unpickling code, and verify its checksum.

    Raises:
        FileNotFoundError: there is no such file.
        CheckpointError: the file is unreadable, damaged, of another format or results version.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(f"{path} is not a readable vibtools checkpoint ({type(exc).__name__}: {first})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} has format {found!r}, expected {FORMAT!r}")
    if payload.get("version") != RESULTS_VERSION:
        raise CheckpointError(f"{path} holds results version {payload.get('version')!r}, this vibtools makes "
                              f"version {RESULTS_VERSION}")
    body = {k: v for k, v in payload.items() if k != "checksum"}
    if payload.get("checksum") != digest(body):
        raise CheckpointError(f"{path} is damaged: its checksum does not match its contents")
    return payload


def check_run_payload(payload: dict[str, Any], shapes: dict[str, tuple[int, ...]], path: str | os.PathLike,
                      need_training: bool = False) -> None:
    """Raise CheckpointError naming the first key or tensor shape a loader needs that the payload lacks.

    Args:
        payload: a loaded run file.
        shapes: the parameter shapes of one model of the run's configuration.
        path: the file, for the message.
        need_training: also require the training state (to resume).
    """

    def fail(what: str) -> None:
        """Raise the one-line error."""
        raise CheckpointError(f"{path} {what}")

    for key, kind in (("config", dict), ("data", str), ("epochs_done", int), ("model", dict), ("ema_model", dict),
                      ("history", dict)):
        if not isinstance(payload.get(key), kind):
            fail(f"lacks {key!r} (or it is not a {kind.__name__})")
    for part in ("model", "ema_model"):
        tensors = payload[part]
        for name, shape in shapes.items():
            t = tensors.get(name)
            if not isinstance(t, torch.Tensor):
                fail(f"lacks the tensor {part}[{name!r}]")
            if tuple(t.shape) != tuple(shape):
                fail(f"has {part}[{name!r}] of shape {tuple(t.shape)}, expected {tuple(shape)}")
    done = payload["epochs_done"]
    for key in HISTORY_KEYS:
        column = payload["history"].get(key)
        if not isinstance(column, list) or len(column) != done:
            fail(f"has no history[{key!r}] of {done} epochs")
    final = payload.get("final")
    if final is not None:
        for split in ("raw_test", "ema_test", "ema_train"):
            if not isinstance(final, dict) or not isinstance(final.get(split), dict):
                fail(f"lacks final[{split!r}]")
            missing = [k for k in METRICS if not isinstance(final[split].get(k), (int, float))]
            if missing:
                fail(f"lacks final[{split!r}][{missing[0]!r}]")
    if need_training:
        tr = payload.get("training")
        if not isinstance(tr, dict):
            fail("lacks the training state needed to resume")
        for key in ("adam", "scheduler", "ema", "rng", "device_type"):
            if key not in tr:
                fail(f"lacks training[{key!r}]")
        for key in ("noise", "batches", "dropout"):
            if key == "dropout" and isinstance(tr["rng"], dict) and key not in tr["rng"]:
                continue  # saved before dropout existed: its models use none
            if not isinstance(tr["rng"], dict) or not isinstance(tr["rng"].get(key), torch.Tensor):
                fail(f"lacks training['rng'][{key!r}]")
            if tr["rng"][key].dtype != torch.uint8:
                fail(f"has a training['rng'][{key!r}] that is not a generator state")
        for key in ("adam", "ema"):
            if not isinstance(tr[key], dict):
                fail(f"has a training[{key!r}] that is not a dict")
        if not isinstance(tr["scheduler"], dict) or not isinstance(tr["ema"].get("steps"), int):
            fail("has no usable schedule or EMA step count")
        if tr["adam"] and not isinstance(tr["adam"].get("step"), torch.Tensor):
            fail("has no usable training['adam']['step']")
        for key in ("exp_avg", "exp_avg_sq"):
            moments = tr["adam"].get(key) if tr["adam"] else None
            for name, shape in shapes.items():
                t = moments.get(name) if isinstance(moments, dict) else None
                if tr["adam"] and (not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(shape)):
                    fail(f"has no usable training['adam'][{key!r}][{name!r}]")
        shadow = tr["ema"].get("shadow")
        for name, shape in shapes.items():
            t = shadow.get(name) if isinstance(shadow, dict) else None
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(shape):
                fail(f"has no usable training['ema']['shadow'][{name!r}]")
