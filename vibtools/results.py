"""The stored results the chapters read: where they are (the checkout, or a download of the repository's), the
records of an experiment, their grouping over seeds, each row's verdict against the paper, and training times."""

from __future__ import annotations

import collections
import hashlib
import math
import os
import shutil
import statistics
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from types import SimpleNamespace

from ._version import __version__
from .config import RESULTS_VERSION, TrainConfig
from .jsonio import StoredJSONError, read_json
from .paths import user_folder
from .records import ResultsError, h_y_bits, load_experiment, load_protocol_runs, summarize
from .report import PAPER_K2, PAPER_TABLE1, TABLE1_LABELS
from .stats import judge, judge_borrowed, mean_and_sd

ENV_RESULTS = "VIBTOOLS_RESULTS"


REPOSITORY = "https://github.com/vib-book/vib-book"  # the book's repository, as in _config.yml and the install cells


RESULTS_ARCHIVE = f"{REPOSITORY}/archive/refs/heads/main.tar.gz"
# what a download of the results may take: the repository's archive, one results file, all of them unpacked
MAX_ARCHIVE, MAX_FILE, MAX_UNPACKED = 512 << 20, 16 << 20, 256 << 20
MAX_FILES = 5_000  # files of results/ unpacked from an archive (the repository holds about 140)


def results_dir():
    """The results folder the chapters read.

    $VIBTOOLS_RESULTS if set; else ``results/`` of the repository checkout; else (a package installed with pip,
    as in Colab) the repository's committed ``results/``, downloaded once by :func:`fetch_results`.
    """
    if os.environ.get(ENV_RESULTS):
        return Path(os.environ[ENV_RESULTS]).expanduser()
    local = Path(__file__).resolve().parents[1] / "results"
    return local if local.is_dir() else fetch_results()


def results_cache_folder(url: str = RESULTS_ARCHIVE):
    """Where :func:`fetch_results` keeps a download: one folder per results version, vibtools version and URL, so a
    newer vibtools never serves results fetched for an older one ($VIBTOOLS_RESULTS_CACHE overrides)."""
    tag = hashlib.sha1(url.encode()).hexdigest()[:8]
    return user_folder("VIBTOOLS_RESULTS_CACHE", f"results-v{RESULTS_VERSION}-{__version__}-{tag}")


def fetch_results(url: str = RESULTS_ARCHIVE, dest=None):
    """Download the repository's committed ``results/`` once, into :func:`results_cache_folder`.

    Only ``results/**.json`` and ``.md`` files of the archive are written, under their relative paths; the
    folder appears complete or not at all (it is assembled beside its place and renamed).

    Args:
        url: a .tar.gz of the repository (GitHub's archive of the main branch by default).
        dest: where the results go (default: the user cache).
    Returns:
        The folder.
    Raises:
        ResultsError: the archive could not be read (one line saying what to do instead).
    """
    import urllib.request  # the network stack, loaded only to download

    dest = Path(dest) if dest is not None else results_cache_folder(url)
    if (dest / ".complete").is_file():
        return dest
    hint = f"set ${ENV_RESULTS} to a folder holding the results, or run python -m vibtools reproduce"
    try:
        with tempfile.TemporaryDirectory(prefix="vib-results-") as tmp:
            archive = Path(tmp) / "repo.tar.gz"
            with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as out:
                _copy_capped(response, out, MAX_ARCHIVE, f"{url} is larger than {MAX_ARCHIVE >> 20} MiB")
            staged, unpacked, files = Path(tmp) / "results", 0, 0
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar.getmembers():
                    parts = PurePosixPath(member.name).parts
                    inside = parts[2:] if len(parts) > 2 and parts[1] == "results" else ()
                    if (not member.isfile() or not inside or any(p in ("", ".", "..") for p in inside)
                            or PurePosixPath(*inside).suffix not in (".json", ".md")):
                        continue
                    files += 1
                    if files > MAX_FILES:
                        raise ResultsError(f"{url} holds more than {MAX_FILES} results files, more than a results "
                                           f"folder does: {hint}")
                    target = staged.joinpath(*inside)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    unpacked += member.size
                    if member.size > MAX_FILE or unpacked > MAX_UNPACKED:
                        raise ResultsError(f"{url} holds more results than a results folder does ({member.name}: "
                                           f"{member.size >> 20} MiB; at most {MAX_FILE >> 20} MiB a file, "
                                           f"{MAX_UNPACKED >> 20} MiB in all): {hint}")
                    with tar.extractfile(member) as src, open(target, "wb") as dst:
                        _copy_capped(src, dst, MAX_FILE, f"{member.name} is larger than its header says")
            if not staged.is_dir():
                raise ResultsError(f"{url} holds no results/ folder: {hint}")
            (staged / ".complete").write_text(url + "\n")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_dir() and not any(dest.iterdir()):
                dest.rmdir()
            elif os.path.lexists(dest):  # never delete what this function did not write
                raise ResultsError(f"{dest} exists and is not an empty folder: pass an empty or new folder")
            shutil.move(str(staged), str(dest))
    except (OSError, tarfile.TarError, ValueError, MemoryError, EOFError) as exc:
        if isinstance(exc, ResultsError):
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ResultsError(f"could not fetch the stored results from {url} ({first}): {hint}") from None
    return dest


