"""The adversarial chapter's study: each of its models attacked on one grid, one results file per model.

``python -m vibtools attack-study [--epochs 10|200]`` loads (or trains) the models, attacks the first
``n_images`` test images with every attack of :class:`AttackGrid`, and writes ``results/adversarial/<run>.json``
as each model finishes, so an interrupted study resumes with the next model. Every accuracy is that of the
12-sample prediction under evaluation noise the attacker never sees (:func:`vibtools.attacks.robust_accuracy`).

The attacks, per model:

- FGSM (L-inf), plain (one draw of z per gradient) and with EOT on the prediction's loss;
- PGD L-inf, plain (one draw, one start: the weak form) and strong (the loss of the 12-sample prediction with EOT,
  several restarts, the worst case kept), and the strong form with twice the steps at two radii (the step check);
- PGD on the margin of the 12-sample prediction (Carlini and Wagner's loss, L-inf and L2), whose gradient does not
  vanish where the cross-entropy's softmax has saturated;
- PGD L2, strong, with its own step check; random noise of the same L-inf size (the control);
- the L2 optimization attack in two forms: the paper's bookkeeping (success on the attack's own draw, no
  margin) and success judged by the 12-sample prediction under fresh draws with a margin;
- APGD-CE and APGD-DLR from torchattacks (Croce & Hein 2020) with EOT, in L-inf and L2, on the same prediction,
  when installed: attacks written by others, the check that ours are not weak.

Every attack is judged by the same draws of z, and each record keeps which images each attack left correct
(``masks``), so that the chapter's verdicts use, per model and radius, the worst case over all attacks, image by
image (:func:`strongest_rows`, :func:`versus_worst`).
"""

from __future__ import annotations

import fnmatch
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .baselines import model_config
from .config import TrainConfig
from .experiments import PAPER_EPOCHS, batch_order, plan_passes, run_name

if TYPE_CHECKING:  # torch loads with the attacks, not with the readers of stored records
    import torch

FORMAT = "vibtools-attacks"
FOLDER = "adversarial"
SEEDS = (0, 1, 2)
BETAS = (1e-3, 1e-2, 1e-1, 0.3, 1.0)  # the 10-epoch models; the 200-epoch ones are those of Table 1


@dataclass(frozen=True)
class AttackGrid:
    """What each model is attacked with (the chapter's full settings; :data:`QUICK_GRID` for the tests)."""

    n_images: int = 500  # the first test images
    eps_linf: tuple[float, ...] = (0.01, 0.03, 0.05, 0.07, 0.1, 0.15)
    eps_l2: tuple[float, ...] = (0.5, 1.0, 2.0)
    steps: int = 40  # PGD steps (step size 2.5 eps / steps)
    restarts: int = 2  # random starts of the strong PGD
    eot: int = 12  # draws of z per gradient in the EOT forms (the prediction's own 12)
    check_eps: tuple[float, ...] = (0.05, 0.1)  # radii of the L-inf step check (strong PGD with 2 x steps)
    check_eps_l2: tuple[float, ...] = (1.0, 2.0)  # radii of the L2 step check
    cw_steps: int = 50  # Adam steps per round of the L2 optimization attack
    cw_rounds: int = 3  # rounds of its search over c
    cw_kappa: float = 0.5  # the judged form's margin, in log-probability
    apgd_steps: int = 50  # torchattacks APGD iterations
    apgd_eot: int = 2  # its EOT iterations (each averages the 12 draws of the prediction)
    apgd_eps: tuple[float, ...] = (0.05, 0.1)  # APGD's L-inf radii
    apgd_eps_l2: tuple[float, ...] = (0.5, 1.0, 2.0)  # APGD's L2 radii

    def __post_init__(self):
        for name, radii, of in (("check_eps", self.check_eps, "eps_linf"), ("apgd_eps", self.apgd_eps, "eps_linf"),
                                ("check_eps_l2", self.check_eps_l2, "eps_l2"),
                                ("apgd_eps_l2", self.apgd_eps_l2, "eps_l2")):
            if not set(radii) <= set(getattr(self, of)):
                raise ValueError(f"AttackGrid.{name} {radii} must be radii of {of} {getattr(self, of)}: the "
                                 f"strongest attack is taken per radius of that grid")


