"""vibtools.robustness: the adversarial chapter's study on small models, its records, and its command."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import cli, fake_mnist

from vibtools import VIB
from vibtools import robustness as R
from vibtools.reproduce import ResultsError
from vibtools.store import save_json

GRID = R.AttackGrid(n_images=24, eps_linf=(0.05, 0.2), eps_l2=(1.0, 3.0), steps=3, restarts=2, eot=3,
                    check_eps=(0.2,), check_eps_l2=(3.0,), cw_steps=4, cw_rounds=1, apgd_steps=3, apgd_eot=1,
                    apgd_eps=(0.2,), apgd_eps_l2=(3.0,))


def _batch(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 784, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.fixture(scope="module")
def numbers():
    x, y = _batch()
    return {name: R.attack_model(VIB(k=4, hidden=32, covariance=cov, seed=0).eval(), x, y, GRID)
            for name, cov in (("det", "none"), ("vib", "diag"))}


def test_every_attack_reports_an_accuracy_per_radius(numbers):
    for rec in numbers.values():
        for key in ("fgsm", "pgd_linf"):
            for form, accs in rec[key].items():
                assert len(accs) == len(GRID.eps_linf) and all(0 <= a <= rec["clean"] for a in accs), (key, form)
        assert len(rec["pgd_l2"]["strong"]) == len(GRID.eps_l2) and len(rec["noise"]) == len(GRID.eps_linf)
        assert rec["step_check"]["strong"] == [rec["pgd_linf"]["strong"][GRID.eps_linf.index(e)]
                                               for e in GRID.check_eps]
        assert len(rec["step_check"]["double"]) == len(GRID.check_eps)
        for form in ("paper", "judged"):
            cw = rec["cw"][form]
            assert 0 <= cw["success"] <= 1 and len(cw["distances"]) == round(rec["clean"] * GRID.n_images)


def test_on_a_deterministic_net_the_strong_attack_is_the_plain_one_plus_restarts(numbers):
    det = numbers["det"]
    assert det["fgsm"]["eot"] == det["fgsm"]["plain"]
    assert all(s <= p for s, p in zip(det["pgd_linf"]["strong"], det["pgd_linf"]["plain"]))


def test_apgd_is_reported_when_torchattacks_is_installed(numbers):
    pytest.importorskip("torchattacks")
    apgd = numbers["vib"]["apgd"]
    assert apgd["eps"] == list(GRID.apgd_eps) and len(apgd["ce"]) == len(apgd["dlr"]) == len(GRID.apgd_eps)


def test_records_are_sealed_and_store_infinities_as_null(numbers, tmp_path):
    config = R.study_configs(10)["VIB β=0.01"][1]
    numbers = {**numbers["vib"], "cw": {"paper": {"success": 0.0, "median_l2": math.inf, "distances": [math.inf]}}}
    x, _ = _batch()

    class Data:
        def fingerprint(self):
            return "f" * 16

    rec = R.seal_record(config, numbers, GRID, Data(), "cpu")
    path = tmp_path / f"{rec['run']}.json"
    save_json(path, rec)
    loaded = R.load_record(path)
    assert loaded["group"] == "VIB β=0.01" and loaded["cw"]["paper"]["median_l2"] is None
    assert loaded["cw"]["paper"]["distances"] == [None]
    tampered = json.loads(path.read_text())
    tampered["clean"] = 1.0
    path.write_text(json.dumps(tampered))
    with pytest.raises(ResultsError, match="checksum"):
        R.load_record(path)


def test_a_missing_study_names_the_command_that_makes_it(tmp_path):
    with pytest.raises(ResultsError, match="attack-study --epochs 200"):
        R.load_study(tmp_path, 200)
    assert not (tmp_path / "adversarial").exists()


def test_the_command_lists_refuses_and_never_trains_a_200_epoch_model(tmp_path):
    listed = cli(["attack-study", "--list", "--epochs", "200"], tmp_path)
    assert listed.returncode == 0 and listed.stdout.split() == [
        f"{m}-k256-e200-seed{s}" for m in ("deterministic", "vib-beta0.001") for s in (0, 1, 2)]
    bad = cli(["attack-study", "--only", "cnn-*"], tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--list" in bad.stderr
    fake_mnist(tmp_path / "data")
    out = cli(["attack-study", "--epochs", "200", "--data", str(tmp_path / "data"), "--results",
               str(tmp_path / "results")], tmp_path)
    assert out.returncode == 2 and "reproduce table1 --epochs 200" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists() and not (tmp_path / "default-cache").exists()


def _fake(clean, strong, double, ce, dlr, distances, n=4, seed=0):
    """A study record with the fields the chapter's tables read."""
    return {"clean": clean, "data": {"images": n}, "config": {"seed": seed},
            "grid": {"eps_linf": [0.05, 0.1]}, "pgd_linf": {"strong": strong},
            "step_check": {"eps": [0.1], "steps": 40, "strong": [strong[1]], "double": [double]},
            "apgd": {"eps": [0.1], "ce": [ce], "dlr": [dlr]},
            "cw": {"judged": {"distances": distances}}}


