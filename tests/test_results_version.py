"""The results version guards the run cache: a change in training numerics must come with a new version.

Stored runs are keyed on :data:`vibtools.RESULTS_VERSION`, so a run made by older numerics is never served as a
result of newer code. This test pins a short training trajectory on synthetic data for the current version; when
it fails, the numbers the package produces have changed: bump ``RESULTS_VERSION`` in vibtools/checkpoint.py and
update GOLDEN below (run this file's ``trajectories()`` and paste the output).
"""

from __future__ import annotations

import pytest
import torch

import vibtools as vt

GOLDEN_VERSION = 2
GOLDEN = {
    "diag": {
        "train_class_bits": [3.368235, 3.246451],
        "train_info_bits": [25.073065, 24.880207],
        "test_izx": [25.055681, 24.907642],
        "test_izy": [0.007888, 0.011724],
        "ema_test_izx": [25.130243, 25.047279],
        "ema_train_izx": 24.923748,
        "weight_sum": 14.474819,
    },
    "full": {
        "train_class_bits": [3.525552, 3.359507],
        "train_info_bits": [14.752678, 14.383204],
        "test_izx": [14.472218, 14.297288],
        "test_izy": [-0.002769, 0.027505],
        "ema_test_izx": [14.546062, 14.450353],
        "ema_train_izx": 14.425288,
        "weight_sum": 12.954567,
    },
}
CONFIGS = {
    "diag": vt.TrainConfig(k=4, hidden=16, epochs=2, batch_size=50, lr=1e-3),
    "full": vt.TrainConfig(k=2, hidden=16, epochs=2, batch_size=50, lr=1e-3, covariance="full", beta=0.1),
}


def synthetic() -> vt.MNISTTensors:
    """300 random images and labels, the same on every machine (200 to train on, 100 to test)."""
    g = torch.Generator().manual_seed(1234)
    x = torch.rand(300, 784, generator=g)
    y = torch.randint(0, 10, (300,), generator=g)
    return vt.MNISTTensors(x[:200], y[:200], x[200:], y[200:])


def trajectories() -> dict:
    """The pinned numbers of each config: per-epoch losses and bounds, the final train bound, a weight sum."""
    out = {}
    for name, cfg in CONFIGS.items():
        r = vt.train(cfg, synthetic(), device="cpu", cache=False, progress=False)
        h = r.history
        out[name] = {k: [round(v, 6) for v in h[k]]
                     for k in ("train_class_bits", "train_info_bits", "test_izx", "test_izy", "ema_test_izx")}
        out[name]["ema_train_izx"] = round(r.final["ema_train"]["izx"], 6)
        out[name]["weight_sum"] = round(float(sum(p.detach().double().sum() for p in r.ema_model.parameters())), 6)
    return out


def test_training_numerics_match_the_results_version():
    got = trajectories()
    assert vt.RESULTS_VERSION == GOLDEN_VERSION, (
        f"RESULTS_VERSION is {vt.RESULTS_VERSION} but GOLDEN holds version {GOLDEN_VERSION}: paste the output of "
        f"trajectories() into GOLDEN and set GOLDEN_VERSION")
    for name, expected in GOLDEN.items():
        for key, value in expected.items():
            # float32 matrix products may differ in the last bits between CPUs; a change of numerics moves these
            # numbers by far more than the tolerance
            assert got[name][key] == pytest.approx(value, rel=1e-4, abs=1e-5), (
                f"{name} {key}: {got[name][key]} != {value}: the training numerics changed; bump RESULTS_VERSION "
                f"in vibtools/checkpoint.py and update GOLDEN in this file")


if __name__ == "__main__":
    import json

    print(json.dumps(trajectories(), indent=1))
