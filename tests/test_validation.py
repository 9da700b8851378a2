"""Input validation in the Python API: bad configs, options, devices and data raise ValueError with one line before
any work, with nothing written; one number check serves configs, options, attacks, evaluation and the CLI. (The
command line's exit status 2 is in test_cli.py, damaged MNIST files in test_data.py, unwritable cache folders in
test_store.py.)"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TINY, fit_sweep

import vibtools as vt
import vibtools.training


def listing(folder) -> list[str]:
    """Every path under ``folder`` (empty if it does not exist)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# ---------------------------------------------------------------- bad input: ValueError before any work


def bad_calls(small, folder):
    """name -> (a call that must raise ValueError, words the one-line message must hold)."""
    def with_data(data, config=TINY, **kw):
        return lambda: vt.train(config, data, device="cpu", cache=folder, progress=False, **kw)

    return {
        "seed_too_large": (lambda: TINY.with_(seed=10**13), "seed must be an integer from 0"),
        "negative_seed": (lambda: TINY.with_(seed=-1), "seed must be"),
        "bool_k": (lambda: TINY.with_(k=True), "k must be an integer"),
        "lr_zero": (lambda: TINY.with_(lr=0), "lr must be"),
        "adam_betas": (lambda: TINY.with_(adam_betas=(0.5,)), "adam_betas"),
        "decay_rate": (lambda: TINY.with_(decay_rate=0), "decay_rate"),
        "batch_larger_than_data": (with_data(small, TINY.with_(batch_size=5000)), "larger than the 1000"),
        "checkpoint_every_zero": (with_data(small, checkpoint_every=0), "checkpoint_every"),
        "stop_after_zero": (with_data(small, stop_after=0), "stop_after"),
        "k_too_large": (with_data(small, TINY.with_(k=400_000_000)), "GiB"),
        "hidden_too_large": (with_data(small, TINY.with_(hidden=2_000_000)), "GiB"),
        "empty_test_set": (with_data(small.subset(1000, 0)), "test set is empty"),
        "labels_do_not_match": (with_data(vt.MNISTTensors(small.train_x, small.train_y[:-1], small.test_x,
                                                          small.test_y)), "labels for"),
        "device_index": (lambda: vt.train(TINY, small, device="cpu:x", cache=folder), "unknown device"),
        "device_kind": (lambda: vt.train(TINY, small, device="tpu", cache=folder), "unknown device"),
        "evaluate_zero_samples": (lambda: vt.evaluate(vt.VIB(8, hidden=32, seed=0), small.test_x, small.test_y,
                                                      n_samples=0), "n_samples"),
        "evaluate_bad_seed": (lambda: vt.evaluate(vt.VIB(8, hidden=32, seed=0), small.test_x, small.test_y,
                                                  seed=2**40), "seed"),
        "sweep_of_nothing": (lambda: vt.train_sweep([], small, cache=folder), "non-empty"),
    }


CASES = ["seed_too_large", "negative_seed", "bool_k", "lr_zero", "adam_betas", "decay_rate", "batch_larger_than_data",
         "checkpoint_every_zero", "stop_after_zero", "k_too_large", "hidden_too_large", "empty_test_set",
         "labels_do_not_match", "device_index", "device_kind", "evaluate_zero_samples", "evaluate_bad_seed",
         "sweep_of_nothing"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_raises_one_line_before_any_work(small, tmp_path, monkeypatch, case):
    folder = tmp_path / "cache"
    call, words = bad_calls(small, folder)[case]
    steps = []
    monkeypatch.setattr(vibtools.training, "train_step", lambda *a: steps.append(1))
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert words in message and "\n" not in message, message
    assert not steps and not folder.exists()


def test_option_errors_come_before_the_data_is_read(tmp_path, monkeypatch):
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("VIBTOOLS_DATA", str(empty))
    for kwargs, words in (({"checkpoint_every": 0}, "checkpoint_every"), ({"compile": "bogus"}, "compile must be"),
                          ({"stop_after": -1}, "stop_after")):
        with pytest.raises(ValueError, match=words):
            vt.train(TINY, None, device="cpu", cache=tmp_path / "cache", progress=False, **kwargs)
    assert listing(empty) == [] and not (tmp_path / "cache").exists()


# ---------------------------------------------------------------- numbers, devices, sweeps


def test_one_number_check_serves_configs_options_attacks_evaluation_and_the_cli():
    """check_int and check_number: one message format wherever a number is checked, bools and NaN refused."""
    from vibtools.cli import _beta, _integer
    from vibtools.config import check_int, check_number

    assert check_int("k", 3) == 3 and check_number("beta", 0.0) == 0.0
    for bad in (0, True, 2.0, "3", None):
        with pytest.raises(ValueError, match=r"^k must be an integer >= 1, got "):
            check_int("k", bad)
    with pytest.raises(ValueError, match=r"^seed must be an integer from 0 to 9, got 10$"):
        check_int("seed", 10, 0, 9)
    for bad, span in ((math.nan, ">= 0"), (math.inf, ">= 0"), (-1.0, ">= 0"), (False, ">= 0")):
        with pytest.raises(ValueError, match=f"^beta must be a finite number {span}, got "):
            check_number("beta", bad)
    with pytest.raises(ValueError, match=r"decay_rate must be a finite number in \(0, 1\], got 0"):
        TINY.with_(decay_rate=0)
    with pytest.raises(ValueError, match=r"^lr must be a finite number > 0, got 0$"):
        check_number("lr", 0, low_open=True)
    x, y = torch.rand(4, 784), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="^draws must be an integer >= 1, got 0$"):
        vt.attacks.fgsm(vt.VIB(k=2, hidden=8, seed=0), x, y, 0.1, draws=0)
    with pytest.raises(ValueError, match="^n_samples must be an integer >= 1, got 0$"):
        vt.evaluate(vt.VIB(k=2, hidden=8, seed=0), x, y, n_samples=0)
    import argparse

    for parse, text, words in ((_beta, "abc", "beta must be a finite number >= 0, got 'abc'"),
                               (_integer("k", 1), "2.5", "k must be an integer >= 1, got '2.5'")):
        with pytest.raises(argparse.ArgumentTypeError, match=words):
            parse(text)


def test_numpy_numbers_are_accepted_in_configs():
    import numpy as np

    c = TINY.with_(beta=np.float32(0.5), k=np.int64(8), lr=np.float64(1e-3))
    assert c.beta == 0.5 and type(c.beta) is float and type(c.k) is int


def test_device_names_must_be_canonical():
    for name in ("cuda:", "cuda:01", "cpu:0", "cuda:-1", "cuda:x"):
        with pytest.raises(ValueError):
            vt.pick_device(name)


def test_sweep_rejects_mismatched_configs(small):
    with pytest.raises(ValueError, match="share k"):
        fit_sweep([TINY, TINY.with_(k=4)], small, cache=False)
    with pytest.raises(ValueError):
        fit_sweep([], small, cache=False)
    with pytest.raises(ValueError, match="beta"):
        TINY.with_(beta=-1.0)


@pytest.mark.parametrize("threads, words", [(1, "1 thread)"), (2, "2 threads)")])
def test_a_cpu_is_described_with_its_thread_count(monkeypatch, threads, words):
    from vibtools.device import describe_device

    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    assert describe_device(torch.device("cpu")).endswith(words)