def test_the_tables_read_the_records_as_documented():
    groups = {"deterministic": [_fake(1.0, [0.6, 0.2], 0.2, 0.25, 0.3, [0.5, 1.0, None, 2.0], seed=s)
                                for s in range(3)],
              "VIB β=0.01": [_fake(1.0, [0.8, s], s - 0.01, 0.1, 0.2, [1.5, None, None, None], seed=i)
                             for i, s in enumerate((0.30, 0.32, 0.34))]}
    step = {r["group"]: r for r in R.step_check_rows(groups)}
    assert step["deterministic"]["largest"] == 0 and step["deterministic"]["change"].mean == 0
    assert step["VIB β=0.01"]["change"].mean == pytest.approx(-0.01)
    assert R.step_check_rows(groups, "l2") == []  # these records hold no L2 step check
    assert R.verdicts_vs(groups, "deterministic", "pgd_linf", "strong") == {"VIB β=0.01": ["+", "+"]}
    within = R.fooled_within(groups["deterministic"], [0.0, 1.0, 3.0])[0]
    assert within == pytest.approx([0.0, 0.5, 0.75])  # 4 images, all correct; one never fooled
    assert R.fooled_within(groups["VIB β=0.01"], [2.0])[0] == pytest.approx([0.25])


def test_verdicts_pair_by_seed_where_welch_cannot_tell():
    """Seeds that move both models together: unpaired, the spread between seeds hides a difference that every
    seed shows; paired by seed, it cancels (seed 0 of each model is matched, whatever the records' order)."""
    base = [0.50, 0.60, 0.70]
    det = [_fake(1.0, [b, b], b, 0, 0, [], seed=s) for s, b in enumerate(base)]
    vib = [_fake(1.0, [b + 0.02, b + 0.02], b, 0, 0, [], seed=s) for s, b in reversed(list(enumerate(base)))]
    groups = {"deterministic": det, "VIB β=0.01": vib}
    assert R.verdicts_vs(groups, "deterministic", "pgd_linf", "strong") == {"VIB β=0.01": ["+", "+"]}
    welch = R.versus(groups, "deterministic", "pgd_linf", "strong", paired=False)
    assert welch["VIB β=0.01"][0].sign() == "≈" and welch["VIB β=0.01"][0].diff == pytest.approx(0.02)


def test_a_record_made_on_other_data_or_damaged_is_remade_and_says_why(numbers, tmp_path):
    config = R.study_configs(10)["VIB β=0.01"][1]

    class Data:
        def fingerprint(self):
            return "f" * 16

    rec = R.seal_record(config, numbers["vib"], GRID, Data(), "cpu")
    path = tmp_path / f"{rec['run']}.json"
    save_json(path, rec)
    said = []
    assert R._done(path, config, GRID, "f" * 16, said.append) and said == []
    assert not R._done(path, config, GRID, "e" * 16, said.append)  # one pixel flipped: another fingerprint
    assert said == [f"remaking {path.name}: it was made on other data (fingerprint ffffffffffff..., these images "
                    f"eeeeeeeeeeee...)"]
    path.write_text("{")
    assert not R._done(path, config, GRID, "f" * 16, said.append) and "not a readable" in said[-1]


def test_the_study_refuses_a_file_where_its_folder_goes_before_any_work(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / R.FOLDER).write_text("not a folder")
    fake_mnist(tmp_path / "data")
    out = cli(["attack-study", "--epochs", "10", "--data", str(tmp_path / "data"), "--results",
               str(tmp_path / "results")], tmp_path)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "move it away" in out.stderr
    assert not (tmp_path / "default-cache").exists()


def test_masks_round_trip_and_a_grid_checks_its_radii():
    for bits in ([], [True], [False, True, True, False, True], [bool(i % 3) for i in range(500)]):
        assert R.unpack_mask(R.pack_mask(bits), len(bits)) == bits
    assert R.pack_mask(torch.tensor([True, False, False, False, True])) == "11"
    with pytest.raises(ValueError, match="apgd_eps_l2"):
        R.AttackGrid(eps_l2=(0.5, 1.0), check_eps_l2=(1.0,), apgd_eps_l2=(2.0,))


