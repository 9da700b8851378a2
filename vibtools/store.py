"""The run store: where runs are kept, their file format, and the checks made before any work.

Dicts in, dicts out: this module knows paths, bytes and configs, not how training works (it imports nothing of
:mod:`vibtools.training`, and nothing of the MNIST loader).

**The file format.** A run file holds plain data only (tensors, numbers, strings, lists, dicts), so it is read with
``torch.load(..., weights_only=True)`` and never unpickles code. Its payload:

- ``format``, ``version`` (:data:`RESULTS_VERSION`), ``checksum`` (SHA-256 of everything else, see :func:`digest`);
- ``config`` (``TrainConfig.as_dict()``), ``data`` (the data fingerprint), ``epochs_done``, ``device``;
- ``model`` and ``ema_model``: the raw and the debiased EMA weights, by parameter name, (in, out) layout;
- ``history`` (per-epoch metrics) and ``final`` (final evaluation, None until the run is finished);
- ``training``: what resuming needs (Adam moments, schedule, EMA shadow, random-stream states and the device type
  they belong to). A finished run drops it: loading a finished run needs only the two models and their record.

**The cache.** A run is stored as ``<folder>/<key>.pt``; the key hashes the normalised config, the data fingerprint
and :data:`RESULTS_VERSION`, so a change in numerics never serves an old result. A stored run is used only after
its checksum and the keys and shapes the loader needs are verified; anything else is reported in one line and
retrained. A lock file beside each run (``filelock``) makes a second process wait for the first and then load its
run instead of training it again.

The checks made before any work (the sweep, the options, the memory, the folder and the data) are in
:mod:`vibtools.preflight`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout

from .config import (  # noqa: F401  (RESULTS_VERSION re-exported: it was defined here)
    EVAL_CHUNK,
    RESULTS_VERSION,
    TrainConfig,
    check_int,
    sweep_shared_fields,
    user_path,
)
from .model import parameter_shapes
from .paths import user_folder  # noqa: F401  (re-exported)

FORMAT = "vibtools-run"
ENV_CACHE = "VIBTOOLS_CACHE"
TMP_SUFFIX = ".tmp"
METRICS = ("izy", "izx", "err", "avg_err", "acc", "avg_acc")  # what every evaluation records
HISTORY_KEYS = ("epoch", "lr", "seconds", "train_class_bits", "train_info_bits", "train_err",
                *(f"{tag}_{m}" for tag in ("test", "ema_test") for m in METRICS))  # per-epoch columns


class CheckpointError(RuntimeError):
    """A stored run could not be read, is damaged, or does not belong to the configuration asked for."""


# ----------------------------------------------------------------------------- the file format
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


def tmp_prefix(path: Path) -> str:
    """The name prefix of the temporary files an atomic write of ``path`` creates beside it (then the writer's pid)."""
    return f".{path.name}."


def _writer_gone(tmp: Path, path: Path) -> bool:
    """True when the process that named the temporary file ``tmp`` (its pid follows the prefix) has ended."""
    pid = tmp.name[len(tmp_prefix(path)):].split(".", 1)[0]
    if not pid.isdigit():
        return True  # not written by a process of this naming: an older vibtools's, long finished
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, under another user
        return False
    return False


def atomic_write(path: str | os.PathLike, write: Callable) -> None:
    """Write a file through a temporary file beside it and a rename, so a reader never sees half a file.

    The file gets the usual permissions (0666 less the umask, which the kernel applies); the temporary file, of a
    random name after the writer's pid, is removed on any error, Ctrl-C and SIGTERM included (a SIGKILL leaves it
    behind: :func:`remove_stale_tmp` clears it later).
    """
    path = Path(path)
    tmp = _staged(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _staged(path: Path, write: Callable) -> Path:
    """Write a file's contents to a temporary file beside it (synced to disk) and return that file's path; on any
    error the temporary file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{tmp_prefix(path)}{os.getpid()}.{os.urandom(6).hex()}{TMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is None:  # a failed write or sync names no file: name the one it was for
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def remove_stale_tmp(path: str | os.PathLike) -> list[Path]:
    """Delete temporary files left beside ``path`` by a writer that has ended (killed); a live writer's stay."""
    path = Path(path)  # no folder, no files: glob finds none
    stale = [p for p in path.parent.glob(f"{tmp_prefix(path)}*{TMP_SUFFIX}") if p.is_file() and _writer_gone(p, path)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _checkpoint_blob(payload: dict[str, Any]) -> io.BytesIO:
    """A run file's bytes: ``payload`` with format, version and checksum, serialised in memory (so that a failed
    write, a full disk, is an OSError, not torch's error)."""
    body = {"format": FORMAT, "version": RESULTS_VERSION, **payload}
    body.pop("checksum", None)
    body["checksum"] = digest(body)
    blob = io.BytesIO()
    torch.save(body, blob)
    return blob


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` (tensors, numbers, strings, lists, dicts only) with format, version and checksum."""
    blob = _checkpoint_blob(payload)
    atomic_write(path, lambda fh: fh.write(blob.getbuffer()))


def save_checkpoints(items: Sequence[tuple[str | os.PathLike, dict[str, Any]]]) -> None:
    """Write the run files of one stacked pass as one: every file to a temporary file first, then all renamed.

    A failure while writing (a full disk) leaves every run file as it was, so a pass never ends with some of its
    models finished and others not (which would split it on resume). Hold interrupts around the call
    (``interrupts.held``) so that a Ctrl-C cannot land between the renames either. A rename that fails
    after an earlier one succeeded (renames within one folder do not fail for lack of space) or a SIGKILL between
    them can still leave the group split.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, payload in items:
            blob = _checkpoint_blob(payload)
            staged.append((_staged(Path(path), lambda fh, b=blob: fh.write(b.getbuffer())), Path(path)))
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise


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

    def check_tensors(tensors: Any, where: str) -> None:
        """Fail unless ``tensors`` is a dict holding a tensor of its shape for every parameter."""
        for name, shape in shapes.items():
            t = tensors.get(name) if isinstance(tensors, dict) else None
            if not isinstance(t, torch.Tensor):
                fail(f"lacks the tensor {where}[{name!r}]")
            if tuple(t.shape) != tuple(shape):
                fail(f"has {where}[{name!r}] of shape {tuple(t.shape)}, expected {tuple(shape)}")
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                fail(f"has values in {where}[{name!r}] that are not finite (a diverged run): delete it and train "
                     f"with a smaller beta or learning rate")

    for key, kind in (("config", dict), ("data", str), ("epochs_done", int), ("model", dict), ("ema_model", dict),
                      ("history", dict)):
        if not isinstance(payload.get(key), kind):
            fail(f"lacks {key!r} (or it is not a {kind.__name__})")
    for part in ("model", "ema_model"):
        check_tensors(payload[part], part)
    done = payload["epochs_done"]
    for key in HISTORY_KEYS:
        column = payload["history"].get(key)
        if not isinstance(column, list) or len(column) != done:
            fail(f"has no history[{key!r}] of {done} epochs")
    if payload["history"]["epoch"] != list(range(done)):
        fail(f"has a history whose epochs are not 0 to {done - 1}")
    final = payload.get("final")
    if final is not None:
        for split in ("raw_test", "ema_test", "ema_train"):
            if not isinstance(final, dict) or not isinstance(final.get(split), dict):
                fail(f"lacks final[{split!r}]")
            missing = [k for k in METRICS if not isinstance(final[split].get(k), (int, float))
                       or not math.isfinite(final[split][k])]
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
        for key in ("exp_avg", "exp_avg_sq") if tr["adam"] else ():
            check_tensors(tr["adam"].get(key), f"training['adam'][{key!r}]")
        check_tensors(tr["ema"].get("shadow"), "training['ema']['shadow']")
        # the invariants a resume relies on, beyond the checksum (which a hand edit can recompute)
        if tr["scheduler"].get("last_epoch") != done:
            fail(f"has a learning-rate schedule at epoch {tr['scheduler'].get('last_epoch')!r}, not {done}")
        if tr["adam"] and int(tr["adam"]["step"].reshape(-1)[0]) != tr["ema"]["steps"]:
            fail(f"has {int(tr['adam']['step'].reshape(-1)[0])} Adam steps but {tr['ema']['steps']} EMA steps")


# ----------------------------------------------------------------------------- the cache
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
    return user_path(cache, "cache")


def run_shapes(config: TrainConfig) -> dict[str, tuple[int, ...]]:
    """The shape of each stored parameter of one model of this config (a learned marginal's and CEB's backward
    encoder's included)."""
    return parameter_shapes(config.k, config.covariance, config.hidden, mixture=config.mixture,
                            encoder=config.encoder, bottleneck=config.bottleneck)


def checkpoint_bytes(config: TrainConfig) -> int:
    """About how large a partial run's file is: five float32 copies of the weights (raw, EMA, shadow, 2 moments)."""
    n = sum(math.prod(s) for s in run_shapes(config).values())
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
        if not os.path.lexists(path):
            return None
        if path.is_dir():  # a folder cannot be replaced by a run file: say so before any training
            raise ValueError(f"{path} is a folder where this run's file goes: move it away or choose another folder")
        try:
            if not path.is_file():  # a FIFO would block the read forever; a folder or a device is no run either
                raise CheckpointError(f"{path} is not a regular file")
            payload = load_checkpoint(path)
            check_run_payload(payload, run_shapes(config), path)
            try:
                same = TrainConfig.from_dict(payload["config"]).key_dict() == config.key_dict()
            except (TypeError, ValueError):
                same = False
            if not same or payload["data"] != data_fingerprint:
                raise CheckpointError(f"{path} holds a different configuration or data set")
            if payload["epochs_done"] < config.epochs:  # to resume, the training state must be whole too
                check_run_payload(payload, run_shapes(config), path,
                                  need_training=True)
            return payload
        except CheckpointError as exc:
            warnings.warn(f"ignoring stored run: {exc}; it will be retrained and overwritten", stacklevel=3)
            return None
