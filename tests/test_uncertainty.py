"""``vibtools.uncertainty``: the calibration and detection metrics agree with scikit-learn and with hand-computed
cases, the rate is the info loss, the learned marginal reduces to N(0, I), and bad input is one line."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import vibtools as vt
from vibtools import uncertainty as un
from vibtools.model import SCALE_AT_ONE

sklearn_metrics = pytest.importorskip("sklearn.metrics")  # a test dependency (requirements.txt)
from sklearn.calibration import calibration_curve  # noqa: E402


def random_probs(n: int, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax rows of random logits, and labels that agree with the argmax about 70% of the time."""
    g = torch.Generator().manual_seed(seed)
    probs = (3 * torch.randn(n, classes, generator=g)).softmax(-1)
    labels = torch.where(torch.rand(n, generator=g) < 0.7, probs.argmax(-1),
                         torch.randint(0, classes, (n,), generator=g))
    return probs, labels


def test_auroc_matches_sklearn_with_ties_and_its_extremes():
    g = torch.Generator().manual_seed(1)
    inside = torch.randint(0, 20, (700,), generator=g).double()  # many ties
    outside = torch.randint(5, 30, (300,), generator=g).double()
    y = np.r_[np.zeros(700), np.ones(300)]
    ref = sklearn_metrics.roc_auc_score(y, np.r_[inside.numpy(), outside.numpy()])
    assert un.auroc(inside, outside) == pytest.approx(ref, abs=1e-12)
    same = torch.randn(500, generator=g)
    assert un.auroc(same, same.clone()) == pytest.approx(0.5, abs=1e-12)  # identical distributions
    assert un.auroc(torch.zeros(10), torch.ones(10)) == 1.0  # separated
    assert un.auroc(torch.ones(10), torch.zeros(10)) == 0.0


@pytest.mark.parametrize("tpr", [0.95, 0.5, 1.0])
def test_fpr_at_tpr_matches_sklearn_roc_curve(tpr):
    g = torch.Generator().manual_seed(2)
    inside = torch.randn(1000, generator=g).round(decimals=1)
    outside = (torch.randn(400, generator=g) + 1.5).round(decimals=1)
    fpr, tprs, _ = sklearn_metrics.roc_curve(np.r_[np.zeros(1000), np.ones(400)],
                                             np.r_[inside.numpy(), outside.numpy()], drop_intermediate=False)
    ref = fpr[np.searchsorted(tprs, tpr - 1e-12, side="left")]
    assert un.fpr_at_tpr(inside, outside, tpr) == pytest.approx(ref, abs=1e-12)


def test_ece_matches_sklearn_calibration_curve():
    probs, labels = random_probs(3000)
    conf, pred = probs.max(-1)
    correct = (pred == labels).numpy().astype(float)
    prob_true, prob_pred = calibration_curve(correct, conf.double().numpy(), n_bins=15, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 16)[1:-1], conf.double().numpy()), minlength=15)
    counts = counts[counts > 0]
    ref = float(np.sum(counts * np.abs(prob_true - prob_pred)) / counts.sum())
    assert un.expected_calibration_error(probs, labels) == pytest.approx(ref, abs=1e-9)


def test_ece_is_zero_for_a_calibrated_toy_and_the_gap_for_an_overconfident_one():
    # ten images at confidence 0.7, seven of them right; ten at 0.9, nine right: calibrated in every bin
    probs = torch.tensor([[0.7, 0.3]] * 10 + [[0.9, 0.1]] * 10, dtype=torch.float64)
    labels = torch.tensor([0] * 7 + [1] * 3 + [0] * 9 + [1])
    assert un.expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)
    over = torch.tensor([[0.99, 0.01]] * 10)  # 99% sure, 50% right
    assert un.expected_calibration_error(over, torch.tensor([0, 1] * 5)) == pytest.approx(0.49)