def test_every_attack_stores_the_masks_its_accuracies_come_from(numbers):
    n = GRID.n_images
    for rec in numbers.values():
        clean = R.unpack_mask(rec["masks"]["clean"], n)
        assert sum(clean) / n == rec["clean"]
        linf = rec["masks"]["linf"]
        for name, accs in (("pgd-strong", rec["pgd_linf"]["strong"]), ("pgd-margin", rec["pgd_linf"]["margin"]),
                           ("fgsm", rec["fgsm"]["plain"]), ("noise", rec["noise"])):
            assert [sum(R.unpack_mask(m, n)) / n for m in linf[name]] == accs, name
        l2 = rec["masks"]["l2"]
        assert [sum(R.unpack_mask(m, n)) / n for m in l2["pgd-margin"]] == rec["pgd_l2"]["margin"]
        assert l2["pgd-strong-2x"][0] is None and sum(R.unpack_mask(l2["pgd-strong-2x"][1], n)) / n == \
            rec["l2_step_check"]["double"][0]
        for masks in (linf, l2):  # no attack leaves an image correct that was wrong clean
            for row in masks.values():
                for m in filter(None, row):
                    assert all(c or not a for a, c in zip(R.unpack_mask(m, n), clean))
        assert rec["gradients"]["images"] == sum(clean)


def test_apgd_runs_in_l2_too(numbers):
    pytest.importorskip("torchattacks")
    apgd = numbers["vib"]["apgd"]["l2"]
    assert apgd["eps"] == list(GRID.apgd_eps_l2) and len(apgd["ce"]) == len(apgd["dlr"]) == 1
    assert numbers["vib"]["masks"]["l2"]["apgd-dlr"][0] is None  # not run at radius 1


class Saturated(torch.nn.Module):
    """A linear classifier so sure of itself that its softmax is exactly one-hot in float32."""

    deterministic = True

    def __init__(self, scale=5000.0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(784, 10, generator=torch.Generator().manual_seed(0)) * scale / 28)

    def forward(self, x, n_samples=1, generator=None):
        return (x @ self.w)[None].expand(n_samples, -1, -1)


def test_a_saturated_cross_entropy_has_no_gradient_and_the_margin_breaks_it():
    from vibtools import attacks as A

    model = Saturated().requires_grad_(False)
    x, _ = _batch(40)
    y = model(x)[0].argmax(-1)
    sizes = R.gradient_sizes(model, x, y, draws=1)
    assert sizes["images"] == 40 and sizes["ce"]["zero"] >= 35 and sizes["ce"]["below_1e-6"] == 40
    assert sizes["margin"]["zero"] == 0
    top2 = model(x)[0].topk(2).values
    gaps = (model.w[:, None, :] - model.w[:, :, None]).norm(dim=0)  # the logit gap moves this fast per unit of L2
    eps = [float((top2[:, 0] - top2[:, 1]).median() / gaps[gaps > 0].min() * 3)]  # room to flip most images
    ce = A.robust_accuracy(model, x, y, eps, norm="l2", steps=20, objective="predictive")
    margin = A.robust_accuracy(model, x, y, eps, norm="l2", steps=20, objective="margin")
    assert ce[0] >= 0.8 and margin[0] <= 0.2


def _masked(clean, per_attack, n=4, seed=0):
    """A study record with masks only: per_attack = {name: [mask per L2 radius]}."""
    return {"data": {"images": n}, "config": {"seed": seed}, "grid": {"eps_linf": [], "eps_l2": [1.0, 2.0]},
            "masks": {"clean": R.pack_mask(clean), "linf": {},
                      "l2": {a: [R.pack_mask(m) for m in ms] for a, ms in per_attack.items()}}}