def _copy_capped(src, dst, limit: int, too_large: str) -> None:
    """Copy a stream in chunks, stopping with ResultsError once more than ``limit`` bytes came."""
    copied = 0
    while chunk := src.read(2**20):
        copied += len(chunk)
        if copied > limit:
            raise ResultsError(too_large)
        dst.write(chunk)


def experiment_records(name: str, epochs: int | None = None) -> tuple[list[dict], str]:
    """An experiment's stored runs (the records ``python -m vibtools reproduce`` wrote), at every book setting.

    The chapters that read them train nothing: in the reduced settings of the notebook tests they read the same
    records, so the test runs the page's code on the numbers the page shows. (``reproduce`` itself is tested on
    small data by the unit tests.)

    Args:
        name: an experiment of ``python -m vibtools reproduce`` ("table1", "k2", "beta-sweep").
        epochs: the protocol to read, all of its runs stored. None takes the longest protocol stored complete, which
            changes when a longer one completes: a page whose text is about one protocol names it.
    Returns:
        (results records, a sentence saying where they come from).
    """
    folder = results_dir()
    return load_experiment(folder, name, epochs), f"stored results in {folder.name}/{name}"


def protocol_progress(name: str, epochs: int) -> tuple[list[dict], list[str]]:
    """How far a protocol being trained run by run has got: its stored runs and what each configuration lacks.

    Args:
        name: an experiment of ``python -m vibtools reproduce``.
        epochs: the protocol's epochs (200 for the paper's).
    Returns:
        (every stored run of the protocol, shown or not; one line per configuration with some but not all of its
        seeds stored, saying whether a chapter shows it (:func:`finished_records`), such as
        "dropout-k256: seed 0 stored, not shown until seeds 1, 2 are" or
        "vib-beta0.001-k256: shown with seeds 0, 1, 2; seeds 3, 4 not stored").
    """
    records, wanted, have = _protocol(name, epochs)

    def listed(seeds: set[int]) -> str:
        return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, sorted(seeds)))}"

    def line(key: str, seeds: set[int]) -> str:
        short, got, lacking = key.replace(f"-e{epochs}", ""), have[key], _required(seeds) - have[key]
        if not lacking:
            return f"{short}: shown with {listed(got)}; {listed(seeds - got)} not stored"
        return f"{short}: {listed(got)} stored, not shown until {listed(lacking)} {'are' if len(lacking) > 1 else 'is'}"

    return records, [line(key, seeds) for key, seeds in wanted.items() if key in have and have[key] < seeds]


def finished_records(name: str, epochs: int) -> list[dict]:
    """The stored runs of a protocol still being trained, kept only for configurations whose every seed is stored.

    For the 200-epoch protocol, trained run by run: a chapter can show each model as soon as its seeds have
    landed (:func:`_required`), and never a model with one of them missing. May be [].
    """
    records, wanted, have = _protocol(name, epochs)
    done = {key for key, seeds in wanted.items() if _required(seeds) <= have.get(key, set())}
    return [r for r in records if _config_key(r["run"]) in done]