QUICK_GRID = AttackGrid(n_images=50, eps_linf=(0.05, 0.1), eps_l2=(1.0,), steps=5, eot=4, check_eps=(0.1,),
                        check_eps_l2=(1.0,), cw_steps=10, cw_rounds=2, apgd_steps=5, apgd_eot=1, apgd_eps=(0.1,),
                        apgd_eps_l2=(1.0,))


def study_configs(epochs: int, ceb: bool = False) -> dict[str, list[TrainConfig]]:
    """The models attacked, by group: at 200 epochs those of Table 1 (the deterministic net and VIB at beta=1e-3),
    otherwise the deterministic net and K=256 VIB at :data:`BETAS`; three training seeds each. ``ceb``: instead,
    the Conditional Entropy Bottleneck's models of ``reproduce ceb`` (10 epochs only), by beta.

    The configs equal those of ``reproduce table1`` / ``reproduce beta-sweep`` / ``reproduce ceb`` (beta 0.3 is
    the study's own), so runs those commands trained come from the run cache.
    """
    if ceb:
        from .experiments import EXPERIMENTS

        if epochs >= PAPER_EPOCHS:
            raise ValueError(f"the CEB models are attacked at the 10-epoch protocol, not at {epochs} epochs: use "
                             f"--epochs 10")
        groups: dict[str, list[TrainConfig]] = {}
        for c in EXPERIMENTS["ceb"].runs(epochs):
            groups.setdefault(group_name(c.beta, ceb=True), []).append(c)
        return groups
    betas = (1e-3,) if epochs >= PAPER_EPOCHS else BETAS
    groups = {"deterministic": [model_config("deterministic", epochs=epochs, seed=s,
                                             data_seed=batch_order(epochs, s)) for s in SEEDS]}
    for b in betas:
        groups[group_name(b)] = [TrainConfig(beta=b, epochs=epochs, seed=s, data_seed=batch_order(epochs, s))
                                 for s in SEEDS]
    return groups


def group_name(beta: float | None, ceb: bool = False) -> str:
    """The name a model group goes by in the chapter ("deterministic", "VIB β=0.01", "CEB β=0.01")."""
    return "deterministic" if beta is None else f"{'CEB' if ceb else 'VIB'} β={beta:g}"


def pack_mask(mask) -> str:
    """A bool mask (tensor or list) as a hex string, first image in the highest bit (how records store masks)."""
    bits = "".join("1" if bool(v) else "0" for v in (mask.tolist() if hasattr(mask, "tolist") else mask))
    return format(int(bits or "0", 2), f"0{(len(bits) + 3) // 4}x") if bits else ""


def unpack_mask(text: str, n: int) -> list[bool]:
    """The inverse of :func:`pack_mask` for ``n`` images."""
    value = int(text, 16) if text else 0
    return [bool(value >> (n - 1 - i) & 1) for i in range(n)]


