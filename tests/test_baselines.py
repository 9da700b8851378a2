"""The paper's Table 1 baselines: their losses on hand-computed cases, dropout only while training, presets, the
stacked pass with per-model loss settings, and the command line's --model."""

from __future__ import annotations

import math

import pytest
import torch

import vibtools as vt
from vibtools.bounds import LossSettings
from vibtools.bounds import stack_loss as objective
from vibtools.training import TrainState

TINY = vt.TrainConfig(k=8, hidden=32, epochs=2)


def fit(config, data, **kwargs):
    """train() on the CPU without a cache or progress bars."""
    return vt.train(config, data, device="cpu", cache=False, progress=False, **kwargs)


# ---------------------------------------------------------------- the losses


def test_label_smoothing_on_a_hand_computed_case():
    logits = torch.log(torch.tensor([[1.0, 3.0]]))  # q(y) = (1/4, 3/4)
    y = torch.tensor([0])
    # targets (0.9, 0.1) for eps = 0.2 and 2 classes: -(0.9 log2 1/4 + 0.1 log2 3/4) bits
    expected = 0.9 * 2.0 + 0.1 * math.log2(4 / 3)
    assert vt.smoothed_class_loss_bits(logits, y, 0.2).item() == pytest.approx(expected, abs=1e-6)
    assert vt.smoothed_class_loss_bits(logits, y, 0.0).item() == pytest.approx(vt.class_loss_bits(logits, y).item())
    # one eps per model over stacked logits (M, B, C)
    stacked = logits.expand(2, 1, 2)
    per_model = vt.smoothed_class_loss_bits(stacked, y, torch.tensor([0.0, 0.2]))
    torch.testing.assert_close(per_model, torch.tensor([2.0, expected]))


def test_prediction_entropy_on_hand_computed_cases():
    assert vt.prediction_entropy_bits(torch.zeros(3, 10)).item() == pytest.approx(math.log2(10), abs=1e-6)
    q = torch.log(torch.tensor([[1.0, 3.0]]))
    h = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    assert vt.prediction_entropy_bits(q).item() == pytest.approx(h, abs=1e-6)
    sure = torch.tensor([[50.0, -50.0]])
    assert vt.prediction_entropy_bits(sure).item() == pytest.approx(0.0, abs=1e-6)


def test_confidence_penalty_rewards_entropy():
    """The penalized loss is the plain loss minus weight * H(q(y|z)): less confident outputs cost less."""
    stack = vt.VIBStack(4, "none", hidden=16, seeds=[0, 0])  # two copies of one network
    x, y = torch.rand(6, 784), torch.randint(0, 10, (6,))
    eps = torch.zeros(2, 6, 4)
    plain = LossSettings(torch.zeros(2))
    penalized = LossSettings(torch.zeros(2), confidence_penalty=torch.tensor([0.0, 2.0]))
    loss0, stats0 = objective(stack, plain, x, y, eps)
    loss1, stats1 = objective(stack, penalized, x, y, eps)
    logits = stack.stacked_logits(stack.stacked_head(x)[..., :4])
    entropy = vt.prediction_entropy_bits(logits[1]).item()
    assert entropy > 0
    assert loss1.item() == pytest.approx(loss0.item() - 2.0 * entropy, rel=1e-5)
    torch.testing.assert_close(stats0, stats1)  # the recorded class loss stays the plain cross-entropy


# ---------------------------------------------------------------- dropout


def test_dropout_masks_keep_the_expected_fraction_and_scale():
    configs = [TINY.with_(dropout=0.5, seed=0), TINY.with_(dropout=0.0, seed=1)]
    state = TrainState(configs, torch.device("cpu"))
    keep = state.dropout_masks(400)
    assert len(keep) == 2 and keep[0].shape == (2, 400, 32)
    kept = (keep[0][0] > 0).float().mean().item()
    assert 0.45 < kept < 0.55 and set(keep[0][0].unique().tolist()) == {0.0, 2.0}
    assert torch.equal(keep[1][1], torch.ones(400, 32))  # the model without dropout keeps every unit
    assert TrainState([TINY], torch.device("cpu")).dropout_masks(10) is None


