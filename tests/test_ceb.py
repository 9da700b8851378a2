"""The Conditional Entropy Bottleneck (bottleneck="ceb"): its bounds on small Gaussians, against closed forms and
Monte Carlo, and a CEB run as a run like any other (cached, resumed, evaluated, named)."""

import math

import pytest
import torch
from conftest import numeric
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

import vibtools as vt
from vibtools.bounds import LN2, class_loss_bits, izy_lower_bound

F64 = torch.float64
# a small world: six inputs x with encoder means mu(x) in 2-D, three classes of two inputs each, X uniform
MU = torch.tensor([[0.0, 0.0], [1.0, 0.5], [3.0, 0.0], [2.5, 1.5], [0.0, 3.0], [-1.0, 2.0]], dtype=F64)
Y = torch.tensor([0, 0, 1, 1, 2, 2])
DRAWS = 100_000  # codes per input for the Monte Carlo truths


def ceb_model(means: torch.Tensor) -> vt.VIB:
    """A K=2 CEB model (unit-variance encoder) whose backward encoder has these class means, in float64."""
    model = vt.VIB(k=2, covariance="unit", hidden=8, n_classes=3, seed=0, bottleneck="ceb").double()
    with torch.no_grad():
        model.backward_means.copy_(means.unsqueeze(0))
    return model.requires_grad_(False)


def encoder() -> Independent:
    """e(z|x) = N(mu(x), I) for the six inputs, batch shape (1, 6) as a one-model stack has."""
    return Independent(Normal(MU.unsqueeze(0), torch.ones(1, *MU.shape, dtype=F64)), 1)


