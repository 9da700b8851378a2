"""Command line: ``python -m vibtools train`` runs the reference recipe and prints the reference's lines."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

from .data import DataNotFoundError
from .train import TrainConfig


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit status 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def _beta(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"beta must be a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"beta must be a finite number >= 0, got {text!r}")
    return value


def _positive(name: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= 1, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= 1, got {text!r}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The ``vibtools`` argument parser."""
    p = _Parser(prog="python -m vibtools", description="Deep Variational Information Bottleneck on MNIST.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="train one VIB model with the reference recipe",
                       description="Train one VIB model (reference recipe: batch 100, Adam 1e-4 with betas "
                                   "(0.5, 0.999), x0.97 every 2 epochs, EMA 0.999) and print the reference's "
                                   "per-epoch line, then the EMA weights' line. A run already in --out is "
                                   "loaded, an interrupted one resumed.")
    t.add_argument("--beta", type=_beta, default=1e-3, help="weight of the info loss, >= 0 (default 1e-3)")
    t.add_argument("--k", type=_positive("k"), default=256, help="latent size K, >= 1 (default 256; 2 to plot)")
    t.add_argument("--epochs", type=_positive("epochs"), default=10, help="training epochs, >= 1 (default 10)")
    t.add_argument("--seed", type=int, default=0, help="random seed for weights, noise and batches (default 0)")
    t.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    t.add_argument("--out", default="runs", help="output folder for the checkpoint and history JSON "
                                                 "(default ./runs)")
    t.add_argument("--data", default=None, help="MNIST folder holding MNIST/raw/ (default $VIBTOOLS_DATA, else "
                                                "~/.cache/vibtools/data; downloaded there if missing)")
    t.add_argument("--covariance", choices=("diag", "full", "none"), default="diag",
                   help="q(z|x): diag (reference), full (paper's K=2 encoder), none (deterministic baseline)")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def _check_paths(args) -> None:
    if args.data is not None:
        data = Path(args.data)
        if not data.is_dir() or not os.access(data, os.R_OK | os.X_OK):
            raise SystemExit(f"python -m vibtools: error: data folder {args.data!r} is not a readable folder: "
                             f"pass the folder that holds MNIST/raw/")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"python -m vibtools: error: --out {args.out!r} exists and is not a folder")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    from .device import pick_device

    try:
        device = pick_device(args.device)
    except ValueError as exc:
        print(f"python -m vibtools: error: {exc}", file=sys.stderr)
        return 2
    try:
        _check_paths(args)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    from .data import load_mnist
    from .evaluate import format_line
    from .train import train

    try:
        data = load_mnist(args.data, device)
    except DataNotFoundError as exc:
        print(f"python -m vibtools: error: {exc}", file=sys.stderr)
        return 2
    config = TrainConfig(beta=args.beta, k=args.k, epochs=args.epochs, seed=args.seed, covariance=args.covariance)

    def show(epoch: int, rows: list[dict]) -> None:
        m = {k[len("test_"):]: v for k, v in rows[0].items() if k.startswith("test_")}
        print(format_line(str(epoch), m), flush=True)

    t0 = time.perf_counter()
    result = train(config, data, device=str(device), cache=Path(args.out), progress=not args.no_progress,
                   on_epoch=show)
    if result.from_cache:
        for i in range(len(result.history["epoch"])):
            show(i, [{k: v[i] for k, v in result.history.items()}])
    print(format_line("EMA", result.final["ema_test"]))
    history = Path(args.out) / f"{result.path.stem}.json" if result.path else Path(args.out) / "history.json"
    result.save_history(history)
    print(f"# device={device.type} wall={time.perf_counter() - t0:.1f}s cached={result.from_cache} "
          f"checkpoint={result.path} history={history}")
    return 0