def sweep_runs(epochs: int, seed: int = 0) -> tuple[list[dict], list[float]]:
    """The β sweep's runs of one seed under one protocol, one per β, and the β it still lacks.

    Where ``beta-sweep`` holds no record of a β whose configuration is also one of Table 1's (VIB at β = 1e-3),
    Table 1's record of that configuration is taken: the same config, trained once (the protocol's lanes do not
    train it twice). Each record is checked to be the sweep's config for its β and seed.

    Args:
        epochs: the protocol's epochs (10 or 200).
        seed: the training seed (the paper's protocol trains seed 0 of the whole sweep first).
    Returns:
        (the stored records sorted by β, the sweep's β with no record yet, in increasing order).
    """
    from .experiments import EXPERIMENTS, run_name

    wanted = {run_name(c): c for c in EXPERIMENTS["beta-sweep"].runs(epochs) if c.seed == seed}
    have = {r["run"]: r for r in load_protocol_runs(results_dir(), "beta-sweep", epochs) if r["run"] in wanted}
    table1 = {r["run"]: r for r in load_protocol_runs(results_dir(), "table1", epochs) if r["run"] in wanted}
    for name, record in table1.items():
        have.setdefault(name, record)
    for name, record in have.items():
        if TrainConfig.from_dict(record["config"]) != wanted[name]:
            raise ResultsError(f"{record['experiment']}/{name}.json: not the β sweep's config for its name; "
                               f"rerun python -m vibtools reproduce beta-sweep --epochs {epochs}")
    runs = sorted(have.values(), key=lambda r: r["config"]["beta"])
    return runs, sorted(c.beta for name, c in wanted.items() if name not in have)


def _required(seeds: set[int]) -> set[int]:
    """The seeds a configuration needs before a chapter shows it: the book's three (:data:`SEEDS`) where it is
    trained at them; further seeds (the power seeds 3 and 4 of Table 1's VIB and deterministic net) join the
    mean as they land. A configuration trained at other seeds only (K=2 at beta 0.5, seed 0) needs those."""
    from .experiments import SEEDS

    return (seeds & set(SEEDS)) or seeds


def _protocol(name: str, epochs: int) -> tuple[list[dict], dict[str, set[int]], dict[str, set[int]]]:
    """A protocol's stored runs, the seeds each configuration needs, and the seeds it has (by configuration)."""
    from .experiments import EXPERIMENTS, run_name

    wanted: dict[str, set[int]] = {}
    for c in EXPERIMENTS[name].runs(epochs):
        wanted.setdefault(_config_key(run_name(c)), set()).add(c.seed)
    records = load_protocol_runs(results_dir(), name, epochs)
    have: dict[str, set[int]] = {}
    for r in records:
        have.setdefault(_config_key(r["run"]), set()).add(r["config"]["seed"])
    return records, wanted, have


def _config_key(run: str) -> str:
    """A run's name without its seed: the key its seeds share."""
    return run.rsplit("-seed", 1)[0]


def seed_means(records: list[dict]) -> list:
    """One entry per configuration (runs differing only in seed): its config and seed-averaged final metrics.

    Each entry has ``config`` (of the first seed), ``final`` (every final metric averaged over seeds, so the
    plotting functions that take RunResults accept it), ``final_sd`` (their sd over seeds), ``runs`` and
    ``n_seeds``; entries are sorted by β.
    """
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(_config_key(r["run"]), []).append(r)
    out = []
    for runs in groups.values():
        final, final_sd = {}, {}
        for split, metrics in runs[0]["final"].items():
            stats = {k: mean_and_sd(r["final"][split][k] for r in runs) for k in metrics}
            final[split] = {k: m for k, (m, _) in stats.items()}
            final_sd[split] = {k: sd for k, (_, sd) in stats.items()}
        out.append(SimpleNamespace(config=TrainConfig.from_dict(runs[0]["config"]), final=final, final_sd=final_sd,
                                   runs=runs, n_seeds=len(runs)))
    return sorted(out, key=lambda e: e.config.beta)


