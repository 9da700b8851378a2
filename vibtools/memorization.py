"""The random-label test of regularization (Zhang et al. 2017), read from the records of ``reproduce random-labels``
and ``reproduce true-labels-5k``: who memorizes labels that carry no information, and what the same models do with
the true labels of the same images.

A model *memorized* the random labels when its training error on them, measured after training (the weight
average, 12 draws of z, on all its training images), is below :data:`MEMORIZED`; it *did not learn* them when that
error is above :data:`NOT_LEARNED` (chance is 90%, with a binomial sd of 0.4 points on 5 000 images); it learned
them *partly* when the error lies between the two lines. Each verdict needs the whole 95% t-interval over seeds on
its side of the lines; an interval that crosses a line is *undecided*: those seeds cannot place the model.
"""

from __future__ import annotations

from collections.abc import Sequence

from .ceb import by_model, interval
from .experiments import MEMORIZATION_EPOCHS
from .stats import Interval, mean_and_sd, mean_interval

MEMORIZED = 0.10  # training error on random labels below this: memorized (1 in 10 random labels fitted by chance)
NOT_LEARNED = 0.88  # above this: did not learn them (chance is 0.90, about 5 binomial sd above on 5 000 images)


def train_error(record: dict) -> float:
    """The 12-sample error of the weight average on the run's own training images (all of them, for 5 000)."""
    return float(record["final"]["ema_train"]["avg_err"])


def verdict(iv: Interval) -> str:
    """"memorized", "did not learn", "partly" (between the lines) or "undecided" (across one): where the 95%
    interval of the training error lies."""
    low, high = iv.mean - iv.half, iv.mean + iv.half
    if high < MEMORIZED:
        return "memorized"
    if low > NOT_LEARNED:
        return "did not learn"
    if MEMORIZED < low and high < NOT_LEARNED:
        return "partly"
    return "undecided"


def curves(records: Sequence[dict]) -> dict[str, tuple[list[int], list[float], list[float], list[float]]]:
    """Per model: epochs (from 1), and the mean, lowest and highest over seeds of the running training error of each
    epoch (the raw weights, one draw of z per image, as the epoch trained)."""
    out = {}
    for label, runs in by_model(records).items():
        columns = list(zip(*(r["history"]["train_err"] for r in runs.values())))
        out[label] = (list(range(1, len(columns) + 1)), [mean_and_sd(c)[0] for c in columns],
                      [min(c) for c in columns], [max(c) for c in columns])
    return out


def rows(random_records: Sequence[dict], true_records: Sequence[dict]) -> list[dict]:
    """One row per model: its training error on the random labels with the verdict, its rate there (VIB and CEB:
    the bound on I(Z;X) on its training images), and the same model trained on the true labels: training error,
    test error, rate. Each number is a mean over seeds with its 95% t-interval (:class:`vibtools.stats.Interval`).

    Raises:
        ValueError: a model trained on one kind of labels and not the other.
    """
    rand, true = by_model(random_records), by_model(true_records)
    if set(rand) != set(true):
        raise ValueError(f"the random- and true-label runs hold other models: {sorted(set(rand) ^ set(true))}")

    def rate(models: dict, label: str) -> Interval | None:
        runs = list(models[label].values())
        if runs[0]["config"]["covariance"] == "none":
            return None
        return mean_interval([r["final"]["ema_train"]["izx"] for r in runs])

    out = []
    for label in rand:
        random_err = mean_interval([train_error(r) for r in rand[label].values()])
        out.append({"model": label, "random_train_err": random_err, "verdict": verdict(random_err),
                    "random_rate": rate(rand, label), "true_train_err": mean_interval(
                        [train_error(r) for r in true[label].values()]),
                    "true_test_err": interval(true, label, "avg_err"), "true_rate": rate(true, label),
                    "seeds": sorted(rand[label]),
                    "epochs": {r["protocol"]["epochs"] for m in (rand, true) for r in m[label].values()}})
    return out


def published_claims(table: Sequence[dict]) -> list[dict]:
    """The published claims on memorizing random labels, each beside ours (:func:`rows`) and judged.

    Returns:
        Rows with claim, source, ours (text), reproduced (True, False, or None) and, for None, why.
    """
    by = {r["model"]: r for r in table}
    vib = [r for r in table if r["model"].startswith("VIB")]
    small = [r for r in vib if float(r["model"].split("=")[1]) <= 1e-3]
    large = [r for r in vib if float(r["model"].split("=")[1]) > 1e-3]
    ceb = [r for r in table if r["model"] == "CEB β=1"]  # the published CEB: weight 1

    def said(rs: list[dict]) -> str:
        return "; ".join(f"{r['model']}: {r['verdict']} ({100 * r['random_train_err'].mean:.1f}% training error)"
                         for r in rs)

    def all_are(rs: list[dict], word: str) -> bool | None:
        if not rs or any(r["epochs"] != {MEMORIZATION_EPOCHS} for r in rs):
            return None  # no model to judge, or not trained for the protocol's epochs
        if any(r["verdict"] not in (word, "undecided") for r in rs):
            return False  # one model placed on another side: learned partly, or memorized where it should not
        return True if all(r["verdict"] == word for r in rs) else None

    epochs = sorted({e for r in table for e in r["epochs"]})
    if epochs != [MEMORIZATION_EPOCHS]:  # not the protocol: no verdict, whatever the numbers say
        why = f"undecided: trained for {', '.join(map(str, epochs))} epochs, not the protocol's {MEMORIZATION_EPOCHS}"
        return [{**c, "reproduced": None, "why": why} for c in published_claims(
            [{**r, "epochs": {MEMORIZATION_EPOCHS}} for r in table])]
    det = by.get("deterministic")
    vib_claim = all_are(small, "memorized")
    vib_claim = False if False in (vib_claim, all_are(large, "did not learn")) else (
        None if None in (vib_claim, all_are(large, "did not learn")) else True)
    return [
        {"claim": "a deterministic network memorizes random labels", "source": "Zhang et al. 2017",
         "ours": said([det]) if det else "not run", "reproduced": None if det is None else all_are([det], "memorized"),
         "why": "undecided: its seeds cannot place it"},
        {"claim": "VIB memorizes random labels only at β ≤ 1e-3", "source": "Fischer 2018, section 10",
         "ours": said(vib), "reproduced": vib_claim, "why": "undecided: the seeds cannot place some model"},
        {"claim": "CEB (weight 1) never learns random labels (100 epochs)", "source": "Fischer 2018, section 10",
         "ours": said(ceb), "reproduced": all_are(ceb, "did not learn") if ceb else None,
         "why": "undecided: its seeds cannot place it"},
    ]