def test_nll_and_brier_match_sklearn_and_a_hand_computed_case():
    probs, labels = random_probs(500, seed=3)
    p = probs.double() / probs.double().sum(-1, keepdim=True)  # rows that sum to 1 exactly, for sklearn's check
    c = un.calibration(p, labels)
    ref_nats = sklearn_metrics.log_loss(labels.numpy(), p.numpy(), labels=list(range(10)))
    assert c["nll_bits"] == pytest.approx(ref_nats / math.log(2), rel=1e-9)
    hand = un.calibration(torch.tensor([[0.5, 0.25, 0.25]]), torch.tensor([1]))
    assert hand["brier"] == pytest.approx(0.25 + 0.5625 + 0.0625)  # (0.5)^2 + (0.75)^2 + (0.25)^2
    assert hand["nll_bits"] == pytest.approx(2.0) and hand["err"] == 1.0


def test_the_rate_is_the_info_loss_on_in_distribution_data(small):
    model = vt.VIB(k=8, hidden=32, seed=0)
    pred = un.predictions(model, small.test_x, seed=5)
    izx = vt.evaluate(model, small.test_x, small.test_y)["izx"]  # the closed-form KL: no noise in either
    assert float(pred.rate.mean()) == pytest.approx(izx, rel=1e-5)
    scores = un.ood_scores(pred)
    assert set(scores) == set(un.SCORES) and all(s.shape == (len(small.test_x),) for s in scores.values())


def test_deterministic_predictions_have_no_rate_and_zero_mutual_information_unless_mc_dropout(small):
    det = vt.VIB(k=8, covariance="none", hidden=32, seed=0)
    pred = un.predictions(det, small.test_x[:50])
    assert pred.rate is None and "rate" not in un.ood_scores(pred)
    assert float(un.ood_scores(pred)["mutual-info"].max()) < 1e-5
    mc = un.predictions(det, small.test_x[:50], n_samples=8, dropout=0.5)
    assert float(un.ood_scores(mc)["mutual-info"].mean()) > 1e-4
    assert torch.allclose(mc.probs.sum(-1), torch.ones(50))


def test_a_one_component_mixture_at_the_standard_normal_is_the_default_marginal():
    model = vt.VIB(k=4, hidden=16, seed=0, mixture=1)
    with torch.no_grad():
        model.marginal_means.zero_()
        model.marginal_scales.fill_(SCALE_AT_ONE)
    z = torch.randn(7, 1, 5, 4)
    assert torch.allclose(model.marginal().log_prob(z), vt.prior(4).log_prob(z), atol=1e-6)
    default = vt.VIB(k=4, hidden=16, seed=0)
    assert torch.equal(default.enc1_weight, model.enc1_weight)  # the layers start alike
    q = model.encode(torch.rand(5, 784)).expand((1, 5))
    eps = torch.randn(20_000, 1, 5, 4, generator=torch.Generator().manual_seed(0))
    mc = model.rate_bits(q, vt.reparameterize(q, eps))  # Monte Carlo, 20 000 draws
    exact = default.rate_bits(q)
    assert torch.allclose(mc, exact, rtol=0.05, atol=0.05)


def test_training_with_a_learned_marginal_moves_it_and_keeps_the_default_keys(small):
    c = vt.TrainConfig(beta=1e-2, k=8, hidden=32, epochs=1, mixture=3)
    r = vt.train(c, small.subset(300, 100), cache=False, progress=False)
    assert not torch.equal(r.model.marginal_scales, torch.full((1, 3, 8), SCALE_AT_ONE))
    assert "mixture" in c.key_dict() and "mixture" not in vt.TrainConfig().as_dict()
    assert vt.TrainConfig.from_dict(c.as_dict()) == c