def attack_model(model, x: torch.Tensor, y: torch.Tensor, grid: AttackGrid, seed: int = 0,
                 log=None) -> dict:
    """Every attack of ``grid`` on one model (see the module's docstring).

    Args:
        model: a trained VIB or deterministic net (its EMA weights), in eval mode.
        x, y: the images attacked (the first ``grid.n_images`` are used) and their labels.
        grid: the attacks' settings.
        seed: seed of the attacks' noise (the evaluation noise is seeded apart from it).
        log: called with one line per finished attack (None: silent).
    Returns:
        The numbers of a results record: accuracies per radius, the step checks, the L2 attack's summaries,
        APGD's accuracies (None when torchattacks is not installed), the input gradients' sizes on the clean
        images, and ``masks``: per norm and attack, which images stayed correct at each radius (hex strings of
        :func:`pack_mask`; every attack is judged by the same draws of z, so masks combine image by image).
    """
    from . import attacks as A

    x, y = x[:grid.n_images], y[:grid.n_images]
    model.requires_grad_(False)  # gradients with respect to the images only
    det = bool(getattr(model, "deterministic", False))
    eot = 1 if det else grid.eot  # every draw of a deterministic net is the same
    t0 = time.perf_counter()
    masks: dict = {"linf": {}, "l2": {}}

    def run(name: str, eps_list, norm: str = "linf", steps: int = grid.steps, **kw) -> list[float]:
        got = A.robust_masks(model, x, y, eps_list, seed=seed, steps=steps, batch=len(x), norm=norm, **kw)
        grid_eps = grid.eps_linf if norm == "linf" else grid.eps_l2
        row = masks[norm].setdefault(name, [None] * len(grid_eps))
        for eps, m in zip(eps_list, got):
            row[grid_eps.index(eps)] = pack_mask(m)
        if log:
            log(f"{norm} {name} done at {time.perf_counter() - t0:.0f} s")
        return [int(m.sum()) / len(x) for m in got]

    strong = dict(draws=eot, objective="predictive", restarts=grid.restarts)
    clean = A.robust_masks(model, x, y, [0.0], seed=seed, batch=len(x))[0]
    rec: dict = {"clean": int(clean.sum()) / len(x)}
    plain_fgsm = run("fgsm", grid.eps_linf, attack="fgsm")
    if det:
        masks["linf"]["fgsm-eot"] = masks["linf"]["fgsm"]
    rec["fgsm"] = {"plain": plain_fgsm, "eot": plain_fgsm if det else run("fgsm-eot", grid.eps_linf, attack="fgsm",
                                                                         draws=eot, objective="predictive")}
    rec["pgd_linf"] = {"plain": run("pgd", grid.eps_linf), "strong": run("pgd-strong", grid.eps_linf, **strong),
                       "margin": run("pgd-margin", grid.eps_linf, **{**strong, "objective": "margin"})}
    rec["step_check"] = {"eps": list(grid.check_eps), "steps": grid.steps,
                         "strong": [rec["pgd_linf"]["strong"][grid.eps_linf.index(e)] for e in grid.check_eps],
                         "double": run("pgd-strong-2x", grid.check_eps, steps=2 * grid.steps, **strong)}
    rec["pgd_l2"] = {"strong": run("pgd-strong", grid.eps_l2, "l2", **strong),
                     "margin": run("pgd-margin", grid.eps_l2, "l2", **{**strong, "objective": "margin"})}
    rec["l2_step_check"] = {"eps": list(grid.check_eps_l2), "steps": grid.steps,
                            "strong": [rec["pgd_l2"]["strong"][grid.eps_l2.index(e)] for e in grid.check_eps_l2],
                            "double": run("pgd-strong-2x", grid.check_eps_l2, "l2", steps=2 * grid.steps,
                                          **strong)}
    rec["noise"] = run("noise", grid.eps_linf, attack="noise")
    cw = dict(steps=grid.cw_steps, search_steps=grid.cw_rounds, seed=seed, batch=len(x))
    rec["cw"] = {"paper": A.cw_summary(model, x, y, **cw),
                 "judged": A.cw_summary(model, x, y, draws=eot, objective="predictive", judge_samples=12,
                                        kappa=grid.cw_kappa, **cw)}
    for form in ("paper", "judged"):  # the L2 attack's masks at the grid's radii, from its distances
        if len(rec["cw"][form]["distances"]) != int(clean.sum()):  # one distance per image judged correct clean
            raise RuntimeError(f"the L2 attack judged {len(rec['cw'][form]['distances'])} images correct clean, the "
                               f"study {int(clean.sum())}: the two judges' draws differ")
        dist = iter(rec["cw"][form]["distances"])
        per_image = [next(dist) if ok else 0.0 for ok in clean.tolist()]
        masks["l2"][f"cw-{form}"] = [pack_mask([d > e for d in per_image]) for e in grid.eps_l2]
    rec["apgd"] = apgd(model, x, y, grid, seed, masks)
    rec["gradients"] = gradient_sizes(model, x[clean], y[clean], eot, seed)
    rec["masks"] = {"clean": pack_mask(clean), **masks}
    rec["seconds"] = time.perf_counter() - t0
    return rec


