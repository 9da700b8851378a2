"""Training on small MNIST subsets: the learning-rate schedule, determinism and the global random state, the loop
(the EMA it keeps, every encoder, one evaluation per set of weights, the progress bar), learning, resume, and
sweeps. The golden trajectory of the results version is in test_results_version.py."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TINY, assert_same_weights, fit, fit_sweep, numeric

import vibtools
import vibtools as vt
import vibtools.evaluation
import vibtools.training
from vibtools import TrainConfig
from vibtools.store import load_checkpoint


def assert_close_weights(a: torch.nn.Module, b: torch.nn.Module, **tol) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        torch.testing.assert_close(sa[name], sb[name], msg=name, **tol)


@pytest.fixture
def step_spy(monkeypatch):
    """Record (epoch, learning rate the optimizer actually uses) at every training step."""
    calls: list[tuple[int, float]] = []
    real = vibtools.training.train_step

    def spy(state, step_fn, x, y, eps):
        calls.append((state.epoch, state.opt.param_groups[0]["lr"]))
        return real(state, step_fn, x, y, eps)

    monkeypatch.setattr(vibtools.training, "train_step", spy)
    return calls


def lr_per_epoch(calls: list[tuple[int, float]]) -> dict[int, set[float]]:
    out: dict[int, set[float]] = {}
    for epoch, lr in calls:
        out.setdefault(epoch, set()).add(lr)
    return out


# ---------------------------------------------------------------- learning-rate schedule


def test_lr_decays_by_097_every_two_epochs(small, step_spy):
    result = fit(TINY.with_(epochs=5), small, cache=False)
    expected = [1e-4 * 0.97 ** (e // 2) for e in range(5)]
    assert result.history["epoch"] == [0, 1, 2, 3, 4]
    assert result.history["lr"] == pytest.approx(expected, rel=1e-12)
    used = lr_per_epoch(step_spy)
    assert sorted(used) == [0, 1, 2, 3, 4]
    for epoch, lrs in used.items():
        assert len(lrs) == 1 and lrs.pop() == pytest.approx(expected[epoch], rel=1e-12), epoch
    assert len(step_spy) == 5 * (len(small.train_x) // 100)


def test_lr_schedule_follows_the_config(small):
    c = TINY.with_(epochs=4, lr=1e-3, decay_rate=0.5, decay_epochs=3)
    result = fit(c, small, cache=False)
    assert result.history["lr"] == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4], rel=1e-12)


# ---------------------------------------------------------------- determinism and the global random state


def test_same_seed_same_run_and_other_seed_differs(small):
    a = fit(TINY, small, cache=False)
    b = fit(TINY, small, cache=False)
    assert numeric(a.history) == numeric(b.history)
    assert a.final == b.final
    assert_same_weights(a.model, b.model)
    assert_same_weights(a.ema_model, b.ema_model)

    c = fit(TINY.with_(seed=1), small, cache=False)
    assert c.history["train_class_bits"] != a.history["train_class_bits"]
    assert c.history["test_izx"] != a.history["test_izx"]
    assert not torch.equal(c.model.enc1_weight, a.model.enc1_weight)


def test_train_leaves_the_global_random_state_alone(small, cache_dir):
    before = torch.random.get_rng_state()
    fit(TINY, small, cache=cache_dir)
    assert torch.equal(torch.random.get_rng_state(), before), "training moved the global generator"
    fit(TINY, small, cache=cache_dir)  # a cache hit too
    assert torch.equal(torch.random.get_rng_state(), before), "loading a stored run moved the global generator"


def test_training_inside_no_grad_equals_training_outside_it(small):
    """A page that switched gradients off to evaluate can still train (chapter 8's exercise does)."""
    a = fit(TINY, small, cache=False)
    with torch.no_grad():
        b = fit(TINY, small, cache=False)
    assert torch.is_grad_enabled()
    assert numeric(a.history) == numeric(b.history)
    assert_same_weights(a.model, b.model)


# ---------------------------------------------------------------- the loop: its EMA, encoders, evaluation, progress bar


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


def test_progress_bar_names_the_run_it_trains(small, cache_dir, capsys):
    fit(TINY, small, cache=cache_dir)  # the first config is stored, so only the second trains
    capsys.readouterr()
    configs = [TINY, TINY.with_(beta=0.5, seed=3, data_seed=0)]
    vt.train_sweep(configs, small, device="cpu", cache=cache_dir, progress=True)
    bars = capsys.readouterr().err
    assert "VIB K=8 beta=0.5" in bars and "beta=0.001" not in bars
    vt.train(vt.model_config("deterministic", k=8, hidden=32, epochs=1), small, device="cpu", cache=False)
    assert "deterministic K=8" in capsys.readouterr().err


# ---------------------------------------------------------------- it learns


def test_short_run_is_far_below_chance(mnist):
    data = mnist.subset(5000, 1000)
    result = fit(TrainConfig(epochs=3), data, cache=False)  # the reference's K=256 model
    h = result.history
    assert len(h["epoch"]) == 3
    assert h["ema_test_avg_err"][-1] < 0.2, h["ema_test_avg_err"]  # chance is 0.9
    assert result.final["ema_test"]["avg_err"] < 0.2
    assert result.final["raw_test"]["err"] < 0.2
    assert h["train_class_bits"][-1] < h["train_class_bits"][0]
    assert 0 < h["test_izy"][-1] <= math.log2(10)
    assert h["test_izx"][-1] > 0
    assert result.final["ema_test"]["acc"] == pytest.approx(1 - result.final["ema_test"]["err"])


# ---------------------------------------------------------------- resume


def test_resume_equals_uninterrupted_run(small, tmp_path, step_spy):
    c = TINY.with_(epochs=5)
    full = fit(c, small, cache=tmp_path / "a")

    part = fit(c, small, cache=tmp_path / "b", stop_after=3)
    assert not part.from_cache and part.history["epoch"] == [0, 1, 2] and not part.final
    assert numeric(part.history) == {k: v[:3] for k, v in numeric(full.history).items()}
    assert load_checkpoint(part.path)["epochs_done"] == 3 and "training" in load_checkpoint(part.path)

    step_spy.clear()
    resumed = fit(c, small, cache=tmp_path / "b")
    assert not resumed.from_cache
    used = lr_per_epoch(step_spy)
    assert sorted(used) == [3, 4]  # only the missing epochs were trained
    assert len(used[3]) == len(used[4]) == 1
    assert used[3].pop() == pytest.approx(1e-4 * 0.97) and used[4].pop() == pytest.approx(1e-4 * 0.97**2)
    assert numeric(resumed.history) == numeric(full.history)
    assert resumed.history["seconds"][:3] == part.history["seconds"]
    assert resumed.final == full.final
    assert_same_weights(resumed.model, full.model)
    assert_same_weights(resumed.ema_model, full.ema_model)

    done = fit(c, small, cache=tmp_path / "b")
    assert done.from_cache and done.history == resumed.history


# ---------------------------------------------------------------- sweeps


def test_sweep_equals_single_runs_and_fills_the_cache(small, tmp_path):
    configs = [TINY.with_(beta=1e-3, seed=0, data_seed=7), TINY.with_(beta=1e-1, seed=1, data_seed=7),
               TINY.with_(beta=0.0, seed=2, data_seed=7)]
    sweep = fit_sweep(configs, small, cache=tmp_path / "sweep")
    assert [r.config for r in sweep] == configs
    assert not any(r.from_cache for r in sweep)
    assert not torch.equal(sweep[0].model.enc1_weight, sweep[1].model.enc1_weight)
    for c, r in zip(configs, sweep):
        alone = fit(c, small, cache=False)
        hs, ha = numeric(r.history), numeric(alone.history)
        assert hs.keys() == ha.keys()
        for key in hs:
            # error rates are counts over 500 test examples: allow one example to flip in float rounding
            atol = 2.5e-3 if key.endswith("err") or key.endswith("acc") else 1e-4
            torch.testing.assert_close(torch.tensor(hs[key]), torch.tensor(ha[key]), rtol=1e-4, atol=atol,
                                       msg=f"{key} of {c}")
        assert_close_weights(r.model, alone.model, rtol=1e-4, atol=1e-6)
        assert_close_weights(r.ema_model, alone.ema_model, rtol=1e-4, atol=1e-6)

    cached = fit(configs[1], small, cache=tmp_path / "sweep")
    assert cached.from_cache and cached.path == sweep[1].path
    assert_same_weights(cached.model, sweep[1].model)
    assert cached.history == sweep[1].history


def test_a_sweep_of_partial_runs_stopped_at_different_epochs_keeps_each_ones_progress(small, cache_dir):
    a, b = TINY.with_(epochs=3, beta=1e-3), TINY.with_(epochs=3, beta=1e-2)
    done_a = fit(a, small, cache=cache_dir, stop_after=2).history["seconds"]
    done_b = fit(b, small, cache=cache_dir, stop_after=1).history["seconds"]
    ra, rb = vt.train_sweep([a, b], small, device="cpu", cache=cache_dir, progress=False)
    assert len(ra.history["epoch"]) == len(rb.history["epoch"]) == 3
    # the saved epochs are kept (their recorded times too), not retrained from scratch
    assert ra.history["seconds"][:2] == done_a and rb.history["seconds"][:1] == done_b