@pytest.mark.parametrize("call, words", [
    (lambda: un.calibration(torch.ones(3, 2), torch.zeros(3, dtype=torch.long)), "probabilities"),
    (lambda: un.calibration(torch.full((3, 2), 0.5), torch.tensor([0, 1, 2])), "class indices"),
    (lambda: un.calibration(torch.full((3, 2), 0.5), torch.zeros(2, dtype=torch.long)), "(N, classes)"),
    (lambda: un.auroc(torch.tensor([]), torch.ones(3)), "non-empty"),
    (lambda: un.auroc(torch.tensor([0.0, math.nan]), torch.ones(3)), "finite"),
    (lambda: un.fpr_at_tpr(torch.zeros(3), torch.ones(3), tpr=0), "tpr"),
    (lambda: un.reliability(torch.full((3, 2), 0.5), torch.zeros(3, dtype=torch.long), bins=0), "bins"),
    (lambda: un.ood_sets(torch.rand(5, 784), torch.rand(5, 784), n=0), "n must"),
    (lambda: un.predictions(vt.VIB(k=2, hidden=8, seed=0), torch.rand(3, 28, 28)), "(N, 784)"),
    (lambda: un.predictions(vt.VIB(k=2, hidden=8, seed=0), torch.rand(3, 784), dropout=1.0), "dropout"),
    (lambda: vt.TrainConfig(mixture=10, covariance="full", k=2), "covariance='diag'"),
    (lambda: vt.TrainConfig(mixture=-1), "mixture"),
])
def test_bad_input_is_one_line(call, words):
    with pytest.raises(ValueError) as err:
        call()
    assert words in str(err.value) and "\n" not in str(err.value)


def test_ood_sets_are_images_of_the_asked_size():
    mnist_x, fashion_x = torch.rand(30, 784), torch.rand(40, 784)
    sets = un.ood_sets(mnist_x, fashion_x, n=20)
    assert set(sets) == {"Fashion-MNIST", "uniform noise", "Gaussian noise", "rotated 90°", "inverted"}
    assert all(x.shape == (20, 784) and float(x.min()) >= 0 and float(x.max()) <= 1 for x in sets.values())
    assert torch.equal(un.rotate90(un.rotate90(un.rotate90(un.rotate90(mnist_x)))), mnist_x)
    assert torch.equal(sets["inverted"], 1 - mnist_x[:20])


def test_held_out_digit_runs_see_only_their_digits(small, tmp_path):
    from vibtools.reproduce import load_results, reproduce

    reproduce(["held-out-digits"], small, epochs=1, device="cpu", results_dir=tmp_path / "results",
              cache=tmp_path / "cache", progress=False, overrides={"hidden": 16}, only=["*-seed0"])
    files = sorted((tmp_path / "results" / "held-out-digits").glob("*.json"))
    assert [f.stem for f in files] == ["deterministic-k256-e1-seed0", "vib-beta0.001-k256-e1-seed0",
                                       "vib-beta0.01-k256-e1-seed0"]
    kept = small.only_classes(range(5))
    record = load_results(files[0])
    data = record["data"]
    assert data["classes"] == [0, 1, 2, 3, 4] and data["n_train"] == len(kept.train_x) < len(small.train_x)
    assert data["n_test"] == len(kept.test_x) and set(kept.test_y.tolist()) == {0, 1, 2, 3, 4}
    assert list(record["uncertainty"]["detection"]) == ["digits 5–9"]  # the unseen digits are the OOD set


def test_uncertainty_records_hold_calibration_detection_and_the_rate_histogram(small, tmp_path):
    from vibtools.reproduce import load_results, reproduce

    fashion = vt.MNISTTensors(*(t.flip(0) for t in (small.train_x, small.train_y, small.test_x, small.test_y)))
    kw = {"epochs": 1, "device": "cpu", "results_dir": tmp_path / "results", "cache": tmp_path / "cache",
          "progress": False, "overrides": {"hidden": 16}}
    with pytest.raises(ValueError, match="Fashion-MNIST"):  # refused before any work
        reproduce(["uncertainty"], small, **kw)
    assert not (tmp_path / "results").exists()
    reproduce(["uncertainty"], small, **kw, fashion=fashion, only=["dropout-*-seed0", "vib-beta0.001-*-seed0"])
    folder = tmp_path / "results" / "uncertainty"
    dropout = load_results(folder / "dropout-k256-e1-seed0.json")["uncertainty"]
    vib = load_results(folder / "vib-beta0.001-k256-e1-seed0.json")["uncertainty"]
    sets = ["Fashion-MNIST", "uniform noise", "Gaussian noise", "rotated 90°", "inverted"]
    assert list(vib["detection"]) == sets and set(vib["detection"]["inverted"]) == set(un.SCORES)
    assert "rate" not in dropout["detection"]["inverted"] and "mc_dropout" in dropout and "mc_dropout" not in vib
    assert set(vib["calibration"]) == {"err", "ece", "nll_bits", "brier"}
    assert [sum(c) for c in vib["rate_histogram"].values()] == [len(small.test_x)] * 6
    assert sum(vib["reliability"]["count"]) == len(small.test_x)


