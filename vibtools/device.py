"""Device selection: CUDA, then Apple MPS, then CPU (the training chapter explains why data lives on the device)."""

from __future__ import annotations

import platform
import warnings
from collections.abc import Callable

import torch

_KNOWN = ("cpu", "cuda", "mps")


def pick_device(name: str | None = None) -> torch.device:
    """Return the training device: ``name`` if given ("cpu", "cuda", "cuda:1", "mps"), else the best available.

    Args:
        name: an explicit device name, or None / "auto" to choose CUDA, then MPS, then CPU.
    Returns:
        The chosen ``torch.device``.
    Raises:
        ValueError: the name is unknown or the device is not available here.
    """
    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    text = str(name)
    kind, sep, index = text.partition(":")
    canonical = index.isdigit() and str(int(index)) == index
    if kind not in _KNOWN or (sep and not (kind == "cuda" and canonical)):
        raise ValueError(f"unknown device {name!r}: use one of auto, cpu, cuda, cuda:N, mps")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for but CUDA is not available here: use --device cpu or auto")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} asked for but this machine has {torch.cuda.device_count()} CUDA "
                         f"device(s): use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {name!r} asked for but Apple MPS is not available here: use --device cpu or auto")
    return torch.device(name)


def configure_fast_math(device: torch.device) -> None:
    """Allow TF32 matrix products on GPUs that have them (Ampere and newer); a no-op on CPU."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")


def describe_device(device: torch.device | str) -> str:
    """A short human description of a device, e.g. "cpu (x86_64, 2 threads)" or "cuda (NVIDIA H100 80GB HBM3)"."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    if dev.type == "cpu":
        n = torch.get_num_threads()
        return f"cpu ({platform.processor() or platform.machine()}, {n} thread{'s' if n != 1 else ''})"
    return dev.type


def maybe_compile(fn: Callable, mode: bool | str) -> Callable:
    """``torch.compile(fn)`` that falls back to the plain ``fn``, with a warning, if compiling fails."""
    if not mode:
        return fn
    compiled = torch.compile(fn, mode=None if mode is True else mode)
    state = {"fn": compiled, "tried": False}

    def call(*args):
        """Run the compiled function; on its first failure, switch to the plain one for good."""
        if state["tried"]:
            return state["fn"](*args)
        state["tried"] = True
        try:
            return compiled(*args)
        except Exception as exc:  # compile errors surface on the first call (no compiler, unsupported op)
            if not _is_compile_error(exc):
                raise  # an error of the step itself (shapes, memory) is not a compiler's: report it as it is
            warnings.warn(f"torch.compile failed ({type(exc).__name__}); using the plain step", stacklevel=2)
            state["fn"] = fn
            return fn(*args)

    return call


def _is_compile_error(exc: BaseException) -> bool:
    """True for the errors torch.compile raises when it cannot compile (Dynamo, Inductor, a missing compiler)."""
    module = type(exc).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor")) or isinstance(exc, (ImportError, OSError))