def gradient_sizes(model, x: torch.Tensor, y: torch.Tensor, draws: int, seed: int = 0) -> dict:
    """How large the input gradient of the strong attacks' two losses is on the clean images x (correctly
    classified ones): the cross-entropy of the 12-sample prediction and its margin.

    A cross-entropy whose softmax has saturated (probability 1 in float32) has an input gradient of exactly 0: an
    attack that climbs it cannot start, and the image looks robust. The margin's gradient does not vanish there.

    Returns:
        {"images", "ce": {...}, "margin": {...}}, each with the median L2 norm of the gradient, the number of
        images where it is exactly 0 and where it is below 1e-6.
    """
    from statistics import median

    import torch

    from . import attacks as A

    out: dict = {"images": len(x)}
    for objective in ("predictive", "margin"):
        g = torch.Generator(device=x.device).manual_seed(seed + 31337)
        grad, _ = A.input_gradient(model, x, y, draws, g, objective=objective)
        norms = grad.double().norm(dim=1).tolist()
        out["ce" if objective == "predictive" else "margin"] = {
            "median": median(norms) if norms else None, "zero": sum(v == 0 for v in norms),
            "below_1e-6": sum(v < 1e-6 for v in norms)}
    return out


def apgd(model, x: torch.Tensor, y: torch.Tensor, grid: AttackGrid, seed: int = 0,
         masks: dict | None = None) -> dict | None:
    """torchattacks' APGD-CE and APGD-DLR (EOT) on the 12-sample prediction, in L-inf and L2, judged as ours are.

    Args:
        masks: where to put each attack's masks (``masks[norm]["apgd-ce"]`` ...), as :func:`attack_model` does.
    Returns:
        {"eps", "ce", "dlr", "version", "l2": {"eps", "ce", "dlr"}}: accuracies per radius of
        :attr:`AttackGrid.apgd_eps` (L-inf) and :attr:`AttackGrid.apgd_eps_l2`, or None when torchattacks is not
        installed (``pip install --no-deps torchattacks``: it needs only torch).
    """
    try:
        import torchattacks
    except ImportError:
        return None
    import torch

    from . import attacks as A

    wrapped = A.ImageClassifier(model, 12)
    judge = A.predict(model, x, 12, A.judge_noise(seed, 0, x.device)) == y  # the judge of robust_masks
    out: dict = {"eps": list(grid.apgd_eps), "version": torchattacks.__version__, "l2": {"eps": list(grid.apgd_eps_l2)}}
    for norm, radii, where, grid_eps in (("Linf", grid.apgd_eps, out, grid.eps_linf),
                                         ("L2", grid.apgd_eps_l2, out["l2"], grid.eps_l2)):
        for loss in ("ce", "dlr"):
            accs = []
            row = None if masks is None else masks[norm.lower()].setdefault(f"apgd-{loss}", [None] * len(grid_eps))
            for eps in radii:
                with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
                    atk = torchattacks.APGD(wrapped, norm=norm, eps=eps, steps=grid.apgd_steps, n_restarts=1,
                                            loss=loss, eot_iter=grid.apgd_eot, seed=seed)
                    adv = atk(x.view(-1, 1, 28, 28), y).view(len(x), -1)
                ok = judge & (A.predict(model, adv, 12, A.judge_noise(seed, 0, x.device)) == y)
                accs.append(int(ok.sum()) / len(x))
                if row is not None:
                    row[grid_eps.index(eps)] = pack_mask(ok)
            where[loss] = accs
    return out


def _finite(obj):
    """The numbers with every infinite or NaN float as None (null in JSON: "not fooled", "undefined")."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def seal_record(config: TrainConfig, numbers: dict, grid, data, device: str, fmt: str = FORMAT) -> dict:
    """A sealed results record of one attacked model (infinite distances and undefined medians stored as null);
    ``grid``: the settings it was attacked with (an :class:`AttackGrid`, or the paper attack's
    :class:`vibtools.paper_attack.PaperCW` with ``fmt`` its format)."""
    from .records import code_version, sealed

    group = group_name(None if _is_deterministic(config) else config.beta, config.bottleneck == "ceb")
    return sealed(_finite({"format": fmt, "run": run_name(config), "group": group, "config": config.as_dict(),
                           "grid": asdict(grid), "data": {"fingerprint": data.fingerprint(), "images": grid.n_images},
                           "device": device, "code": code_version(), **numbers}))


def _is_deterministic(config: TrainConfig) -> bool:
    from .baselines import model_name

    return model_name(config) == "deterministic"


def load_record(path: str | Path, fmt: str = FORMAT) -> dict:
    """One study record of format ``fmt``, checked (format, checksum, run name); ResultsError in one line
    otherwise (:func:`vibtools.records.load_sealed`)."""
    from .records import load_sealed

    paper = fmt != FORMAT
    return load_sealed(path, fmt, f"python -m vibtools attack-study{' --paper' * paper}")


def _kind(paper: bool):
    """(folder, format, default settings, attack) of the study (``paper=False``) or of the paper's attack."""
    if paper:
        from . import paper_attack as P

        return P.FOLDER, P.FORMAT, P.PaperCW(), P.paper_cw
    return FOLDER, FORMAT, AttackGrid(), attack_model