def fake_record(config: dict, seed: int, ece: float, auroc: dict, sets=("uniform noise", "Gaussian noise",
                                                                          "Fashion-MNIST")) -> dict:
    """A stored run's record with made-up uncertainty numbers (every score has ``auroc[score]`` on every set)."""
    detection = {w: {s: {"auroc": a, "fpr95": 1 - a} for s, a in auroc.items()} for w in sets}
    unc = {"calibration": {"err": 0.02, "ece": ece, "nll_bits": 0.1, "brier": 0.03}, "detection": detection}
    if config.get("dropout"):
        unc["mc_dropout"] = {**unc}
    return {"config": {"covariance": "diag", "beta": 1e-3, **config, "seed": seed}, "uncertainty": unc}


def test_published_claims_are_judged_by_the_books_rule():
    det = {"covariance": "none", "beta": 0.0}
    scores = {"max-softmax": 0.9, "entropy": 0.91, "mutual-info": 0.5, "rate": 1.0}
    records = [fake_record(det, s, 0.010 + 0.001 * s, {k: v for k, v in scores.items() if k != "rate"})
               for s in range(3)]
    records += [fake_record({**det, "dropout": 0.5}, s, 0.02, scores) for s in range(3)]
    records += [fake_record({}, s, 0.0062 + 0.001 * s, {**scores, "rate": 1.0 - 1e-4 * s}) for s in range(3)]
    groups = un.stored_groups(records)
    assert list(groups) == ["deterministic", "dropout", "dropout, MC", "VIB β=0.001"]
    near = {"max-softmax": 0.93, "entropy": 0.947, "mutual-info": 0.6, "rate": 0.7}
    held = {"VIB β=0.001": [fake_record({}, s, 0.01, {k: v + 0.002 * (s - 1) for k, v in near.items()},
                                        sets=(un.NEAR,))["uncertainty"] for s in range(3)]}
    rows = {r["claim"][:30]: r["reproduced"] for r in un.published_claims(groups, held)}
    assert list(rows.values()) == [True, True, True, True, True, True, None]
    # a VIB as well calibrated as the deterministic net at its only β: "better" is not shown, the 38% cut refuted
    same = [r for r in records if r["config"]["covariance"] == "none"]
    same += [fake_record({}, s, 0.010 + 0.001 * s, {**scores, "rate": 0.8}) for s in range(3)]
    verdicts = [r["reproduced"] for r in un.published_claims(un.stored_groups(same), held)]
    assert verdicts[:4] == [None, False, False, False]
    # a VIB clearly worse calibrated refutes the first claim too
    worse = [r for r in records if r["config"]["covariance"] == "none"]
    worse += [fake_record({}, s, 0.020 + 0.001 * s, scores) for s in range(3)]
    assert un.published_claims(un.stored_groups(worse), held)[0]["reproduced"] is False
    # the noise claim reads "100%" as any AUROC that prints as 100.0%
    near_one = [r for r in records if r["config"]["covariance"] == "none"]
    near_one += [fake_record({}, s, 0.0062 + 0.001 * s, {**scores, "rate": 0.9996}) for s in range(3)]
    assert un.published_claims(un.stored_groups(near_one), held)[2]["reproduced"] is True
    # a best score tied with another within the spread is not called either way
    tie = {**near, "max-softmax": 0.947}
    held_tie = {"VIB β=0.001": [fake_record({}, s, 0.01, {k: v + 0.002 * (s - 1) for k, v in tie.items()},
                                            sets=(un.NEAR,))["uncertainty"] for s in range(3)]}
    row = un.published_claims(groups, held_tie)[5]
    assert row["reproduced"] is None and row["why"].startswith("undecided")
