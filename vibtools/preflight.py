"""Checks made before any work: each fails with a one-line ``ValueError`` before anything is read or created.

:func:`check_sweep` (the models can share one stacked pass), :func:`check_options` (options and memory),
:func:`folder_error` and :func:`check_writable` (the folder the runs go to), then :func:`check_data` once the data
is there. :func:`vibtools.train_sweep` and the command line call them in that order.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from .config import EVAL_CHUNK, TrainConfig, check_int, sweep_shared_fields
from .model import head_dim
from .store import checkpoint_bytes, run_shapes

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_writable(folder: Path, needed_bytes: int, what: str = "cache folder") -> None:
    """Raise ValueError (one line) unless ``folder`` can be created or written and has room; creates nothing.

    Args:
        folder: the folder files will be written to (it may not exist yet).
        needed_bytes: the space the files need; twice that must be free (a new file is written beside the old).
        what: how the message names the folder.
    """
    probe = folder
    try:
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
    except OSError as exc:  # a folder on the way that cannot be searched
        raise ValueError(f"{what} {str(folder)!r} cannot be reached ({exc.strerror or exc} on {str(probe)!r}): "
                         f"choose another folder") from None
    if not probe.is_dir():
        raise ValueError(f"{what} {str(folder)!r} cannot be created: {str(probe)!r} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {str(folder)!r} is not writable (no write permission on {str(probe)!r}): "
                         f"choose another folder")
    free = shutil.disk_usage(probe).free
    if free < 2 * needed_bytes:
        raise ValueError(f"{what} {str(folder)!r} has {free / 2**20:.0f} MiB free, the run needs about "
                         f"{2 * needed_bytes / 2**20:.0f} MiB: free some space or choose another folder")


def check_sweep(configs: Sequence[TrainConfig]) -> None:
    """Raise ValueError unless the configs can share one stacked pass (they differ only in beta and seed)."""
    if not isinstance(configs, (list, tuple)) or not configs:
        raise ValueError("train_sweep needs a non-empty list of TrainConfig")
    for c in configs:
        if not isinstance(c, TrainConfig):
            raise ValueError(f"train_sweep takes TrainConfig objects, got {type(c).__name__}")
    first = configs[0]
    if first.encoder != "mlp":
        from .model import ENCODERS

        if first.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {first.encoder!r}: register it first with "
                             f"vibtools.model.register_encoder (known: {', '.join(['mlp', *ENCODERS])})")
    for c in configs[1:]:
        for name in sweep_shared_fields():
            if getattr(c, name) != getattr(first, name):
                raise ValueError(f"models in one sweep must share {name}: {getattr(first, name)!r} vs "
                                 f"{getattr(c, name)!r}; split them into separate sweeps")


def memory_needed(configs: Sequence[TrainConfig]) -> int:
    """About how many bytes training and evaluating these models needs on the device, beside the data."""
    c, m = configs[0], len(configs)
    n_params = sum(math.prod(s) for s in run_shapes(c).values())
    weights = 6 * 4 * n_params * m  # weights, gradients, two Adam moments, EMA shadow, EMA model
    width = 2 * c.hidden + head_dim(c.k, c.covariance)
    draws = (c.n_eval_samples + 1) * m * max(EVAL_CHUNK, c.batch_size)
    latent = 3 * draws * c.k * 4  # noise, codes and their temporaries
    if c.covariance == "full":
        latent += 3 * m * EVAL_CHUNK * c.k * c.k * 4  # a Cholesky factor per example
    activations = 4 * m * EVAL_CHUNK * width * 4
    return weights + latent + activations



def available_memory(device: torch.device) -> int | None:
    """Free memory on the device in bytes (CPU: MemAvailable), or None when it cannot be told."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        free = None
        try:
            with open("/proc/meminfo") as fh:
                for line in fh:
                    if line.startswith("MemAvailable:"):
                        free = int(line.split()[1]) * 1024
        except OSError:
            try:
                free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            except (ValueError, OSError, AttributeError):
                pass
        limit = _cgroup_room()
        return limit if free is None else free if limit is None else min(free, limit)
    return None


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup (v2) memory limit, or None without a limit."""
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        used = int(open("/sys/fs/cgroup/memory.current").read().strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(int(limit) - used, 0)


def check_memory(configs: Sequence[TrainConfig], device: torch.device) -> None:
    """Raise ValueError (one line) when training these models would need more memory than the device has free.

    Kept because PyTorch's own failure is worse, measured by benchmarks/memory_preflight.py (CPU, K=200 000, about
    79 GiB asked of 21 GiB free): this check answered in one line after 7 s (the torch import); without it, a
    process capped at 8 GiB of address space printed a 48-line traceback after 51 s, and an uncapped one would
    meet the kernel's out-of-memory killer, which ends it with no message at all.
    """
    c = configs[0]
    need = memory_needed(configs)
    free = available_memory(device)
    if free is not None and need > free:
        raise ValueError(f"{len(configs)} model(s) with K={c.k}, hidden={c.hidden} need about {need / 2**30:.1f} GiB "
                         f"on {device.type}, more than the {free / 2**30:.1f} GiB free: use a smaller K or hidden "
                         f"width, or fewer models per sweep")


def check_options(configs: Sequence[TrainConfig], device: torch.device, checkpoint_every: int,
                  stop_after: int | None, compile: bool | str) -> None:
    """Raise ValueError (one line) on a bad option or too little memory, before the data is read; creates
    nothing."""
    check_int("checkpoint_every", checkpoint_every)
    if stop_after is not None:
        check_int("stop_after", stop_after)
    if not (isinstance(compile, bool) or compile in COMPILE_MODES):
        raise ValueError(f"compile must be True, False or a torch.compile mode ({', '.join(COMPILE_MODES)}), "
                         f"got {compile!r}")
    check_memory(configs, device)


def folder_error(configs: Sequence[TrainConfig], folder: Path | None) -> ValueError | None:
    """Why the run cache ``folder`` cannot take these runs, or None when it can (or there is none); creates nothing.

    Raises ValueError when the folder cannot exist at all. Returns (rather than raises) the error of an existing
    folder that cannot be written, for the caller to raise unless every run is already stored there: a read-only
    folder of finished runs can still serve them.
    """
    if folder is None:
        return None
    try:
        check_writable(folder, checkpoint_bytes(configs[0]) * len(configs))
    except ValueError as exc:
        if not folder.is_dir():
            raise  # nothing can be stored in a folder that does not exist
        return exc
    return None


def check_data(configs: Sequence[TrainConfig], data) -> None:
    """Raise ValueError (one line) when the data cannot serve these configs (shapes, counts, batch size)."""
    c = configs[0]
    if not all(isinstance(getattr(data, n, None), torch.Tensor) for n in ("train_x", "train_y", "test_x", "test_y")):
        raise ValueError(f"data must be MNISTTensors (from vibtools.load_mnist), got {type(data).__name__}")
    n_train, n_test = len(data.train_x), len(data.test_x)
    if data.train_x.shape[1:] != (784,) or data.test_x.shape[1:] != (784,):
        raise ValueError(f"images must have shape (N, 784), got {tuple(data.train_x.shape)} and "
                         f"{tuple(data.test_x.shape)}")
    if len(data.train_y) != n_train or len(data.test_y) != n_test:
        raise ValueError(f"data holds {len(data.train_y)} labels for {n_train} training images and "
                         f"{len(data.test_y)} for {n_test} test images: pass matching images and labels")
    if n_test < 1:
        raise ValueError("the test set is empty: the run evaluates on it after every epoch")
    if c.batch_size > n_train:
        raise ValueError(f"batch_size {c.batch_size} is larger than the {n_train} training images: "
                         f"use batch_size <= {n_train}")