def load_study(results_dir: str | Path, epochs: int, paper: bool = False, ceb: bool = False) -> dict[str, list[dict]]:
    """The stored records of one protocol by group, in seed order (``paper``: those of the paper's attack;
    ``ceb``: those of the CEB models); ResultsError (one line) when any is missing."""
    from .records import ResultsError

    sub, fmt, _, _ = _kind(paper)
    folder = Path(results_dir) / sub
    groups: dict[str, list[dict]] = {}
    for name, configs in study_configs(epochs, ceb).items():
        paths = [folder / f"{run_name(c)}.json" for c in configs]
        missing = [p.stem for p in paths if not p.exists()]
        if missing:
            raise ResultsError(f"{folder} lacks {missing[0]} ({len(missing)} of the {epochs}-epoch study missing): "
                               f"run python -m vibtools attack-study{' --paper' * paper}{' --ceb' * ceb} "
                               f"--epochs {epochs}")
        groups[name] = [load_record(p, fmt) for p in paths]
    return groups


def run_study(epochs: int, data, *, grid=None, results_dir: str | Path = "results", device=None, cache=True,
              only: list[str] | None = None, log=print, paper: bool = False, ceb: bool = False) -> list[Path]:
    """Attack every model of :func:`study_configs` that has no record yet; write each record when it is done.

    ``paper``: run the paper's own attack (:mod:`vibtools.paper_attack`) instead of the study's grid. ``grid``:
    the settings (None: the full ones of the chosen attack). ``ceb``: attack the CEB models instead.

    The 200-epoch models are never trained here (hours on a CPU): they must be in the run cache, else ValueError
    before any work names the command that trains them. The 10-epoch ones are trained when missing.
    """
    from .device import describe_device
    from .store import RunCache, cache_folder, save_json
    from .training import finished_run, train_sweep

    configs = [c for cs in study_configs(epochs, ceb).values() for c in cs]
    if only:
        configs = [c for c in configs if any(fnmatch.fnmatchcase(run_name(c), p) for p in only)]
        if not configs:
            raise ValueError(f"--only {','.join(only)!r} matches none of the study's runs (see --list)")
    sub, fmt, default, attack = _kind(paper)
    grid = default if grid is None else grid
    folder = Path(results_dir) / sub
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file where the study's records go: move it away")
    fp = data.fingerprint()
    todo = [c for c in configs if not _done(folder / f"{run_name(c)}.json", c, grid, fp, log, fmt)]
    if epochs >= PAPER_EPOCHS and todo:
        store_dir = cache_folder(cache)
        store = RunCache(store_dir) if store_dir else None
        for c in todo:
            stored = store.read(store.path(c, fp), c, fp) if store else None
            if not finished_run(stored, c):
                raise ValueError(f"{run_name(c)} is not in the run cache: train it first with python -m vibtools "
                                 f"reproduce table1 --epochs {c.epochs}")
    written = []
    x, y = data.test_x, data.test_y
    trained = {}  # models of one shape train (or load) together, in stacked passes
    for group in plan_passes(todo, 10**9):
        trained.update(zip(map(run_name, group), train_sweep(group, data, device=device, cache=cache,
                                                             progress=log is not None)))
    for c in todo:
        run = trained[run_name(c)]
        model = run.ema_model.eval()
        if log:
            log(f"{run_name(c)}: attacking {grid.n_images} images ({time.strftime('%H:%M')})")
        where = next(model.parameters()).device
        numbers = attack(model, x.to(where), y.to(where), grid, seed=c.seed)
        path = folder / f"{run_name(c)}.json"
        save_json(path, seal_record(c, numbers, grid, data, describe_device(where), fmt))
        written.append(path)
        if log:
            log(f"{run_name(c)}: wrote {path} after {numbers['seconds']:.0f} s")
    return written


