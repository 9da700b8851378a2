"""The training core's contracts: RNG hygiene, the EMA the trainer keeps, every encoder through train(), one
evaluation per set of weights, cache keys of equal configs, loading without training state, and bad input
rejected before any work with nothing written."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import vibtools as vt
import vibtools.evaluation
import vibtools.store
import vibtools.training
from vibtools import TrainConfig

TINY = TrainConfig(k=8, hidden=32, epochs=2)


def fit(config, data, **kwargs):
    """train() on the CPU without progress bars."""
    return vt.train(config, data, device="cpu", progress=False, **kwargs)


def listing(folder) -> list[str]:
    """Every path under ``folder`` (empty if it does not exist)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# ---------------------------------------------------------------- random state, EMA, encoders


def test_train_leaves_the_global_random_state_alone(small, cache_dir):
    before = torch.random.get_rng_state()
    fit(TINY, small, cache=cache_dir)
    assert torch.equal(torch.random.get_rng_state(), before), "training moved the global generator"
    fit(TINY, small, cache=cache_dir)  # a cache hit too
    assert torch.equal(torch.random.get_rng_state(), before), "loading a stored run moved the global generator"


def test_trainer_ema_matches_its_closed_form_over_the_recorded_trajectory(small, monkeypatch):
    """The EMA model equals sum_t (1-d) d^(T-t) w_t / (1 - d^T) over the weights w_t after each step."""
    seen: list[torch.Tensor] = []
    real = vibtools.training.train_step

    def record(state, step_fn, x, y, eps):
        """Run the step, then keep a copy of one weight matrix and one bias."""
        out = real(state, step_fn, x, y, eps)
        seen.append(torch.cat([state.stack.dec_weight.detach().flatten(), state.stack.enc2_bias.detach().flatten()]))
        return out

    monkeypatch.setattr(vibtools.training, "train_step", record)
    c = TINY.with_(ema_decay=0.9)
    result = fit(c, small, cache=False)
    d, t = c.ema_decay, len(seen)
    assert t == c.epochs * (len(small.train_x) // c.batch_size)
    expected = sum((1 - d) * d ** (t - k) * w.double() for k, w in enumerate(seen, start=1)) / (1 - d**t)
    got = torch.cat([result.ema_model.dec_weight.detach().flatten(), result.ema_model.enc2_bias.detach().flatten()])
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(got, seen[-1])  # the average is not the last weights


@pytest.mark.parametrize("covariance", ["full", "none"])
def test_other_encoders_train_store_and_load(small, cache_dir, covariance):
    c = TINY.with_(k=2, covariance=covariance, beta=1e-2)
    r = fit(c, small, cache=cache_dir)
    assert r.model.covariance == covariance and r.model.k == 2
    assert set(r.final) == {"raw_test", "ema_test", "ema_train"}
    if covariance == "none":  # z = mu: no info loss, and all samples agree
        assert r.history["train_info_bits"] == [0.0, 0.0] and r.final["ema_test"]["izx"] == 0.0
        assert r.final["ema_test"]["err"] == r.final["ema_test"]["avg_err"]
    else:
        assert all(v > 0 for v in r.history["test_izx"])
    again = fit(c, small, cache=cache_dir)
    assert again.from_cache and again.final == r.final
    for p, q in zip(r.ema_model.parameters(), again.ema_model.parameters()):
        assert torch.equal(p, q)


def test_each_set_of_weights_is_evaluated_once(small, monkeypatch):
    calls: list[tuple[int, int]] = []
    real = vibtools.evaluation.evaluate_stacks

    def spy(stacks, x, *args, **kwargs):
        """Count evaluations: (number of stacks, number of images)."""
        calls.append((len(stacks), len(x)))
        return real(stacks, x, *args, **kwargs)

    monkeypatch.setattr(vibtools.evaluation, "evaluate_stacks", spy)
    monkeypatch.setattr(vibtools.training, "evaluate_stacks", spy)
    r = fit(TINY.with_(epochs=3), small, cache=False)
    n_test, n_train = len(small.test_x), min(len(small.train_x), vibtools.training.TRAIN_EVAL_SIZE)
    assert calls == [(2, n_test)] * 3 + [(1, n_train)]  # raw + EMA per epoch, then the training set once
    last = {k: v[-1] for k, v in r.history.items()}
    assert r.final["ema_test"]["avg_err"] == last["ema_test_avg_err"]  # the final line is the last epoch's
    assert r.final["raw_test"]["izx"] == last["test_izx"]


def test_final_training_metrics_use_the_first_images(mnist):
    n = vibtools.training.TRAIN_EVAL_SIZE
    data = mnist.subset(n + 2000, 200)
    r = fit(TINY.with_(epochs=1, batch_size=2000), data, cache=False)
    by_hand = vt.evaluate(r.ema_model, data.train_x[:n], data.train_y[:n])
    assert r.final["ema_train"]["izx"] == pytest.approx(by_hand["izx"], rel=1e-5)


def test_finished_runs_load_without_any_training_state(small, cache_dir, monkeypatch):
    first = fit(TINY, small, cache=cache_dir)

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished run must load without building a training state")

    monkeypatch.setattr(vibtools.training, "TrainState", forbidden)
    again = fit(TINY, small, cache=cache_dir)
    loaded = vt.load_run(first.path, device="cpu")
    assert again.from_cache and loaded.final == first.final
    assert not loaded.model.training and not loaded.ema_model.training


# ---------------------------------------------------------------- keys, sweeps, files


def test_equal_configs_share_one_key_and_one_file(small, cache_dir):
    a = TINY.with_(beta=1)
    b = TINY.with_(beta=1.0)
    assert a == b and hash(a) == hash(b) and isinstance(a.beta, float)
    assert TINY.with_(beta=-0.0).key_dict() == TINY.with_(beta=0.0).key_dict()
    assert math.copysign(1, TINY.with_(beta=-0.0).beta) == 1.0
    assert TINY.with_(data_seed=None).key_dict() == TINY.with_(data_seed=TINY.seed).key_dict()
    assert TINY.with_(adam_betas=[0.5, 0.999]) == TINY
    first = fit(TINY.with_(beta=0), small, cache=cache_dir)
    second = fit(TINY.with_(beta=-0.0, data_seed=0), small, cache=cache_dir)
    assert second.from_cache and second.path == first.path
    assert len(list(cache_dir.glob("*.pt"))) == 1


def test_cache_argument_expands_the_home_folder(small, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    r = fit(TINY, small, cache="~/runs")
    assert r.path.parent == tmp_path / "home" / "runs"
    assert not (tmp_path / "~").exists()


def test_run_files_follow_the_umask(small, cache_dir):
    old = os.umask(0o027)
    try:
        r = fit(TINY, small, cache=cache_dir)
    finally:
        os.umask(old)
    assert r.path.stat().st_mode & 0o777 == 0o640


def test_progress_bar_names_the_run_it_trains(small, cache_dir, capsys):
    fit(TINY, small, cache=cache_dir)  # the first config is stored, so only the second trains
    capsys.readouterr()
    configs = [TINY, TINY.with_(beta=0.5, seed=3, data_seed=0)]
    vt.train_sweep(configs, small, device="cpu", cache=cache_dir, progress=True)
    bars = capsys.readouterr().err
    assert "VIB K=8 beta=0.5" in bars and "beta=0.001" not in bars
    vt.train(vt.model_config("deterministic", k=8, hidden=32, epochs=1), small, device="cpu", cache=False)
    assert "deterministic K=8" in capsys.readouterr().err


def test_information_plane_accepts_beta_zero():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    metrics = {"izx": 5.0, "izy": 3.0, "err": 0.1, "avg_err": 0.1}
    runs = [SimpleNamespace(config=SimpleNamespace(beta=b), final={"ema_train": dict(metrics, izx=5.0 + b),
                                                                    "ema_test": dict(metrics)})
            for b in (0.0, 1e-3, 1.0)]
    ax = vt.plots.plot_information_plane(runs, marker_for=0.0)
    assert ax.get_xlabel().startswith("I(Z;X)")


def test_importing_the_package_and_the_cli_help_load_no_plotting_or_widgets():
    code = ("import sys, vibtools, vibtools.cli\n"
            "try:\n    vibtools.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'ipywidgets'}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


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


def test_unwritable_cache_folders_are_refused_before_any_work(small, tmp_path, monkeypatch):
    a_file = tmp_path / "a-file"
    a_file.write_text("keep")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        fit(TINY, small, cache=a_file / "runs")
    assert a_file.read_text() == "keep"

    monkeypatch.setattr(vibtools.store.shutil, "disk_usage", lambda p: SimpleNamespace(free=1000))
    with pytest.raises(ValueError, match="MiB free"):
        fit(TINY, small, cache=tmp_path / "full-disk")
    assert not (tmp_path / "full-disk").exists()


# ---------------------------------------------------------------- the benchmark runs


def test_benchmark_smoke_run(data_root, tmp_path):
    """benchmarks/bench_train.py end to end with a few steps per row (speed itself is not tested here)."""
    import json
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, str(script), "--data", str(data_root), "--device", "cpu", "--steps", "2",
                        "--warmup", "1", "--sweeps", "2", "--vmap", "2", "--end-to-end", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    rows = {row["loop"]: row for row in json.loads(out.read_text())["rows"]}
    assert {"plain PyTorch loop", "vibtools single model", "vibtools sweep M=2",
            "torch.func stack_module_state + vmap, M=2", "matrix products alone"} <= set(rows)
    assert all(row["sec_per_model_epoch"] > 0 for row in rows.values())
    e2e = json.loads(out.read_text())["end_to_end"]
    assert len(e2e) == 1 and e2e[0]["epochs"] == 1 and 0 < e2e[0]["evaluation_share"] < 1
    assert e2e[0]["training_s"] < e2e[0]["start_to_exit_s"]


# ---------------------------------------------------------------- review follow-ups


def test_option_errors_come_before_the_data_is_read(tmp_path, monkeypatch):
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("VIBTOOLS_DATA", str(empty))
    for kwargs, words in (({"checkpoint_every": 0}, "checkpoint_every"), ({"compile": "bogus"}, "compile must be"),
                          ({"stop_after": -1}, "stop_after")):
        with pytest.raises(ValueError, match=words):
            vt.train(TINY, None, device="cpu", cache=tmp_path / "cache", progress=False, **kwargs)
    assert listing(empty) == [] and not (tmp_path / "cache").exists()


def test_a_read_only_cache_serves_finished_runs_and_refuses_new_ones(small, cache_dir, monkeypatch):
    first = fit(TINY, small, cache=cache_dir)
    real = os.access

    def access(path, mode):
        """Deny writing to the cache folder (as root, chmod cannot)."""
        return False if str(path) == str(cache_dir) else real(path, mode)

    monkeypatch.setattr(vibtools.store.os, "access", access)
    again = fit(TINY, small, cache=cache_dir)
    assert again.from_cache and again.final == first.final
    with pytest.raises(ValueError, match="is not writable"):
        fit(TINY.with_(beta=0.5), small, cache=cache_dir)


def test_stored_runs_missing_history_or_metrics_are_retrained(small, cache_dir):
    from vibtools.store import save_checkpoint

    r = fit(TINY, small, cache=cache_dir)
    for damage, words in ((lambda st: st["history"].pop("test_err"), "history['test_err']"),
                          (lambda st: st["history"]["epoch"].pop(), "history['epoch'] of 2 epochs"),
                          (lambda st: st["final"]["ema_test"].pop("avg_err"), "final['ema_test']['avg_err']")):
        st = torch.load(r.path, weights_only=True)
        damage(st)
        save_checkpoint(r.path, st)
        with pytest.warns(UserWarning, match="ignoring stored run") as record:
            again = fit(TINY, small, cache=cache_dir)
        assert words in str(record[0].message) and not again.from_cache


def test_device_names_must_be_canonical():
    for name in ("cuda:", "cuda:01", "cpu:0", "cuda:-1", "cuda:x"):
        with pytest.raises(ValueError):
            vt.pick_device(name)


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


def test_the_explorer_trains_a_new_beta_from_its_button(small, monkeypatch, tmp_path, capsys):
    """The widget is returned, not displayed; its button trains the chosen β and adds it to the slider."""
    pytest.importorskip("ipywidgets")
    import matplotlib

    matplotlib.use("Agg")

    monkeypatch.setenv("VIBTOOLS_CACHE", str(tmp_path / "runs"))
    runs = [fit(TINY.with_(k=2, covariance="full", epochs=1), small, cache=False)]
    box = vt.widgets.beta_explorer(runs, small.test_x[:50], small.test_y[:50], data=small, device="cpu")
    assert "VBox" not in capsys.readouterr().out, "the explorer displayed itself as well as returning its box"
    slider = box.children[0]
    new_beta, button = box.children[-2].children
    new_beta.value = 0.01
    button.click()
    assert [b for _, b in slider.options] == sorted([TINY.beta, 0.01]) and slider.value == 0.01
    assert len(list((tmp_path / "runs").glob("*.pt"))) == 1, "the new β was trained and stored"


def test_cli_prints_cache_notices_as_one_line(tmp_path):
    from conftest import cli, fake_mnist

    data = fake_mnist(tmp_path / "data")
    args = ["train", "--k", "2", "--epochs", "1", "--device", "cpu", "--data", str(data), "--out", str(tmp_path / "o"),
            "--no-progress"]
    assert cli(args, tmp_path).returncode == 0
    run = next((tmp_path / "o").glob("*.pt"))
    run.write_bytes(run.read_bytes()[:100])
    again = cli(args, tmp_path)
    assert again.returncode == 0, again.stderr
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m vibtools: warning: ignoring stored run"), lines


# ---------------------------------------------------------------- defects found by the full read (each failed before)


def test_a_partial_run_with_a_non_dict_ema_or_adam_is_ignored_not_a_crash(small, cache_dir):
    from vibtools.store import save_checkpoint

    config = TINY.with_(epochs=3)
    for key in ("ema", "adam"):
        r = fit(config, small, cache=cache_dir, stop_after=1)
        st = torch.load(r.path, weights_only=True)
        st["training"][key] = [1, 2, 3]
        save_checkpoint(r.path, st)
        with pytest.warns(UserWarning, match=f"training\\['{key}'\\] that is not a dict"):
            again = fit(config, small, cache=cache_dir)
        assert len(again.history["epoch"]) == 3 and not again.from_cache
        r.path.unlink()


def test_a_sweep_of_partial_runs_stopped_at_different_epochs_keeps_each_ones_progress(small, cache_dir):
    a, b = TINY.with_(epochs=3, beta=1e-3), TINY.with_(epochs=3, beta=1e-2)
    done_a = fit(a, small, cache=cache_dir, stop_after=2).history["seconds"]
    done_b = fit(b, small, cache=cache_dir, stop_after=1).history["seconds"]
    ra, rb = vt.train_sweep([a, b], small, device="cpu", cache=cache_dir, progress=False)
    assert len(ra.history["epoch"]) == len(rb.history["epoch"]) == 3
    # the saved epochs are kept (their recorded times too), not retrained from scratch
    assert ra.history["seconds"][:2] == done_a and rb.history["seconds"][:1] == done_b


def test_prior_first_built_in_inference_mode_still_trains(small):
    k = 7  # a K no other test asks the prior for, so the cache is cold
    with torch.inference_mode():
        for covariance in ("diag", "full"):
            vt.prior(k, covariance)
            vt.prior(k, covariance, torch.device("cpu"))  # the form the training step asks for
    r = fit(TINY.with_(k=k, epochs=1), small, cache=False)
    assert len(r.history["epoch"]) == 1


def test_compile_fallback_is_only_for_compiler_errors():
    """An error of the step itself (here a transient one on the first call) is raised, not hidden as a compile
    failure behind a silent retry of the plain step."""
    from vibtools.training import maybe_compile

    calls = []

    def flaky(x):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory")
        return x

    step = maybe_compile(flaky, True)
    with pytest.raises(RuntimeError, match="out of memory"):
        step(torch.zeros(2))


def test_the_page_note_on_a_gpu_does_not_also_say_no_gpu_was_available(monkeypatch):
    monkeypatch.delenv("VIBTOOLS_QUICK", raising=False)
    monkeypatch.setattr("vibtools.device.describe_device", lambda device: "cuda (NVIDIA H200)")
    note = vt.report.how_made(vt.book.Stopwatch(), "cuda", 10, 30.0)
    text = " ".join(v for _, v in note.items)
    assert "no GPU was available" not in text and "On a GPU runtime expect" in text and "NVIDIA H200" in text


def test_torch_requirement_admits_cpu_fused_adam():
    """The optimizer uses fused Adam on the CPU, which torch has from 2.4 on."""
    import re

    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    for text in ((repo / "requirements.txt").read_text(), (repo / "pyproject.toml").read_text()):
        low = re.search(r"torch>=(\d+)\.(\d+)", text)
        assert low and (int(low[1]), int(low[2])) >= (2, 4), low and low[0]


def test_cli_warnings_are_one_line_only_while_the_command_runs(tmp_path, capsys):
    import warnings

    from conftest import fake_mnist

    from vibtools.cli import main

    before = warnings.showwarning
    data = fake_mnist(tmp_path / "data")
    assert main(["train", "--k", "2", "--epochs", "1", "--device", "cpu", "--data", str(data), "--out",
                 str(tmp_path / "out"), "--no-progress"]) == 0
    assert warnings.showwarning is before


def test_code_version_names_no_commit_of_another_repository(tmp_path):
    """A copy of the package inside an unrelated git repository must not report that repository's commit."""
    import shutil

    repo = tmp_path / "other"
    shutil.copytree(__import__("pathlib").Path(vt.__file__).parent, repo / "lib" / "vibtools")
    for args in (["init", "-q"], ["-c", "user.name=x", "-c", "user.email=x@y", "commit", "-q", "--allow-empty",
                                  "-m", "other"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-c", "import vibtools.reproduce as r; print(r.code_version()['commit'])"],
                         cwd=repo / "lib", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"
