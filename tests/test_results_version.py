"""The results version guards the run cache: a change in training numerics must come with a new version.

Stored runs are keyed on :data:`vibtools.RESULTS_VERSION`, so a run made by older numerics is never served as a
result of newer code. This test pins a short training trajectory on synthetic data for the current version; when
it fails, the numbers the package produces have changed: bump ``RESULTS_VERSION`` in vibtools/store.py and
update GOLDEN below (run this file's ``trajectories()`` and paste the output).
"""

from __future__ import annotations

import pytest
import torch

import vibtools as vt

GOLDEN_VERSION = 2
GOLDEN = {
    "diag": {
        "train_class_bits": [3.368235, 3.246779, 3.154621],
        "train_info_bits": [25.073065, 24.881626, 24.748936],
        "test_izx": [25.055681, 24.911976, 24.776949],
        "test_izy": [0.007888, 0.011607, 0.017467],
        "test_err": [0.89, 0.89, 0.89],
        "test_avg_err": [0.89, 0.88, 0.88],
        "ema_test_izx": [25.130243, 25.048622, 24.970791],
        "ema_test_avg_err": [0.87, 0.89, 0.9],
        "ema_train_izx": 24.851751,
        "weight_sum": 14.615893,
    },
    "full": {
        "train_class_bits": [3.525552, 3.359816, 3.270233],
        "train_info_bits": [14.752678, 14.385509, 14.13697],
        "test_izx": [14.472218, 14.302341, 14.157487],
        "test_izy": [-0.00277, 0.027473, 0.002746],
        "test_err": [0.91, 0.89, 0.91],
        "test_avg_err": [0.88, 0.89, 0.88],
        "ema_test_izx": [14.546062, 14.452069, 14.37007],
        "ema_test_avg_err": [0.87, 0.88, 0.88],
        "ema_train_izx": 14.290897,
        "weight_sum": 12.849767,
    },
    "none": {
        "train_class_bits": [3.374651, 3.213765, 3.094207],
        "train_info_bits": [0.0, 0.0, 0.0],
        "test_izx": [0.0, 0.0, 0.0],
        "test_izy": [0.001339, -0.001401, -0.004116],
        "test_err": [0.84, 0.85, 0.86],
        "test_avg_err": [0.84, 0.85, 0.86],
        "ema_test_izx": [0.0, 0.0, 0.0],
        "ema_test_avg_err": [0.84, 0.85, 0.85],
        "ema_train_izx": 0.0,
        "weight_sum": 12.515672,
    },
    "sweep0": {
        "train_class_bits": [3.368235, 3.246779, 3.154621],
        "train_info_bits": [25.073065, 24.881626, 24.748936],
        "test_izx": [25.055681, 24.911976, 24.776949],
        "test_izy": [0.007888, 0.011607, 0.017467],
        "test_err": [0.89, 0.89, 0.89],
        "test_avg_err": [0.89, 0.88, 0.88],
        "ema_test_izx": [25.130243, 25.048622, 24.970791],
        "ema_test_avg_err": [0.87, 0.89, 0.9],
        "ema_train_izx": 24.851751,
        "weight_sum": 14.615893,
    },
    "sweep1": {
        "train_class_bits": [3.396416, 3.286048, 3.205487],
        "train_info_bits": [24.862612, 24.621754, 24.391815],
        "test_izx": [24.757536, 24.57766, 24.398945],
        "test_izy": [0.018413, 0.019844, 0.019504],
        "test_err": [0.87, 0.86, 0.87],
        "test_avg_err": [0.86, 0.86, 0.88],
        "ema_test_izx": [24.824654, 24.7349, 24.645361],
        "ema_test_avg_err": [0.87, 0.86, 0.86],
        "ema_train_izx": 24.546768,
        "weight_sum": 3.503716,
    },
}
CONFIGS = {
    "diag": [vt.TrainConfig(k=4, hidden=16, epochs=3, batch_size=50, lr=1e-3, decay_epochs=1)],
    "full": [vt.TrainConfig(k=2, hidden=16, epochs=3, batch_size=50, lr=1e-3, decay_epochs=1, covariance="full",
                            beta=0.1)],
    "none": [vt.TrainConfig(k=4, hidden=16, epochs=3, batch_size=50, lr=1e-3, decay_epochs=1, covariance="none",
                            beta=0.0)],
    # a stacked pass of two models (the batched products, not the single model's)
    "sweep": [vt.TrainConfig(k=4, hidden=16, epochs=3, batch_size=50, lr=1e-3, decay_epochs=1, beta=b, seed=s,
                             data_seed=0) for b, s in ((1e-3, 0), (1e-1, 1))],
}
KEYS = ("train_class_bits", "train_info_bits", "test_izx", "test_izy", "test_err", "test_avg_err", "ema_test_izx",
        "ema_test_avg_err")


def synthetic() -> vt.MNISTTensors:
    """300 random images and labels, the same on every machine (200 to train on, 100 to test)."""
    g = torch.Generator().manual_seed(1234)
    x = torch.rand(300, 784, generator=g)
    y = torch.randint(0, 10, (300,), generator=g)
    return vt.MNISTTensors(x[:200], y[:200], x[200:], y[200:])


def trajectories() -> dict:
    """The pinned numbers of each config: per-epoch losses, bounds and errors, the final train bound, a weight sum."""
    out = {}
    for name, configs in CONFIGS.items():
        for j, r in enumerate(vt.train_sweep(configs, synthetic(), device="cpu", cache=False, progress=False)):
            h = r.history
            key = name if len(configs) == 1 else f"{name}{j}"
            out[key] = {k: [round(v, 6) for v in h[k]] for k in KEYS}
            out[key]["ema_train_izx"] = round(r.final["ema_train"]["izx"], 6)
            out[key]["weight_sum"] = round(float(sum(p.detach().double().sum() for p in r.ema_model.parameters())), 6)
    return out


N_TEST = 100  # test images of synthetic(): an error moves in steps of 1 / N_TEST


def pinned(key: str, got, expected) -> bool:
    """Whether a pinned number still holds: losses and bounds to float32's last bits across CPUs (a change of
    numerics moves them by far more), errors to one test image (the last bits can flip one prediction)."""
    if key.endswith("err"):
        return got == pytest.approx(expected, abs=1 / N_TEST + 1e-9)
    return got == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_a_pinned_error_allows_one_image_and_a_pinned_loss_its_last_bits():
    assert pinned("test_err", [0.89, 0.90, 0.89], [0.89, 0.89, 0.89])  # one prediction flipped on another CPU
    assert not pinned("test_err", [0.89, 0.91, 0.89], [0.89, 0.89, 0.89])  # two: the numerics changed
    assert pinned("train_class_bits", [3.3682351], [3.368235]) and not pinned("train_class_bits", [3.3692], [3.3682])


def test_training_numerics_match_the_results_version():
    got = trajectories()
    assert vt.RESULTS_VERSION == GOLDEN_VERSION, (
        f"RESULTS_VERSION is {vt.RESULTS_VERSION} but GOLDEN holds version {GOLDEN_VERSION}: paste the output of "
        f"trajectories() into GOLDEN and set GOLDEN_VERSION")
    assert len(synthetic().test_y) == N_TEST
    for name, expected in GOLDEN.items():
        for key, value in expected.items():
            assert pinned(key, got[name][key], value), (
                f"{name} {key}: {got[name][key]} != {value}: the training numerics changed; bump RESULTS_VERSION "
                f"in vibtools/store.py and update GOLDEN in this file")


if __name__ == "__main__":
    import json

    print(json.dumps(trajectories(), indent=1))
