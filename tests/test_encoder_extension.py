"""The encoder's extension point: a small convolutional encoder registered by name trains, is stored, resumes and
loads through the same loop, store and evaluation as the paper's MLP, whose runs and keys it leaves unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import vibtools as vt
from vibtools import model as M
from vibtools.store import run_key


def small_conv(head_dim: int, hidden: int) -> nn.Module:
    """Images (B, 784) in [0, 1] -> (B, head_dim): one 5x5 convolution, stride 2, then a linear head."""
    return nn.Sequential(nn.Unflatten(1, (1, 28, 28)), nn.Conv2d(1, 4, 5, stride=2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 12 * 12, head_dim))


@pytest.fixture(autouse=True)
def registered():
    M.register_encoder("small-conv", small_conv)
    yield
    M.ENCODERS.pop("small-conv", None)


CONV = vt.TrainConfig(k=4, hidden=16, epochs=2, data_seed=0, lr=1e-3, encoder="small-conv")


def test_the_registered_encoder_replaces_the_mlp_layers_and_keeps_everything_else():
    shapes = M.parameter_shapes(4, "diag", 16, encoder="small-conv")
    assert set(shapes) == {"encoder__1__weight", "encoder__1__bias", "encoder__4__weight", "encoder__4__bias",
                           "dec_weight", "dec_bias"}
    stack = M.VIBStack(4, hidden=16, seeds=[0, 1], encoder="small-conv")
    assert stack.encoder__1__weight.shape == (2, 4, 1, 5, 5)
    assert not torch.equal(stack.encoder__1__weight[0], stack.encoder__1__weight[1])  # one init per seed
    again = M.VIBStack(4, hidden=16, seeds=[0], encoder="small-conv")
    assert torch.equal(again.encoder__1__weight[0], stack.encoder__1__weight[0])  # the seed decides it
    x = torch.rand(3, 784)
    head = stack.stacked_head(x)
    one = M.VIB(4, hidden=16, seed=1, encoder="small-conv")
    torch.testing.assert_close(head[1], one.encode_head(x))  # model 1 of the stack is the model of seed 1
    assert one(x, 5).shape == (5, 3, 10) and one.encode(x).mean.shape == (3, 4)


def test_the_default_mlp_keeps_its_config_and_run_key():
    assert "encoder" not in vt.TrainConfig().as_dict()
    assert run_key(vt.TrainConfig(), "f" * 16) == run_key(vt.TrainConfig(encoder="mlp"), "f" * 16)
    assert run_key(CONV, "f" * 16) != run_key(CONV.with_(encoder="mlp"), "f" * 16)


def test_a_conv_encoder_trains_stores_resumes_and_loads(small, cache_dir):
    first = vt.train_sweep([CONV, CONV.with_(seed=1, beta=1e-2)], small, cache=cache_dir, progress=False,
                           stop_after=1)
    assert all(len(r.history["epoch"]) == 1 for r in first)
    done = vt.train_sweep([CONV, CONV.with_(seed=1, beta=1e-2)], small, cache=cache_dir, progress=False)
    assert [len(r.history["epoch"]) for r in done] == [2, 2] and not done[0].from_cache
    straight = vt.train(CONV, small, cache=False, progress=False)  # resumed from epoch 1 = trained in one go
    torch.testing.assert_close(done[0].model.encoder__1__weight, straight.model.encoder__1__weight)
    losses = done[0].history["train_class_bits"]
    assert losses[1] < losses[0] < 3.33  # it learns (log2 10 = 3.32 bits is chance)
    loaded = vt.load_run(done[0].path, device="cpu")
    assert loaded.config.encoder == "small-conv"
    m = vt.evaluate(loaded.ema_model, small.test_x, small.test_y)
    assert m["avg_err"] == pytest.approx(done[0].final["ema_test"]["avg_err"], abs=1 / len(small.test_y) + 1e-9)


def test_unknown_encoders_and_dropout_are_refused_before_any_work(small, cache_dir):
    with pytest.raises(ValueError, match="unknown encoder 'no-such'"):
        vt.train(CONV.with_(encoder="no-such"), small, cache=cache_dir, progress=False)
    assert not list(cache_dir.iterdir())
    with pytest.raises(ValueError, match="dropout masks the MLP"):
        CONV.with_(dropout=0.5)
    with pytest.raises(ValueError, match="other than 'mlp'"):
        M.register_encoder("mlp", small_conv)


def test_encoders_with_buffers_or_dropout_are_refused_in_one_line():
    M.register_encoder("with-bn", lambda head, hidden: nn.Sequential(nn.Linear(784, 8), nn.BatchNorm1d(8),
                                                                     nn.Linear(8, head)))
    M.register_encoder("with-dropout", lambda head, hidden: nn.Sequential(nn.Linear(784, 8), nn.Dropout(0.1),
                                                                          nn.Linear(8, head)))
    try:
        with pytest.raises(ValueError, match="has buffers"):
            M.VIBStack(4, hidden=16, seeds=[0], encoder="with-bn")
        with pytest.raises(ValueError, match="has dropout"):
            M.VIBStack(4, hidden=16, seeds=[0], encoder="with-dropout")
    finally:
        M.ENCODERS.pop("with-bn", None)
        M.ENCODERS.pop("with-dropout", None)
    before = torch.random.get_rng_state()
    M.VIBStack(4, hidden=16, seeds=[3], encoder="small-conv")
    assert torch.equal(torch.random.get_rng_state(), before)  # PyTorch's global generator is left as it was