def test_the_strongest_attack_and_the_worst_case_per_image():
    t, f = True, False
    recs = [_masked([t, t, t, t], {"pgd-strong": [[t, t, f, t], [f, t, f, t]],
                                   "apgd-ce": [[t, f, t, t], [f, f, t, t]]}, seed=s) for s in (0, 1, 2)]
    rows = R.strongest_rows({"deterministic": recs}, "l2")
    assert [r["winner"] for r in rows] == ["pgd-strong", "pgd-strong"]  # a tie goes to the first attack run
    assert rows[0]["best"] == 0.75 and rows[0]["worst"] == 0.5 and rows[1]["worst"] == 0.25
    vib = [_masked([t, t, t, t], {"pgd-strong": [[t, t, t, t], [t, t, t, t]], "apgd-ce": [[t, t, t, t], m]},
                   seed=s) for s, m in zip((0, 1, 2), ([t, t, f, t], [t, t, t, f], [f, t, t, t]))]
    cmp = R.versus_worst({"deterministic": recs, "VIB β=0.01": vib}, "deterministic", "l2")["VIB β=0.01"]
    assert cmp[0].diff == pytest.approx(0.5) and cmp[0].sign() == ">"  # the same 0.5 for every seed
    assert cmp[1].diff == pytest.approx(0.5)
    welch = R.versus_worst({"deterministic": recs, "VIB β=0.01": vib}, "deterministic", "l2", paired=False)
    assert welch["VIB β=0.01"][1].diff == pytest.approx(0.5) and welch["VIB β=0.01"][1].df > 2
    assert R.worst_curve(vib, "l2") == (pytest.approx([1.0, 0.75]), pytest.approx([0.0, 0.0]))
    assert not R.l2_checked(recs) and R.l2_checked([{"pgd_l2": {"strong": [], "margin": []}}])


def test_the_papers_attack_untargeted_and_targeted():
    from vibtools import paper_attack as P

    x, y = _batch(40)
    targets = P.random_targets(y)
    assert (targets != y).all() and torch.equal(targets, P.random_targets(y))  # fixed, never the source
    settings = P.PaperCW(n_images=40, samples=3, steps=30, rounds=3)
    model = VIB(k=4, hidden=32, covariance="diag", seed=0).eval()
    out = P.paper_cw(model, x, y, settings)
    for form in ("untargeted", "targeted"):
        got = out[form]
        hits = R.unpack_mask(got["succeeded"], 40)
        assert len(got["l2"]) == len(got["linf"]) == len(got["l0"]) == sum(hits)
        assert got["success"] == pytest.approx(sum(hits) / round(out["clean"] * 40))
        assert all(0 < i <= 1 for i in got["linf"]) and all(0 <= n <= 784 for n in got["l0"])
        assert got["accuracy"] <= out["clean"]
    assert out["untargeted"]["success"] > 0.5  # an untrained net is easy to fool
    assert out["targeted"]["targets"] == targets.tolist()
    sizes = P.perturbation_sizes(torch.tensor([[0.0, 0.5, -0.001, -0.005], [0, 0, 0, 0.0]]))
    assert sizes["l0"] == [2, 0] and sizes["linf"] == [0.5, 0.0] and sizes["l2"][0] == pytest.approx(0.5, abs=1e-4)


def test_relative_sizes_divide_by_the_deterministic_model_of_the_same_seed():
    from vibtools import paper_attack as P

    det = [{"config": {"seed": s}, "targeted": {"l2": [1.0, 3.0]}} for s in (0, 1)]
    vib = [{"config": {"seed": 1}, "targeted": {"l2": [4.0]}}, {"config": {"seed": 0}, "targeted": {"l2": [2.0, 2.0]}}]
    assert P.relative_sizes(vib, det, "targeted", "l2") == [2.0, 1.0]
    assert math.isnan(P.relative_sizes([{"config": {"seed": 0}, "targeted": {"l2": []}}], det, "targeted", "l2")[0])


def test_the_paper_attack_command_lists_and_a_missing_study_names_it(tmp_path):
    with pytest.raises(ResultsError, match="attack-study --paper --epochs 10"):
        R.load_study(tmp_path, 10, paper=True)
    listed = cli(["attack-study", "--paper", "--list", "--epochs", "200"], tmp_path)
    assert listed.returncode == 0 and len(listed.stdout.split()) == 6


def test_a_record_without_masks_gives_each_attacks_accuracy_and_the_lowest_as_its_worst_case():
    old = {"data": {"images": 4}, "config": {"seed": 0}, "grid": {"eps_l2": [1.0, 2.0]},
           "pgd_l2": {"strong": [0.75, 0.5]},
           "cw": {"paper": {"distances": [0.5, 1.5, None]}, "judged": {"distances": [None, None, 1.5]}}}
    assert R.attack_accuracies(old, "l2") == {"pgd-strong": [0.75, 0.5], "cw-paper": [0.5, 0.25],
                                              "cw-judged": [0.75, 0.5]}
    assert R.worst_case([old], "l2") == [[0.5, 0.25]]
    rows = R.strongest_rows({"deterministic": [old]}, "l2")
    assert [(r["winner"], r["best"], r["per_image"]) for r in rows] == [("cw-paper", 0.5, False),
                                                                        ("cw-paper", 0.25, False)]