def test_dropout_is_off_at_evaluation(small):
    r = fit(vt.model_config("dropout", k=8, hidden=32, epochs=1), small)
    a = vt.evaluate(r.ema_model, small.test_x, small.test_y, seed=0)
    b = vt.evaluate(r.ema_model, small.test_x, small.test_y, seed=1)
    assert a == b  # z = mu and no dropout: nothing random is left
    logits = r.ema_model.decode(r.ema_model.encode_head(small.test_x))
    err = (logits.argmax(-1) != small.test_y).float().mean().item()
    assert a["err"] == pytest.approx(err)
    assert r.history["train_info_bits"] == [0.0]


def test_dropout_changes_training(small):
    plain = fit(vt.model_config("deterministic", k=8, hidden=32, epochs=1), small)
    dropped = fit(vt.model_config("dropout", k=8, hidden=32, epochs=1), small)
    assert plain.history["train_class_bits"] != dropped.history["train_class_bits"]


# ---------------------------------------------------------------- presets, sweeps


def test_presets_and_their_names():
    for name in vt.MODELS:
        c = vt.model_config(name, epochs=3)
        assert vt.baselines.model_name(c) == name and c.epochs == 3
    assert vt.model_config("dropout").dropout == 0.5 and vt.model_config("dropout").covariance == "none"
    assert vt.model_config("vib", beta=1e-2).beta == 1e-2
    with pytest.raises(ValueError, match="unknown model"):
        vt.model_config("mixup")
    with pytest.raises(ValueError, match="cannot be changed"):
        vt.model_config("label-smoothing", beta=1e-3)
    for bad in ({"dropout": 1.0}, {"label_smoothing": -0.1}, {"confidence_penalty": float("nan")}):
        with pytest.raises(ValueError):
            TINY.with_(**bad)


def test_baselines_share_one_stacked_pass_and_equal_their_single_runs(small):
    names = ("deterministic", "dropout", "label-smoothing", "confidence-penalty")
    configs = [vt.model_config(n, k=8, hidden=32, epochs=2, seed=i, data_seed=5) for i, n in enumerate(names)]
    sweep = vt.train_sweep(configs, small, device="cpu", cache=False, progress=False)
    for c, r in zip(configs, sweep):
        alone = fit(c, small)
        for key in ("train_class_bits", "test_izy"):
            torch.testing.assert_close(torch.tensor(r.history[key]), torch.tensor(alone.history[key]),
                                       rtol=1e-4, atol=1e-5, msg=f"{key} of {c}")
        for p, q in zip(r.model.parameters(), alone.model.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


def test_resume_restores_the_dropout_stream(small, tmp_path):
    c = vt.model_config("dropout", k=8, hidden=32, epochs=3)
    full = fit(c, small)
    vt.train(c, small, device="cpu", cache=tmp_path, progress=False, stop_after=1)
    resumed = vt.train(c, small, device="cpu", cache=tmp_path, progress=False)
    assert resumed.history["train_class_bits"] == full.history["train_class_bits"]


# ---------------------------------------------------------------- the command line


def test_cli_trains_a_baseline_and_rejects_contradictions(tmp_path):
    from conftest import cli, fake_mnist

    data = fake_mnist(tmp_path / "data")
    args = ["train", "--model", "label-smoothing", "--k", "2", "--epochs", "1", "--device", "cpu", "--data",
            str(data), "--out", str(tmp_path / "out"), "--no-progress"]
    ok = cli(args, tmp_path)
    assert ok.returncode == 0, ok.stderr
    import json

    saved = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert saved["config"]["label_smoothing"] == 0.1 and saved["config"]["covariance"] == "none"
    bad = cli([*args[:3], "--beta", "0.1", *args[3:-3], "--out", str(tmp_path / "bad"), "--no-progress"], tmp_path)
    assert bad.returncode == 2 and "--beta applies to --model vib and ceb only" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
    helptext = cli(["train", "--help"], tmp_path).stdout
    for name in vt.MODELS:
        assert name in helptext
