"""Training on small MNIST subsets: schedule, determinism, accuracy, run cache, resume, bad cache files, sweeps."""

from __future__ import annotations

import math

import pytest
import torch

import vibtools
import vibtools.training
from vibtools import TrainConfig, load_run, train, train_sweep
from vibtools.store import FORMAT, load_checkpoint, save_checkpoint

TINY = TrainConfig(k=8, hidden=32, epochs=2)


def fit(config, data, **kwargs):
    """train() on the CPU without progress bars (the tests compare runs exactly, which needs one device)."""
    return train(config, data, device="cpu", progress=False, **kwargs)


def fit_sweep(configs, data, **kwargs):
    return train_sweep(configs, data, device="cpu", progress=False, **kwargs)


def numeric(history: dict) -> dict:
    """The history without the wall-clock columns, the only part allowed to vary between runs."""
    assert "seconds" in history and "eval_seconds" in history
    return {k: v for k, v in history.items() if k not in ("seconds", "eval_seconds")}


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


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


# ---------------------------------------------------------------- determinism


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


# ---------------------------------------------------------------- run cache round trip


def test_cache_round_trip(small, cache_dir):
    first = fit(TINY, small, cache=cache_dir)
    assert not first.from_cache
    assert first.path is not None and first.path.parent == cache_dir and first.path.is_file()
    assert sorted(p.name for p in cache_dir.iterdir() if p.suffix != ".lock") == [first.path.name]  # no .tmp

    again = fit(TINY, small, cache=cache_dir)
    assert again.from_cache and again.path == first.path
    assert again.history == first.history  # the stored history, wall-clock column included
    assert again.final == first.final
    assert_same_weights(again.model, first.model)
    assert_same_weights(again.ema_model, first.ema_model)

    loaded = load_run(first.path, device="cpu")
    assert loaded.from_cache and loaded.config == TINY
    assert loaded.history == first.history and loaded.final == first.final
    assert_same_weights(loaded.model, first.model)
    assert_same_weights(loaded.ema_model, first.ema_model)

    payload = torch.load(first.path, weights_only=True)
    assert payload["format"] == FORMAT and payload["epochs_done"] == 2
    assert payload["config"] == TINY.as_dict()
    assert "training" not in payload  # a finished run keeps only what loading it needs

    # the returned EMA model is the one that was evaluated (I(Z;X) bound does not depend on the noise)
    m = vibtools.evaluate(loaded.ema_model, small.test_x, small.test_y)
    assert m["izx"] == pytest.approx(first.final["ema_test"]["izx"], rel=1e-4)


def test_cache_key_depends_on_config_and_data(small, cache_dir):
    a = fit(TINY, small, cache=cache_dir)
    b = fit(TINY.with_(beta=1e-2), small, cache=cache_dir)
    c = fit(TINY, small.subset(900, 500), cache=cache_dir)
    assert not b.from_cache and not c.from_cache
    assert len({a.path, b.path, c.path}) == 3


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


# ---------------------------------------------------------------- bad cache files


def _truncate(path):
    """Cut a file to half its length."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit(**changes):
    """Change top-level entries and store the file again with a valid checksum (the checks after it must catch it)."""
    def edit(path):
        st = torch.load(path, weights_only=True)
        st.update(changes)
        save_checkpoint(path, st)
    return edit


def _edit_nested(fn):
    """Apply ``fn`` to the payload and store it again with a valid checksum."""
    def edit(path):
        st = torch.load(path, weights_only=True)
        fn(st)
        save_checkpoint(path, st)
    return edit


def _flip_bytes(path):
    """Change one weight without updating the checksum: a damaged file that still unpickles."""
    st = torch.load(path, weights_only=True)
    st["ema_model"]["enc1_weight"][0, 0] += 1.0
    torch.save(st, path)


UNREADABLE = "not a readable vibtools checkpoint"
BAD_FILES = {
    "truncated": (_truncate, UNREADABLE),
    "empty": (lambda p: p.write_bytes(b""), UNREADABLE),
    "garbage": (lambda p: p.write_bytes(b"\x80\x04garbage, not a checkpoint" * 50), UNREADABLE),
    "not_a_dict": (lambda p: torch.save(torch.zeros(3), p), "format 'Tensor'"),
    "other_format": (_edit(format="vibtools-run-v0"), "format 'vibtools-run-v0'"),
    "other_version": (_edit(version=1), "results version 1"),
    "flipped_bytes": (_flip_bytes, "checksum does not match"),
    "other_config": (_edit(config=TINY.with_(beta=0.5).as_dict()), "different configuration"),
    "other_data": (_edit(data="0123456789abcdef"), "different configuration or data set"),
    "no_model": (_edit_nested(lambda st: st.pop("model")), "lacks 'model'"),
    "missing_tensor": (_edit_nested(lambda st: st["model"].pop("dec_bias")), "lacks the tensor model['dec_bias']"),
    "wrong_shape": (_edit_nested(lambda st: st["ema_model"].update(enc1_weight=torch.zeros(3, 3))),
                    "ema_model['enc1_weight'] of shape (3, 3)"),
    "no_final_ema_test": (_edit_nested(lambda st: st["final"].pop("ema_test")), "lacks final['ema_test']"),
}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the garbage file
@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_cache_file_warns_and_is_retrained(small, cache_dir, kind):
    spoil, reason = BAD_FILES[kind]
    ref = fit(TINY, small, cache=cache_dir)
    spoil(ref.path)
    with pytest.warns(UserWarning, match="ignoring stored run") as record:
        again = fit(TINY, small, cache=cache_dir)
    ours = [str(w.message) for w in record if "ignoring stored run" in str(w.message)]
    assert len(ours) == 1
    message = ours[0]
    assert str(ref.path) in message and reason in message and "retrained" in message
    assert "\n" not in message
    assert not again.from_cache
    assert numeric(again.history) == numeric(ref.history)
    assert_same_weights(again.model, ref.model)
    assert load_checkpoint(ref.path)["epochs_done"] == TINY.epochs  # overwritten with a good file
    assert fit(TINY, small, cache=cache_dir).from_cache


def test_load_run_refuses_bad_files(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(vibtools.CheckpointError, match="bad.pt"):
        load_run(bad)
    torch.save({"format": "something-else"}, bad)
    with pytest.raises(vibtools.CheckpointError, match="something-else"):
        load_run(bad)


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


def test_sweep_rejects_mismatched_configs(small):
    with pytest.raises(ValueError, match="share k"):
        fit_sweep([TINY, TINY.with_(k=4)], small, cache=False)
    with pytest.raises(ValueError):
        fit_sweep([], small, cache=False)
    with pytest.raises(ValueError, match="beta"):
        TINY.with_(beta=-1.0)