def _done(path: Path, config: TrainConfig, grid, fingerprint: str, log=print, fmt: str = FORMAT) -> bool:
    """True when ``path`` holds a valid record of this model under this grid, made on these images; a record that
    is not says why it is remade (through ``log``)."""
    import json

    from .records import ResultsError

    if not path.exists():
        return False
    try:
        rec = load_record(path, fmt)
    except ResultsError as exc:
        why = str(exc)
    else:
        made_on = rec.get("data", {}).get("fingerprint") if isinstance(rec.get("data"), dict) else None
        why = ("it was made with another config" if rec["config"] != config.as_dict()
               else "it was made with another attack grid" if rec["grid"] != json.loads(json.dumps(asdict(grid)))
               else f"it was made on other data (fingerprint {str(made_on)[:12]}..., these images "
                    f"{fingerprint[:12]}...)" if made_on != fingerprint else None)
        if why is None:
            return True
    if log:
        log(f"remaking {path.name}: {why}")
    return False


# ---------------------------------------------------------------- reading the study: what the chapter tabulates

def stored_study(epochs: int, paper: bool = False, ceb: bool = False) -> dict[str, list[dict]]:
    """The committed study records of one protocol (:func:`load_study` on :func:`vibtools.results.results_dir`)."""
    from .results import results_dir

    return load_study(results_dir(), epochs, paper, ceb)


def ceb_study() -> dict[str, list[dict]]:
    """The committed 10-epoch records of the deterministic network, then VIB beside CEB at each β of the CEB models
    (VIB where chapter 7's study attacked it at that β): the groups the CEB pages compare."""
    base, ceb = stored_study(10), stored_study(10, ceb=True)
    study = {"deterministic": base["deterministic"]}
    for name, records in ceb.items():
        vib = name.replace("CEB", "VIB", 1)
        study |= ({vib: base[vib]} if vib in base else {}) | {name: records}
    return study


def per_seed(records: list[dict], *keys: str, index: int | None = None) -> list:
    """One number (or list) per seed: ``records[i][keys[0]][keys[1]]...`` (and element ``index`` of a list)."""
    out = []
    for r in records:
        v = r
        for k in keys:
            v = v[k]
        out.append(v if index is None else v[index])
    return out


def mean_curve(records: list[dict], *keys: str) -> tuple[list[float], list[float]]:
    """Mean and sd over seeds of an accuracy per radius (``mean_curve(recs, "pgd_linf", "strong")``)."""
    return _over_seeds(per_seed(records, *keys))


def _over_seeds(rows: list[list[float]]) -> tuple[list[float], list[float]]:
    """Mean and sd over seeds (rows: one list per seed, one number per radius) at each radius."""
    from .stats import mean_and_sd

    pairs = [mean_and_sd(col) for col in zip(*rows)]
    return [m for m, _ in pairs], [s for _, s in pairs]


def paired_change(a: list[float], b: list[float]):
    """The t-interval of the mean per-seed difference a - b (the same models under two attacks)."""
    from .stats import mean_interval

    return mean_interval([x - y for x, y in zip(a, b)])


def step_check_rows(groups: dict[str, list[dict]], norm: str = "linf") -> list[dict]:
    """Per group and radius of the step check in ``norm`` ("linf" or "l2"): the strong PGD's accuracy with its
    steps and with twice as many (means over seeds), the largest change of one model, and the interval of the mean
    change. Groups whose records hold no step check in that norm are left out (the L2 one came with commit
    173a2a2)."""
    key = "step_check" if norm == "linf" else "l2_step_check"
    rows = []
    for name, recs in groups.items():
        if any(key not in r for r in recs):
            continue
        check = recs[0][key]
        for i, eps in enumerate(check["eps"]):
            single, double = per_seed(recs, key, "strong", index=i), per_seed(recs, key, "double", index=i)
            change = paired_change(double, single)
            rows.append({"group": name, "eps": eps, "norm": norm, "steps": check["steps"],
                         "single": sum(single) / len(single), "double": sum(double) / len(double),
                         "largest": max(abs(d - s) for d, s in zip(double, single)), "change": change})
    return rows


def _by_seed(recs: list[dict], values: list) -> dict:
    return {r["config"]["seed"]: v for r, v in zip(recs, values)}