def table1_rows(records: list[dict]) -> list[dict]:
    """One row per Table 1 model: ours (each seed, mean, sd over seeds, sd over noise draws, the half-width of the
    mean's 95% t-interval, the 95% prediction interval for one run), the paper's, and the verdicts of
    :func:`vibtools.stats.judge` (see :func:`_judged`)."""
    by_model: dict[str, list[dict]] = {}
    for r in records:
        by_model.setdefault(r["model"], []).append(r)
    return [{"model": name, "label": TABLE1_LABELS[name], **_judged(by_model[name], "avg_err", PAPER_TABLE1[name])}
            for name in PAPER_TABLE1 if name in by_model]


def _judged(runs: list[dict], key: str, paper: float) -> dict:
    """The fields every verdict row shares: each seed's number, the 95% t-interval of their mean, the 95%
    prediction interval for one run, and the verdicts of :func:`vibtools.stats.judge`.

    The paper's numbers are single runs, so ``reproduced`` answers "is the paper's run consistent with one run of
    ours?" (inside the prediction interval); ``average`` answers "does it match our average?" (inside the
    t-interval of the mean). Both are True, False or None (undecided).
    """
    s = summarize(runs, key)
    per_seed = {r["config"].get("seed", i): statistics.mean(r["eval_noise"][key]) for i, r in enumerate(runs)}
    j = judge(per_seed.values(), paper, single_run=True)
    return {**s, "sd": s["sd_seeds"], "half": j.mean.half, "pred_half": j.prediction.half,
            "per_seed": dict(sorted(per_seed.items())), "paper": paper, "epochs": runs[0]["protocol"]["epochs"],
            "reproduced": j.verdict, "average": j.average}


def k2_rows(records: list[dict]) -> list[dict]:
    """One row per β of the paper's K=2 figures: ours (1- and 12-sample error, mean and sd over seeds) and the paper's.

    Args:
        records: results records of the ``k2`` experiment.
    """
    rows = []
    for beta, (p1, p12) in PAPER_K2.items():
        runs = [r for r in records if abs(r["config"]["beta"] - beta) <= 1e-12 * max(beta, 1.0)]
        if not runs:
            continue
        one, avg = summarize(runs, "err"), summarize(runs, "avg_err")
        rows.append({"beta": beta, "paper_err": p1, "paper_avg_err": p12, "err": one, "avg_err": avg,
                     **_judged(runs, "avg_err", p12)})
    return rows


def borrowed_rows(records: list[dict], lender: float) -> list[dict]:
    """The K=2 runs of one seed at β other than the paper's, each judged against the paper's run at ``lender``.

    One run has no seed spread of its own, so each borrows the sample sd over the seeds of the ``lender`` β
    (:func:`vibtools.stats.judge_borrowed`): an assumption that the page must state. For the β-hypotheses of the
    β = 1 gap, where the paper's β = 1 may have meant a smaller β in our units.

    Args:
        records: results records of the ``k2`` experiment, at one protocol.
        lender: the paper's β whose published run is the target and whose seeds lend their spread.
    Returns:
        One dict per other β with exactly one run (sorted by β): ``beta``, ``seed``, ``rate`` (the I(Z;X) bound,
        bits), ``lender_n``, and per ``"err"`` (1 sample) and ``"avg_err"`` (12 samples) a row that
        :func:`vibtools.report.verdict_text` and :func:`vibtools.report.prediction_range` read.
    """
    def of(beta: float) -> list[dict]:
        return [r for r in records if abs(r["config"]["beta"] - beta) <= 1e-12 * max(beta, 1.0)]

    lenders = of(lender)
    if len(lenders) < 2:
        raise ResultsError(f"a borrowed spread needs at least 2 seeds at beta={lender:g}, found {len(lenders)}")
    paper = dict(zip(("err", "avg_err"), PAPER_K2[lender]))
    rows = []
    for beta in sorted({r["config"]["beta"] for r in records} - set(PAPER_K2)):
        runs = of(beta)
        if len(runs) != 1:
            continue
        row = {"beta": beta, "seed": runs[0]["config"].get("seed", 0), "rate": runs[0]["final"]["ema_test"]["izx"],
               "lender_n": len(lenders)}
        for key in ("err", "avg_err"):
            value = statistics.mean(runs[0]["eval_noise"][key])
            _, sd = mean_and_sd(statistics.mean(r["eval_noise"][key]) for r in lenders)
            j = judge_borrowed(value, paper[key], sd, len(lenders))
            row[key] = {"mean": value, "sd": sd, "half": math.nan, "pred_half": j.prediction.half,
                        "paper": paper[key], "epochs": runs[0]["protocol"]["epochs"], "reproduced": j.one_run,
                        "average": None}
        rows.append(row)
    return rows