def codes(seed: int = 0) -> torch.Tensor:
    """(DRAWS, 1, 6, 2) draws z ~ e(z|x) for every input."""
    eps = torch.randn(DRAWS, 1, *MU.shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return MU + eps


def log_e(z: torch.Tensor) -> torch.Tensor:
    """(..., 6, 6) log e(z_i | x_j) for codes z of shape (..., 6, 2) (nats)."""
    d = z.unsqueeze(-2) - MU  # (..., 6, 6, 2)
    return -0.5 * d.square().sum(-1) - math.log(2 * math.pi)


def true_terms(z: torch.Tensor) -> dict[str, float]:
    """Monte Carlo I(X;Z), I(Y;Z), I(X;Z|Y) of the small world in bits, with the exact mixtures p(z), p(z|y)."""
    table = log_e(z[:, 0])  # (D, 6 codes, 6 inputs)
    own = table.diagonal(dim1=-2, dim2=-1)  # log e(z_i | x_i)
    log_pz = torch.logsumexp(table, -1) - math.log(6)
    same = Y.unsqueeze(0) == Y.unsqueeze(1)  # (6, 6): x_j in the class of x_i
    log_pzy = torch.logsumexp(table.masked_fill(~same, -math.inf), -1) - math.log(2)
    return {"izx": float((own - log_pz).mean()) / LN2, "izy": float((log_pzy - log_pz).mean()) / LN2,
            "residual": float((own - log_pzy).mean()) / LN2}


def test_the_residual_term_is_half_the_squared_distance_in_bits():
    means = torch.tensor([[0.3, -0.2], [2.0, 1.0], [1.0, 2.0]], dtype=F64)
    model = ceb_model(means)
    exact = (MU - means[Y]).square().sum(-1) / 2 / LN2  # ||mu(x) - mu_y||^2 / 2 nats, in bits
    assert torch.allclose(model.residual_bits(encoder(), Y)[0], exact, atol=1e-12)
    assert torch.allclose(model.info_bits(encoder(), None, Y), exact.mean().unsqueeze(0), atol=1e-12)
    with pytest.raises(ValueError, match="pass y"):
        model.rate_bits(encoder())


def test_the_residual_bound_sits_above_the_true_residual_by_the_backward_encoders_kl():
    """KL(e || b) averaged = I(X;Z|Y) + E_y KL(p(z|y) || b(z|y)): an upper bound, tight only when b(z|y) = p(z|y)."""
    z = codes()
    truth = true_terms(z)
    for means in (torch.zeros(3, 2, dtype=F64), torch.stack([MU[Y == c].mean(0) for c in range(3)])):
        model = ceb_model(means)
        bound = float(model.residual_bits(encoder(), Y).mean())
        table = log_e(z[:, 0])
        same = Y.unsqueeze(0) == Y.unsqueeze(1)
        log_pzy = torch.logsumexp(table.masked_fill(~same, -math.inf), -1) - math.log(2)
        log_b = model.backward(Y).log_prob(z)[:, 0]  # (D, 6): log b(z | y(x))
        gap = float((log_pzy - log_b).mean()) / LN2  # E_y KL(p(z|y) || b(z|y)), by Monte Carlo
        assert bound >= truth["residual"] - 0.01
        assert bound == pytest.approx(truth["residual"] + gap, abs=0.01)
    # at the class means of mu(x) (the best unit-variance b), the bound is within the mixtures' spread of the truth
    assert bound - truth["residual"] < 0.5


def test_the_izx_bound_uses_the_mixture_of_backward_encoders():
    means = torch.stack([MU[Y == c].mean(0) for c in range(3)])
    model = ceb_model(means)
    z = codes(1)
    mixture = MixtureSameFamily(Categorical(logits=torch.zeros(3, dtype=F64)),
                                Independent(Normal(means, torch.ones_like(means)), 1))
    assert torch.allclose(model.ceb_marginal_log_prob(z[:50]), mixture.log_prob(z[:50]), atol=1e-10)
    bound = float(model.izx_bits(encoder(), z))
    truth = true_terms(z)
    assert truth["izx"] - 0.01 <= bound  # an upper bound on I(Z;X) ...
    assert bound <= float(model.residual_bits(encoder(), Y).mean()) + math.log2(3) + 0.01  # ... below residual + H(Y)
    # the chain rule the CEB objective rests on: I(X;Z) = I(Y;Z) + I(X;Z|Y) when Z depends on X alone
    assert truth["izx"] == pytest.approx(truth["izy"] + truth["residual"], abs=1e-9)


def test_the_izy_bound_is_exact_for_the_bayes_decoder_and_lower_for_another():
    z = codes(2)[:, 0]  # (D, 6, 2)
    truth = true_terms(z.unsqueeze(1))
    table = log_e(z)
    log_pzy = torch.stack([torch.logsumexp(table[..., Y == c], -1) - math.log(2) for c in range(3)], -1)
    labels = Y.expand(DRAWS, 6).reshape(-1)
    bayes = log_pzy.reshape(-1, 3)  # logits of p(y|z) (uniform p(y)): the best decoder
    best = float(izy_lower_bound(class_loss_bits(bayes, labels), 3))
    assert best == pytest.approx(truth["izy"], abs=0.01)
    other = float(izy_lower_bound(class_loss_bits(z.reshape(-1, 2) @ torch.tensor([[1.0, 0, -1], [0, 1, 0]],
                                                                                    dtype=F64), labels), 3))
    assert other < best


def test_ceb_starts_as_vib_and_keeps_vibs_keys():
    vib = vt.VIB(k=4, hidden=16, seed=3, covariance="unit")
    ceb = vt.VIB(k=4, hidden=16, seed=3, covariance="unit", bottleneck="ceb")
    for name, p in vib.named_parameters():
        assert torch.equal(p, getattr(ceb, name))
    assert torch.equal(ceb.backward_means, torch.zeros(1, 10, 4))
    x, y = torch.rand(5, 784), torch.randint(0, 10, (5,))
    q = vt.posterior(ceb.stacked_head(x), 4, "unit")
    assert torch.allclose(ceb.info_bits(q, None, y), vib.info_bits(q), atol=1e-6)  # b(z|y) = N(0, I) = r(z)
    assert "bottleneck" not in vt.TrainConfig().as_dict() and "bottleneck" not in vt.TrainConfig().key_dict()
    c = vt.TrainConfig(bottleneck="ceb", covariance="unit")
    assert c.key_dict()["bottleneck"] == "ceb" and vt.TrainConfig.from_dict(c.as_dict()) == c
    from vibtools.experiments import run_name

    assert run_name(c.with_(bottleneck="vib")) == "vib-beta0.001-unit-k256-e10-seed0"  # not the diag VIB's name
    with pytest.raises(ValueError, match="bottleneck"):
        vt.VIBStack.of([vib, ceb])


@pytest.mark.parametrize("fields, words", [
    ({"bottleneck": "cib"}, "bottleneck must be one of"),
    ({"bottleneck": "ceb", "covariance": "none"}, "needs covariance='unit'"),
    ({"bottleneck": "ceb", "covariance": "full", "k": 2}, "needs covariance='unit'"),
    ({"bottleneck": "ceb", "covariance": "diag"}, "needs covariance='unit'"),
    ({"bottleneck": "ceb", "covariance": "unit", "mixture": 3}, "no learned"),
])
def test_bad_ceb_configs_are_one_line(fields, words):
    with pytest.raises(ValueError) as err:
        vt.TrainConfig(**fields)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_ceb_run_trains_resumes_and_evaluates_like_any_run(small, tmp_path):
    from vibtools.experiments import run_name
    from vibtools.uncertainty import predictions

    data = small.subset(300, 100)
    c = vt.TrainConfig(beta=1e-2, k=8, hidden=32, epochs=2, covariance="unit", bottleneck="ceb")
    whole = vt.train(c, data, cache=tmp_path / "a", progress=False)
    vt.train(c, data, cache=tmp_path / "b", progress=False, stop_after=1)
    resumed = vt.train(c, data, cache=tmp_path / "b", progress=False)
    assert numeric(resumed.history) == numeric(whole.history) and resumed.final == whole.final
    assert not torch.equal(whole.model.backward_means, torch.zeros_like(whole.model.backward_means))  # b(z|y) learns
    test = whole.final["ema_test"]
    assert test["residual_bits"] > 0 and test["izx"] > 0 and "residual_bits" not in vt.train(
        c.with_(bottleneck="vib", covariance="diag"), data, cache=False, progress=False).final["ema_test"]
    assert run_name(c) == "ceb-beta0.01-k8-e2-seed0"
    pred = predictions(whole.ema_model, data.test_x[:20], n_samples=4)
    assert pred.rate.shape == (20,) and bool((pred.rate >= 0).all())


def test_a_ceb_records_objective_and_plots_use_the_residual_not_izx(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setenv("VIBTOOLS_RESULTS", str(tmp_path))
    ema = {"izy": math.log2(10) - 0.2, "izx": 5.0, "residual_bits": 2.0}
    record = {"experiment": "ceb", "run": "ceb-beta0.1-k256-e10-seed0", "data": {"fingerprint": "0" * 16},
              "config": {"beta": 0.1, "bottleneck": "ceb"}, "final": {"ema_test": ema}}
    assert vt.results.objective(record)["one_draw"] == pytest.approx(0.2 + 0.1 * 2.0)  # not 0.2 + 0.1 * 5.0
    vib = {**record, "config": {"beta": 0.1}}
    assert vt.results.objective(vib)["one_draw"] == pytest.approx(0.2 + 0.1 * 5.0)
    history = {key: [1.0, 2.0] for key in ("epoch", "train_info_bits", "train_class_bits")}
    history.update({f"{t}_{m}": [1.0, 2.0] for t in ("test", "ema_test") for m in ("izx", "izy", "err", "avg_err")})
    lines = {b: len(vt.plots.plot_learning_curves(history, bottleneck=b).axes[0].lines) for b in ("vib", "ceb")}
    assert lines["vib"] == lines["ceb"] + 1  # CEB's running rate bounds I(X;Z|Y): not drawn as an I(Z;X) bound
    plt.close("all")


def test_the_random_label_experiments_train_on_one_subset_with_random_or_true_labels(small, tmp_path):
    from vibtools.experiments import EXPERIMENTS, MEMORIZATION_TRAIN
    from vibtools.reproduce import load_results, reproduce

    random, true = (EXPERIMENTS[n].data_for(small) for n in ("random-labels", "true-labels-5k"))
    n = min(MEMORIZATION_TRAIN, len(small.train_x))
    assert torch.equal(random.train_x, small.train_x[:n]) and torch.equal(true.train_y, small.train_y[:n])
    assert torch.equal(random.test_y, small.test_y)
    assert 0.05 < float((random.train_y == true.train_y).float().mean()) < 0.2  # about 1 in 10 agree by chance
    assert torch.equal(random.train_y, EXPERIMENTS["random-labels"].data_for(small).train_y)  # one fixed draw
    for name in ("random-labels", "true-labels-5k"):
        reproduce([name], small, epochs=1, device="cpu", results_dir=tmp_path / "results", cache=tmp_path / "cache",
                  progress=False, overrides={"hidden": 16}, only=["deterministic-*-seed0", "ceb-beta1-*-seed0"])
    made = load_results(tmp_path / "results" / "random-labels" / "ceb-beta1-k256-e1-seed0.json")
    assert made["data"]["random_labels"] == {"seed": 0} and made["data"]["n_train"] == n
    assert made["final"]["ema_test"]["residual_bits"] >= 0
    control = load_results(tmp_path / "results" / "true-labels-5k" / "deterministic-k256-e1-seed0.json")
    assert "random_labels" not in control["data"] and control["data"]["fingerprint"] != made["data"]["fingerprint"]


def test_ceb_models_are_attacked_as_their_own_groups(small, tmp_path):
    from vibtools import robustness as R

    groups = R.study_configs(10, ceb=True)
    assert list(groups) == ["CEB β=0.001", "CEB β=0.01", "CEB β=0.1", "CEB β=1"]
    assert all(c.bottleneck == "ceb" and c.epochs == 10 for cs in groups.values() for c in cs)
    with pytest.raises(ValueError, match="10-epoch"):
        R.study_configs(200, ceb=True)
    model = vt.VIB(k=8, hidden=16, seed=0, covariance="unit", bottleneck="ceb").eval()
    numbers = R.attack_model(model, small.test_x[:8], small.test_y[:8], R.QUICK_GRID)
    rec = R.seal_record(groups["CEB β=1"][0], numbers, R.QUICK_GRID, small, "cpu")
    assert rec["group"] == "CEB β=1" and rec["run"] == "ceb-beta1-k256-e10-seed0"


def _record(label_config: dict, seed: int, err: float, ece: float, auroc: float, lower=(3.0,), upper=(3.1,)) -> dict:
    """A stored record of the uncertainty kind, with only what vibtools.ceb reads."""
    sets = {"uniform noise": {"rate": {"auroc": auroc}}, "Fashion-MNIST": {"rate": {"auroc": auroc}},
            "rotated 90°": {"rate": {"auroc": 1 - auroc}}}
    return {"run": f"r{seed}", "experiment": "x", "config": {"epochs": 10, "data_seed": 0, **label_config,
                                                              "seed": seed},
            "uncertainty": {"calibration": {"err": err, "ece": ece}, "detection": sets,
                            "reliability": {"confidence": [0.5, 0.99], "count": [10, 990]}},
            "mi_bounds": {"lower": list(lower), "upper": list(upper)},
            "final": {"ema_test": {"izy": 3.0, "izx": 3.4, "err": err}}}


def test_the_ceb_chapter_pairs_by_seed_and_judges_the_claims():
    from vibtools import ceb as C

    det = {"covariance": "none", "beta": 0.0}
    vib = {"covariance": "diag", "beta": 1.0}
    ceb = {"covariance": "unit", "beta": 1.0, "bottleneck": "ceb"}
    records = [_record(det, s, 0.020 + 0.001 * s, 0.010, 0.90) for s in range(3)]
    records += [_record(vib, s, 0.030 + 0.001 * s, 0.010, 0.95 + 0.001 * s) for s in range(3)]
    ceb_records = [_record(ceb, s, 0.021 + 0.001 * s + 0.0001 * (s == 2), 0.005 - 0.0001 * s, 0.999 + 0.0005 * s,
                           lower=(2.0,), upper=(2.5 + 0.01 * s,)) for s in range(3)]
    models = C.by_model(records, ceb_records)
    assert list(models) == ["deterministic", "VIB β=1", "CEB β=1"] and sorted(models["CEB β=1"]) == [0, 1, 2]
    # a paired difference removes what a seed shares: here CEB - det is 0.001 on two seeds and 0.0011 on one
    d = C.versus(models, "CEB β=1", "deterministic", "err")
    assert d.diff == pytest.approx(0.00103333, abs=1e-7) and d.half < 2e-4 and d.sign() == ">"
    claims = [c["reproduced"] for c in C.published_claims(models)]
    # worse than the deterministic network outside the spread; Poole's interval, 2.0 to 2.5 bits, misses H(Y)
    assert claims[0] is False and claims[1] is False
    at_mni = [{**r, "mi_bounds": {"lower": [3.31 + 0.001 * r["config"]["seed"]], "upper": [3.33]}} for r in ceb_records]
    mni = C.published_claims(C.by_model(records, at_mni))[1]
    assert mni["reproduced"] is True and "H(Y) = 3.32 bits" in mni["ours"]
    assert claims[2] is True  # a lower ECE, paired by seed
    assert claims[4] is True and claims[5] is False  # better on another data set, worse on turned images
    with pytest.raises(ValueError, match="stored twice"):
        C.by_model(records, records[:1])
    with pytest.raises(ValueError, match="not paired"):  # 200-epoch runs against 10-epoch ones
        C.versus(C.by_model(records[:3], [{**r, "config": {**r["config"], "epochs": 200}} for r in ceb_records]),
                 "CEB β=1", "deterministic", "err")
    with pytest.raises(ValueError, match="no stored runs of 'CEB β=0.1'"):
        C.interval(models, "CEB β=0.1", "err")


def test_memorization_verdicts_need_the_whole_interval_on_one_side():
    from vibtools import memorization as M
    from vibtools.stats import Interval, mean_interval

    assert M.verdict(mean_interval([0.01, 0.02, 0.015])) == "memorized"
    assert M.verdict(mean_interval([0.89, 0.90, 0.895])) == "did not learn"
    assert M.verdict(mean_interval([0.29, 0.30, 0.31])) == "partly"  # the whole interval between the lines
    assert M.verdict(mean_interval([0.05, 0.5, 0.85])) == "undecided"  # a wide spread decides nothing
    assert M.verdict(mean_interval([0.85, 0.87, 0.89])) == "undecided"  # across the line at 88%
    iv = {"memorized": Interval(0.01, 0.0, 3, 0.0), "did not learn": Interval(0.9, 0.0, 3, 0.0),
          "partly": Interval(0.5, 0.1, 3, 0.3), "undecided": Interval(0.1, 0.05, 3, 0.12)}

    def row(model, word):
        return {"model": model, "verdict": word, "random_train_err": iv[word], "epochs": {100}}

    table = [row("deterministic", "memorized"), row("VIB β=0.0001", "memorized"), row("VIB β=0.001", "memorized"),
             row("VIB β=0.01", "did not learn"), row("VIB β=0.1", "did not learn"), row("CEB β=0.01", "memorized"),
             row("CEB β=1", "did not learn")]
    assert [c["reproduced"] for c in M.published_claims(table)] == [True, True, True]
    table[3] = row("VIB β=0.01", "undecided")
    assert [c["reproduced"] for c in M.published_claims(table)] == [True, None, True]
    table[3] = row("VIB β=0.01", "partly")  # it learned random labels where the claim says it does not
    assert [c["reproduced"] for c in M.published_claims(table)] == [True, False, True]
    table[6] = row("CEB β=1", "partly")
    assert [c["reproduced"] for c in M.published_claims(table)][2] is False
    table[3], table[6] = row("VIB β=0.01", "did not learn"), row("CEB β=1", "did not learn")
    table[1] = row("VIB β=0.0001", "did not learn")
    assert [c["reproduced"] for c in M.published_claims(table)] == [True, False, True]
    small_only = [row("deterministic", "memorized"), row("VIB β=0.001", "memorized")]
    assert [c["reproduced"] for c in M.published_claims(small_only)] == [True, None, None]  # nothing to judge
    short = [{**r, "epochs": {10}} for r in table]
    assert [c["reproduced"] for c in M.published_claims(short)] == [None, None, None]  # not the protocol
    assert all("10 epochs" in c["why"] for c in M.published_claims(short))


def test_the_command_line_trains_ceb_and_refuses_another_encoder(tmp_path):
    import json

    from conftest import cli, fake_mnist

    data = fake_mnist(tmp_path / "data")
    args = ["train", "--model", "ceb", "--beta", "0.1", "--k", "4", "--epochs", "1", "--device", "cpu", "--data",
            str(data), "--no-progress"]
    ok = cli([*args, "--out", str(tmp_path / "out")], tmp_path)
    assert ok.returncode == 0, ok.stderr
    saved = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert saved["config"]["bottleneck"] == "ceb" and saved["config"]["covariance"] == "unit"
    bad = cli([*args, "--covariance", "diag", "--out", str(tmp_path / "bad")], tmp_path)
    assert bad.returncode == 2 and "--covariance unit" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def _attack_record(seed: int, correct: dict[str, list[int]], fooled_own: float) -> dict:
    """An attack-study record with only what vibtools.ceb.robustness_claims reads: 10 images, one attack per norm
    at two radii, its per-image masks (images correct: the first k), and the C&W success rates."""
    from vibtools.robustness import pack_mask

    n = 10
    masks = {norm: {"pgd": [pack_mask([j < k for j in range(n)]) for k in ks]} for norm, ks in correct.items()}
    return {"config": {"seed": seed}, "data": {"images": n}, "grid": {"eps_linf": [0.05, 0.1], "eps_l2": [1.0, 2.0]},
            "masks": masks, "cw": {"paper": {"success": fooled_own}, "judged": {"success": 0.5}}}


def test_the_robustness_claims_follow_the_paired_worst_case():
    from vibtools.ceb import robustness_claims

    def group(linf, l2, own, jitter=(0, 1, 0)):
        return [_attack_record(s, {"linf": [k + j for k in linf], "l2": [k + j for k in l2]}, own + j / 100)
                for s, j in enumerate(jitter)]

    det = group([6, 2], [6, 2], 0.9)
    same = {"deterministic": det, "CEB β=1": group([6, 2], [6, 2], 0.1)}
    pgd, cw, strong = robustness_claims(same)
    assert pgd["mnist"] is False and "above det. in 0 of 4" in pgd["ours"]  # no cell above: not more robust
    assert pgd["reproduced"] is None and pgd["why"].endswith("on MNIST: no material gain")  # another setting
    exact = group([6, 2], [6, 2], 0.9, jitter=(0, 0, 0))
    small = {"deterministic": exact, "CEB β=1": group([7, 2], [6, 2], 0.1, jitter=(0, 0, 0))}  # +10 points, exact
    assert robustness_claims(small)[0]["mnist"] is True
    slight = {"deterministic": det, "CEB β=1": group([6, 2], [6, 2], 0.1, jitter=(1, 1, 0))}  # +0 to +10, noisy
    assert robustness_claims(slight)[0]["mnist"] is False  # above, but its interval secures no 5 points
    assert cw["reproduced"] is True and strong["reproduced"] is True
    better = {"deterministic": det, "CEB β=1": group([9, 2], [6, 2], 0.95)}  # +30 points at one L∞ radius
    pgd, cw, strong = robustness_claims(better)
    assert pgd["mnist"] is True and cw["reproduced"] is False and strong["reproduced"] is False
    mixed = {"deterministic": det, "CEB β=1": group([9, 0], [6, 2], 0.1)}  # above at one radius, below at another
    assert robustness_claims(mixed)[0]["mnist"] is None


def test_the_committed_ceb_attack_records_pair_with_chapter_7s_study():
    study = vt.robustness.ceb_study()
    assert list(study) == ["deterministic", "VIB β=0.001", "CEB β=0.001", "VIB β=0.01", "CEB β=0.01",
                           "VIB β=0.1", "CEB β=0.1", "VIB β=1", "CEB β=1"]
    for name, records in study.items():  # one record per seed, each attacked with chapter 7's grid on its images
        assert [r["config"]["seed"] for r in records] == [0, 1, 2] and all("masks" in r for r in records), name
        assert records[0]["grid"] == study["deterministic"][0]["grid"], name
    claims = vt.ceb.robustness_claims(study)
    assert [c["source"] for c in claims] == ["Fischer & Alemi 2020", "Fischer 2018 (ICLR 2019 submission)",
                                             "Korshunova et al. 2021"]