def _versus(groups: dict[str, list[dict]], baseline: str, values, paired: bool) -> dict[str, list]:
    """Each group but ``baseline`` against it at every radius: {group: [Comparison per radius]}, where
    ``values(recs)`` gives one list per record (one number per radius)."""
    from .stats import compare, mean_interval
    from .stats import paired as paired_by_seed

    base = _by_seed(groups[baseline], values(groups[baseline]))
    out = {}
    for name, recs in groups.items():
        if name == baseline:
            continue
        mine = _by_seed(recs, values(recs))
        radii = len(next(iter(base.values())))
        if paired:
            out[name] = [paired_by_seed({s: v[i] for s, v in mine.items()}, {s: v[i] for s, v in base.items()})
                         for i in range(radii)]
        else:
            out[name] = [compare(mean_interval([v[i] for v in mine.values()]),
                                 mean_interval([v[i] for v in base.values()])) for i in range(radii)]
    return out


SIGNS = {"<": "−", ">": "+", "≈": "≈"}


def versus(groups: dict[str, list[dict]], baseline: str, *keys: str, paired: bool = True) -> dict[str, list]:
    """Each group but ``baseline`` against it at every radius of one stored accuracy (``keys``, as in
    :func:`per_seed`): {group: [Comparison per radius]}, paired by seed or Welch's as in :func:`versus_worst`."""
    return _versus(groups, baseline, lambda recs: per_seed(recs, *keys), paired)


def verdicts_vs(groups: dict[str, list[dict]], baseline: str, *keys: str) -> dict[str, list[str]]:
    """For every group but ``baseline`` and every radius of one stored accuracy (``keys``, as in :func:`per_seed`):
    "+" / "−" where it is above / below the baseline's outside the noise, "≈" otherwise. The design is paired by
    seed (the models of one seed share their batch order and the attacked images): the 95% t-interval of the mean
    per-seed difference (:func:`vibtools.stats.paired`)."""
    return {name: [SIGNS[c.sign()] for c in row] for name, row in versus(groups, baseline, *keys).items()}


def fooled_within(records: list[dict], radii, form: str = "judged") -> tuple[list[float], list[float]]:
    """The fraction of *all* attacked images that the L2 optimization attack fooled within each L2 radius (an image
    misclassified clean counts as fooled at 0), mean and sd over seeds: comparable with 1 - PGD-L2 accuracy."""
    rows = []
    for r in records:
        n = r["data"]["images"]
        d = [math.inf if v is None else v for v in r["cw"][form]["distances"]]
        wrong = n - len(d)
        rows.append([(wrong + sum(v <= e for v in d)) / n for e in radii])
    return _over_seeds(rows)


# ---------------------------------------------------------------- the strongest attack per cell

ATTACK_NAMES = {  # short enough for a table cell; the chapter defines each
    "fgsm": "FGSM", "fgsm-eot": "FGSM-EOT", "pgd": "PGD-1", "pgd-strong": "PGD", "pgd-margin": "PGD-margin",
    "pgd-strong-2x": "PGD-2×", "apgd-ce": "APGD-CE", "apgd-dlr": "APGD-DLR", "noise": "noise",
    "cw-paper": "C&W-own", "cw-judged": "C&W-judged"}


def _masks(rec: dict, norm: str, i: int) -> dict[str, list[bool]]:
    """The stored masks of one record at radius index i of one norm: attack -> per-image correct."""
    n = rec["data"]["images"]
    return {name: unpack_mask(row[i], n) for name, row in rec["masks"][norm].items() if row[i] is not None}


def _radii(rec: dict, norm: str) -> list[float]:
    return rec["grid"]["eps_linf" if norm == "linf" else "eps_l2"]