OBJECTIVE_FOLDER = "objective-draws"  # beside an experiment's records: scripts/objective_draws.py's output


def load_objective_draws(path) -> dict:
    """Read one file of ``scripts/objective_draws.py`` and check what :func:`objective` needs; ResultsError (one
    line) on anything else."""
    def finite(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0

    try:
        stored = read_json(path)
        ok = (isinstance(stored, dict) and isinstance(stored.get("run"), str) and finite(stored["rate_bits"])
              and isinstance(stored["class_bits"], list) and len(stored["class_bits"]) >= 2
              and all(finite(c) for c in stored["class_bits"])
              and isinstance(stored["data"], dict) and isinstance(stored["data"].get("fingerprint"), str)
              and len(stored["data"]["fingerprint"]) == 16)
    except (StoredJSONError, TypeError, KeyError):
        ok = False
    if not ok:
        raise ResultsError(f"{path} is not a file of scripts/objective_draws.py; rerun that script on its record")
    return stored


def objective(record: dict) -> dict:
    """The objective J = class loss + β·info loss (bits, on the test set) of a stored run at its own β.

    A record holds the class loss of one draw of z per test image, so the one-draw J carries Monte Carlo noise
    (about 0.005 bit at K=2, β = 1), as large as J − H(Y) near the collapsed optimum. Where
    ``scripts/objective_draws.py`` stored the class loss over many draws (``<experiment>/objective-draws/``
    beside the records), their mean and the spread of one draw come with it.

    Args:
        record: a results record with a final evaluation.
    Returns:
        A dict with ``one_draw`` (J from the record), ``mean`` (J over the stored draws, or None), ``sd_one_draw``
        (the sample sd of J over those draws, or None) and ``draws`` (their number, 0 if none are stored).
    Raises:
        ResultsError: the stored draws are damaged, or belong to another run or another training of it (their
            exact rate differs from the record's).
    """
    m, beta = record["final"]["ema_test"], record["config"]["beta"]
    # the record's I(Z;Y) bound is H(Y) minus the class loss in bits; CEB's rate term is the residual bound
    # on I(X;Z|Y), not the I(Z;X) estimate its records also store
    rate = m["residual_bits"] if record["config"].get("bottleneck", "vib") == "ceb" else m["izx"]
    out = {"one_draw": (h_y_bits(record) - m["izy"]) + beta * rate, "mean": None, "sd_one_draw": None, "draws": 0}
    path = results_dir() / record["experiment"] / OBJECTIVE_FOLDER / f"{record['run']}.json"
    if path.is_file():
        stored = load_objective_draws(path)
        if (stored["run"] != record["run"] or not math.isclose(stored["rate_bits"], rate, rel_tol=1e-5)
                or stored["data"] != record.get("data", stored["data"])):
            raise ResultsError(f"{path}: not the many-draw objective of {record['run']} as stored; rerun "
                               f"scripts/objective_draws.py on that record")
        j = [c + beta * stored["rate_bits"] for c in stored["class_bits"]]
        out.update(mean=statistics.fmean(j), sd_one_draw=statistics.stdev(j), draws=len(j))
    return out


def mi_summary(group) -> dict:
    """The stored I(Z;X) readings of one seed group on the test set, each as (mean, sd over seeds), in bits.

    Per run, each bound is first averaged over its draws of the codes. The quantity bounded is I(Z;X) for X
    drawn uniformly from the N test images, which no encoder can take above log2 N. ``lower`` is Poole et al.'s
    minibatch bound (capped at log2 N by its construction, whatever the encoder); ``upper`` the leave-one-out
    bound; ``bound`` the info loss (the variational bound, itself an upper bound on the same I(Z;X)). The slack
    KL(p(z) || r(z)) = info loss - I(Z;X) is then known only as an interval: ``slack_min`` = info loss - the
    smaller of the two upper bounds (0 where the leave-one-out bound is the looser), ``slack_max`` = info loss -
    lower.

    Args:
        group: an entry of :func:`seed_means` whose runs hold ``mi_bounds``.
    Returns:
        A dict with those six keys, plus ``ceiling`` (log2 N) and ``n`` (N).
    """
    runs = group.runs
    if any("mi_bounds" not in r for r in runs):
        raise ValueError(f"{runs[0]['run']}: the stored runs hold no I(Z;X) bounds (deterministic encoder, or "
                         f"results written before they were recorded: rerun python -m vibtools reproduce)")
    lower = [mean_and_sd(r["mi_bounds"]["lower"])[0] for r in runs]
    upper = [mean_and_sd(r["mi_bounds"]["upper"])[0] for r in runs]
    bound = [r["final"]["ema_test"]["izx"] for r in runs]
    return {"lower": mean_and_sd(lower), "upper": mean_and_sd(upper), "bound": mean_and_sd(bound),
            "slack_min": mean_and_sd(b - min(b, up) for b, up in zip(bound, upper)),
            "slack_max": mean_and_sd(b - lo for b, lo in zip(bound, lower)),
            "ceiling": runs[0]["mi_bounds"]["ceiling"], "n": runs[0]["mi_bounds"]["n"]}


def pass_of(run) -> tuple[str, int | None]:
    """The stacked training pass a run (a RunResult or a results record) was trained in: (its id, its models).

    Runs record their pass (``RunResult.timing["pass"]``, a record's ``pass``). Runs stored before they did are
    told apart by their epoch times, which the models of one pass share; their number of models is then unknown.
    """
    known = run.get("pass") if isinstance(run, dict) else run.timing.get("pass")
    if known:
        return known["id"], known["models"]
    history = run["history"] if isinstance(run, dict) else run.history
    return "epoch-times:" + ",".join(map(repr, history.get("seconds", []))), None


def training_seconds(results) -> float:
    """Total training wall time recorded in the histories of some runs (what the provenance line reports),
    counting each stacked pass once."""
    results = results if isinstance(results, (list, tuple)) else [results]
    return sum({pass_of(r)[0]: sum(r.history.get("seconds", [])) for r in results}.values())


def stored_training_seconds(records: list[dict]) -> float:
    """Total training time of stored runs (results records), counting each stacked pass once."""
    return sum({pass_of(r)[0]: r["seconds"]["training"] for r in records}.values())


def cold_training_seconds(results, records=()) -> float:
    """About how long training the cached runs among ``results`` again would take, from their recorded times.

    A run trained in a stacked pass shares its recorded epoch times with every model of that pass and is charged
    its share (the pass's time divided by its models). For a run stored before runs recorded their pass, the
    models are counted among ``records`` (stored results) where the pass's runs are there, else the pass's full
    time is charged once.

    Args:
        results: RunResults a page used; those with ``from_cache`` are counted.
        records: results records (``reproduce``) that may hold the other runs of the same passes.
    Returns:
        Seconds, on the device the runs were trained on.
    """
    in_records = collections.Counter(pass_of(r)[0] for r in records)
    shares, whole = 0.0, {}
    for r in (results if isinstance(results, (list, tuple)) else [results]):
        if not r.from_cache:
            continue
        key, models = pass_of(r)
        seconds = sum(r.history.get("seconds", []))
        if models or in_records[key]:
            shares += seconds / (models or in_records[key])
        else:
            whole[key] = seconds
    return shares + sum(whole.values())