def attack_accuracies(rec: dict, norm: str) -> dict[str, list[float | None]]:
    """Every attack's accuracy at each radius of the norm's grid in one record (None where it was not run).

    From the per-image masks where the record has them; a record written before masks were kept gives the
    accuracies it stored (the L2 optimization attack's from its distances: correct and not fooled within r).
    """
    radii = _radii(rec, norm)
    if "masks" in rec:
        n = rec["data"]["images"]
        return {name: [None if m is None else sum(unpack_mask(m, n)) / n for m in row]
                for name, row in rec["masks"][norm].items()}

    def at(values, eps_run):
        return [values[eps_run.index(e)] if e in eps_run else None for e in radii]

    out: dict[str, list[float | None]] = {}
    if norm == "linf":
        out["fgsm"], out["fgsm-eot"] = rec["fgsm"]["plain"], rec["fgsm"]["eot"]
        out["pgd"], out["pgd-strong"] = rec["pgd_linf"]["plain"], rec["pgd_linf"]["strong"]
        out["pgd-strong-2x"] = at(rec["step_check"]["double"], rec["step_check"]["eps"])
        out["noise"] = rec["noise"]
        if rec.get("apgd"):
            for loss in ("ce", "dlr"):
                out[f"apgd-{loss}"] = at(rec["apgd"][loss], rec["apgd"]["eps"])
    else:
        out["pgd-strong"] = rec["pgd_l2"]["strong"]
        n = rec["data"]["images"]
        for form in ("paper", "judged"):
            d = [math.inf if v is None else v for v in rec["cw"][form]["distances"]]
            out[f"cw-{form}"] = [sum(v > e for v in d) / n for e in radii]
    return out


def worst_case(records: list[dict], norm: str) -> list[list[float]]:
    """Per seed, per radius of the norm's grid: the accuracy left when every attack run at that radius is applied
    and an image counts as robust only if it survived them all (the per-image worst case). A record without
    per-image masks gives the lowest accuracy of any one attack instead (an upper bound on its worst case)."""
    out = []
    for rec in records:
        radii = range(len(_radii(rec, norm)))
        if "masks" in rec:
            n = rec["data"]["images"]
            out.append([sum(all(col) for col in zip(*_masks(rec, norm, i).values())) / n for i in radii])
        else:
            accs = attack_accuracies(rec, norm).values()  # once per record, not once per radius
            out.append([min(v[i] for v in accs if v[i] is not None) for i in radii])
    return out


def strongest_rows(groups: dict[str, list[dict]], norm: str) -> list[dict]:
    """Per group and radius: every attack's accuracy (mean over seeds), the attack that left the least (the
    winner), and the per-image worst case over all of them (mean and per seed).

    Returns:
        Rows {"group", "eps", "attacks": {name: mean accuracy}, "winner", "best": the winner's mean accuracy,
        "worst": mean of the worst case, "worst_per_seed": [...], "per_image": whether every record had masks}
        in the groups' order, radii in the grid's order.
    """
    rows = []
    for name, recs in groups.items():
        worst = worst_case(recs, norm)
        accs = [attack_accuracies(r, norm) for r in recs]
        for i, eps in enumerate(_radii(recs[0], norm)):
            names = [a for a in accs[0] if all(a in acc and acc[a][i] is not None for acc in accs)]
            means = {a: sum(acc[a][i] for acc in accs) / len(accs) for a in names}
            winner = min(means, key=means.get)
            col = [w[i] for w in worst]
            rows.append({"group": name, "eps": eps, "attacks": means, "winner": winner, "best": means[winner],
                         "worst": sum(col) / len(col), "worst_per_seed": col,
                         "per_image": all("masks" in r for r in recs)})
    return rows


def versus_worst(groups: dict[str, list[dict]], baseline: str, norm: str, paired: bool = True) -> dict[str, list]:
    """Each group against ``baseline`` at every radius on the per-image worst case: {group: [Comparison per
    radius]}; ``.sign()`` gives "<", ">" or "≈".

    Args:
        paired: True (the design: the models of one seed share their batch order and the attacked images) for the
            t-interval of the mean per-seed difference (:func:`vibtools.stats.paired`); False for Welch's interval
            of the difference of the two means, as if the seeds were independent (:func:`vibtools.stats.compare`).
    """
    return _versus(groups, baseline, lambda recs: worst_case(recs, norm), paired)


def worst_curve(records: list[dict], norm: str) -> tuple[list[float], list[float]]:
    """Mean and sd over seeds of the per-image worst case at each radius of the norm's grid (:func:`worst_case`)."""
    return _over_seeds(worst_case(records, norm))


def l2_checked(records: list[dict]) -> bool:
    """True when every record's L2 attacks include PGD on the margin loss (commit 173a2a2 on): the records before
    it took almost no PGD-L2 step where the cross-entropy had saturated, so their L2 accuracies are not the
    attacker's best and no L2 verdict rests on them."""
    return all("margin" in r.get("pgd_l2", {}) for r in records)
