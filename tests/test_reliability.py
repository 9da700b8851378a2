"""Failure paths: every failure ends in one true line, loses nothing, and touches nothing it did not create.

The cases a reliability probe broke (bad names, write failures after the checks, interrupts, files the package did
not create, results that could lie, the results download), each run the way a user meets it: the command line in
a child process on a small fake MNIST, or the API."""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, fake_mnist, write_idx

import vibtools as vt
from vibtools import data as vdata
from vibtools.reproduce import ResultsError, load_results, reproduce, sealed
from vibtools.store import remove_stale_tmp, run_key

TINY_K = ["--k", "4", "--epochs", "1", "--no-progress"]


def child(args: list[str], cwd: Path, preexec=None, timeout: float = 180, **env) -> subprocess.CompletedProcess:
    """``python -m vibtools ARGS`` in ``cwd`` on the fake MNIST in ``cwd/data``, the run cache in ``cwd/cache``."""
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "VIBTOOLS_CACHE": str(cwd / "cache"),
               "VIBTOOLS_DATA": str(cwd / "data"), "PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, "-m", "vibtools", *args], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=preexec)


def one_line(p: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """The child's stderr, checked: exit status ``code``, exactly one line, holding each of ``words``."""
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == code and len(lines) == 1, (p.returncode, p.stderr[-2000:])
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def listing(folder: Path) -> list[str]:
    """Every path under ``folder``, links included and not followed."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def home(tmp_path) -> Path:
    """A working folder with a fake MNIST (200 training, 100 test images) in ``data/``."""
    fake_mnist(tmp_path / "data")
    return tmp_path


def _file_size_limit(limit: int):
    """A child's preexec: files larger than ``limit`` bytes cannot be written (EFBIG, as on a full disk)."""

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


# ----------------------------------------------------------------------------- names no folder can be
@pytest.mark.parametrize("args, words", [
    (["train", "--out", ""], "--out is empty"),
    (["reproduce", "k2", "--results", ""], "--results is empty"),
    (["reproduce", "k2", "--cache", ""], "--cache is empty"),
    (["train", "--device", ""], "unknown device ''"),
    (["reproduce", "--list", "--epochs", "1" + "0" * 39], "epochs must be an integer from 1 to 100000"),
    (["train", "--data", "~nosuchuser-vib/data"], "names no user's home folder"),
    (["train", "--out", "a" * 300], "longer than 255 bytes"),
    (["reproduce", "k2", "--results", "dangling"], "broken symbolic link"),
    (["train", "--out", "loop1"], "broken symbolic link"),
], ids=["out-empty", "results-empty", "cache-empty", "device-empty", "epochs-40-digits", "tilde-user",
        "out-too-long", "results-dangling", "out-loop"])
def test_names_no_folder_can_be_are_refused_in_one_line_creating_nothing(home, args, words):
    (home / "dangling").symlink_to(home / "nowhere")
    (home / "loop1").symlink_to(home / "loop2")
    (home / "loop2").symlink_to(home / "loop1")
    before = listing(home)
    one_line(child([*args, *(["--no-progress"] if args[0] == "train" else [])], home), 2, words)
    assert listing(home) == before


def test_a_newline_in_a_name_stays_on_one_line(capsys):
    from vibtools.cli import _fail

    assert _fail("folder 'a\nb' is missing") == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_folder_on_the_way_that_cannot_be_searched_is_one_line(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root searches every folder")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o000)
    try:
        with pytest.raises(ValueError, match="cannot be reached"):
            vt.train(vt.TrainConfig(k=2, hidden=8, epochs=1), None, cache=locked / "runs")
    finally:
        locked.chmod(0o755)


# ----------------------------------------------------------------------------- data files
def test_idx_files_holding_no_images_are_named_in_one_line(tmp_path):
    root = fake_mnist(tmp_path)
    write_idx(root / "MNIST" / "raw" / "t10k-images-idx3-ubyte", torch.zeros(0, 28, 28, dtype=torch.uint8))
    with pytest.raises(vt.MNISTFileError, match="holds no images") as info:
        vt.load_mnist(root, download=False)
    assert "\n" not in str(info.value)


def test_a_failed_download_keeps_links_it_did_not_create(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").symlink_to(tmp_path / "gone")  # dangling: counts as missing
    (raw / "train-labels-idx1-ubyte").symlink_to("t10k-labels-idx1-ubyte")
    (raw / "t10k-labels-idx1-ubyte").symlink_to("train-labels-idx1-ubyte")  # a loop
    before = listing(tmp_path)

    def fails(root, dataset="MNIST"):
        """A download that writes one file, then fails (the network boundary)."""
        (Path(root) / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").write_bytes(b"partial")
        raise OSError("network down")

    monkeypatch.setattr(vdata, "_download", fails)
    monkeypatch.setattr(vdata, "_CACHE", {})
    with pytest.raises(vt.DataNotFoundError, match="download failed"):
        vt.load_mnist(tmp_path)
    assert listing(tmp_path) == before and (raw / "train-images-idx3-ubyte").is_symlink()


# ----------------------------------------------------------------------------- files it did not create
def test_a_fifo_in_place_of_a_run_file_is_reported_not_read(home):
    config = vt.TrainConfig(k=4, epochs=1)
    fingerprint = vt.load_mnist(home / "data", download=False).fingerprint()
    (home / "out").mkdir()
    os.mkfifo(home / "out" / f"{run_key(config, fingerprint)}.pt")
    p = child(["train", *TINY_K, "--out", "out"], home, timeout=300)
    assert p.returncode == 0 and "is not a regular file" in p.stderr, p.stderr[-1500:]


def test_only_temporary_files_of_writers_that_have_ended_are_removed(tmp_path):
    target = tmp_path / "run.json"
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    dead = tmp_path / f".run.json.{ended.pid}.abc.tmp"
    live = tmp_path / f".run.json.{os.getpid()}.def.tmp"
    old = tmp_path / ".run.json.xyz123.tmp"  # named by an older vibtools, without a pid
    for p in (dead, live, old):
        p.write_text("x")
    assert sorted(remove_stale_tmp(target)) == sorted([dead, old])
    assert live.exists()


def test_reproduce_clears_temporary_files_a_killed_write_left_in_results(small, tmp_path):
    folder = tmp_path / "results" / "k2"
    folder.mkdir(parents=True)
    stale = folder / ".vib-beta1-k2-e1-seed0.json.999999999.abc.tmp"
    stale.write_text("{")
    reproduce(["k2"], small.subset(200, 100), epochs=1, device="cpu", results_dir=tmp_path / "results",
              cache=tmp_path / "cache", progress=False, overrides={"hidden": 16}, only=["vib-beta1-*seed0"])
    assert not stale.exists() and (folder / "vib-beta1-k2-e1-seed0.json").is_file()


# ----------------------------------------------------------------------------- write failures after the checks
def test_a_full_disk_while_training_is_one_line_and_keeps_what_was_saved(home):
    one_line(child(["train", *TINY_K, "--out", "out"], home, preexec=_file_size_limit(2**20)), 1,
             "could not write", "File too large", "rerun the same command")
    assert not [p for p in (home / "out").iterdir() if p.suffix == ".tmp"]


def test_a_full_disk_while_reproducing_is_one_line(home):
    one_line(child(["reproduce", "k2", "--epochs", "1", "--only", "vib-beta1-*seed0", "--no-progress"], home,
                   preexec=_file_size_limit(2**20)), 1, "could not write", "File too large")


def test_running_out_of_memory_under_a_limit_the_check_cannot_see_is_one_line(home):
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (5 * 2**30, 5 * 2**30))

    one_line(child(["train", "--k", "20000", "--epochs", "1", "--no-progress", "--out", "out"], home, preexec=cap),
             1, "ran out of memory")


def test_a_finished_run_in_a_folder_that_cannot_be_written_is_served(home):
    """A read-only --out holding the finished run: its lines and exit 0, not "rerun to resume". Root writes
    through permissions, so there no write may add a byte instead (a file-size limit of 0)."""
    assert child(["train", *TINY_K, "--out", "out"], home).returncode == 0
    out = home / "out"
    files = sorted(out.iterdir())
    for p in [*files, out]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        p = child(["train", *TINY_K, "--out", "out"], home,
                  preexec=_file_size_limit(0) if os.geteuid() == 0 else None)
    finally:
        out.chmod(0o755)
    assert p.returncode == 0 and "EMA:" in p.stdout, p.stderr[-1500:]
    assert sorted(out.iterdir()) == files or os.geteuid() == 0  # root may leave its lock files


# ----------------------------------------------------------------------------- interrupts
CONSOLE_SCRIPT = Path(sys.executable).parent / "vibtools"  # installed by `pip install -e .`


@pytest.mark.parametrize("entry", ["python -m vibtools", "vibtools"])
def test_ctrl_c_while_starting_up_prints_no_traceback(home, entry):
    """The console script starts as ``python -m vibtools`` does: an interrupt during the imports is one line under
    its own name (it printed a 21-line traceback: it skipped the start-up handling)."""
    if entry == "vibtools" and not CONSOLE_SCRIPT.is_file():
        pytest.skip(f"no console script at {CONSOLE_SCRIPT}: install the package (pip install -e .)")
    command = [sys.executable, "-m", "vibtools"] if entry != "vibtools" else [str(CONSOLE_SCRIPT)]
    environ = {**os.environ, "VIBTOOLS_DATA": str(home / "data"), "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([*command, "train", *TINY_K, "--out", "out"], cwd=home,
                         env=environ, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a terminal
    time.sleep(1.0)  # inside the imports
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 130 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-1500:]
    assert err.startswith(f"{entry}: error: interrupted"), err


def test_the_console_script_names_itself_in_its_usage_line():
    if not CONSOLE_SCRIPT.is_file():
        pytest.skip(f"no console script at {CONSOLE_SCRIPT}: install the package (pip install -e .)")
    p = subprocess.run([str(CONSOLE_SCRIPT), "train", "--k", "0"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith("vibtools train: error: argument --k"), p.stderr
    usage = subprocess.run([str(CONSOLE_SCRIPT), "--help"], capture_output=True, text=True, timeout=120).stdout
    assert usage.startswith("usage: vibtools ") and "python -m" not in usage.split("\n")[0], usage[:200]


@pytest.mark.parametrize("gap", [0.0, 0.05])
def test_three_quick_ctrl_cs_during_training_are_one_line(home, gap):
    """The later Ctrl-Cs land while the first unwinds or in Python's shutdown (atexit callbacks): still one line,
    exit 130, and the saved epoch kept. (Which epochs are saved is named unless the second lands before the
    training loop has said so.)"""
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "VIBTOOLS_CACHE": str(home / "cache"),
               "VIBTOOLS_DATA": str(home / "data"), "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "-m", "vibtools", "train", "--k", "4", "--epochs", "50", "--no-progress",
                          "--out", "out"], cwd=home, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert p.stdout.readline().startswith("0:")  # the first epoch is trained and saved
    for _ in range(3):
        p.send_signal(signal.SIGINT)
        time.sleep(gap)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 130 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-1500:]
    assert "rerun the same command to resume" in err and list((home / "out").glob("*.pt"))


# ----------------------------------------------------------------------------- two processes, one run
def test_two_processes_training_the_same_run_both_succeed(home):
    for _ in range(2):
        shutil.rmtree(home / "out", ignore_errors=True)
        environ = {**os.environ, "OMP_NUM_THREADS": "1", "VIBTOOLS_DATA": str(home / "data"),
                   "PYTHONPATH": str(REPO)}
        procs = [subprocess.Popen([sys.executable, "-m", "vibtools", "train", *TINY_K, "--out", "out"], cwd=home,
                                  env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
        assert [code for code, _ in results] == [0, 0], results
        assert not [p for p in (home / "out").iterdir() if p.suffix == ".tmp"]


# ----------------------------------------------------------------------------- results that cannot lie
@pytest.fixture
def record_file(small, tmp_path) -> Path:
    """One real results file (K=2, β=1, 1 epoch, hidden 16)."""
    written = reproduce(["k2"], small.subset(200, 100), epochs=1, device="cpu", results_dir=tmp_path / "results",
                        cache=tmp_path / "cache", progress=False, overrides={"hidden": 16},
                        only=["vib-beta1-*seed0"])
    return written[0]


@pytest.mark.parametrize("edit, words", [
    (lambda r: {**r, "final": {**r["final"], "ema_test": {**r["final"]["ema_test"], "avg_err": 0.0}}},
     "does not match its checksum"),
    (lambda r: sealed({**r, "final": [1, 2]}), "holds a list as 'final'"),
    (lambda r: sealed({**r, "config": [1]}), "holds a list as 'config'"),
    (lambda r: sealed({k: v for k, v in r.items() if k != "data"}), "lacks 'data'"),
    (lambda r: {k: v for k, v in r.items() if k != "checksum"}, "lacks 'checksum'"),
], ids=["hand-edited-error", "final-a-list", "config-a-list", "no-data", "no-checksum"])
def test_a_results_file_that_could_lie_is_refused_in_one_line(record_file, edit, words):
    record = json.loads(record_file.read_text())
    record_file.write_text(json.dumps(edit(record)))
    with pytest.raises(ResultsError, match=words) as info:
        load_results(record_file)
    assert "\n" not in str(info.value)


def test_another_runs_file_under_this_name_and_a_folder_in_place_of_a_file_are_refused(record_file):
    other = record_file.with_name("vib-beta0.1-k2-e1-seed0.json")
    shutil.copy(record_file, other)
    with pytest.raises(ResultsError, match="holds the run 'vib-beta1-k2-e1-seed0'"):
        load_results(other)
    folder = record_file.with_name("vib-beta0.01-k2-e1-seed0.json")
    folder.mkdir()
    with pytest.raises(ResultsError, match="not a readable results file"):
        load_results(folder)


def test_reproduce_remakes_a_hand_edited_record_with_one_warning(record_file, small):
    record = json.loads(record_file.read_text())
    record["final"]["ema_test"]["avg_err"] = 0.0
    record_file.write_text(json.dumps(record))
    root = record_file.parents[1]
    with pytest.warns(UserWarning, match="remaking vib-beta1-k2-e1-seed0.json: .* checksum"):
        written = reproduce(["k2"], small.subset(200, 100), epochs=1, device="cpu", results_dir=root,
                            cache=root.parent / "cache", progress=False, overrides={"hidden": 16},
                            only=["vib-beta1-*seed0"])
    assert written == [record_file] and load_results(record_file)["final"]["ema_test"]["avg_err"] > 0


def test_the_committed_records_carry_their_data_and_checksum():
    from vibtools.experiments import EXPERIMENTS

    # MNIST's sizes, and those of its digits 0-4 (the held-out-class experiment trains and tests on them)
    sizes = {None: (60_000, 10_000), (0, 1, 2, 3, 4): (30_596, 5_139)}
    import vibtools.results as vt_results
    from vibtools import paper_attack
    from vibtools.robustness import FOLDER, FORMAT, load_record

    records = sorted((REPO / "results").rglob("*.json"))
    assert records
    for path in records:
        if path.parent.name in (FOLDER, paper_attack.FOLDER):  # the attack studies: their own formats and readers
            study = load_record(path, FORMAT if path.parent.name == FOLDER else paper_attack.FORMAT)
            assert len(study["data"]["fingerprint"]) == 16 and study["data"]["images"] > 0, path
            continue
        if path.parent.name == "explorer":  # the explorer's stored embeddings: checked by their reader
            from vibtools.explorer import load_explorer_data

            frames = load_explorer_data(path)["frames"]
            assert all(0 <= f["izy"] <= math.log2(10) + 1e-6 for f in frames), path
            continue
        if path.parent.name == vt_results.OBJECTIVE_FOLDER:  # many-draw objectives: checked by their reader
            assert vt_results.load_objective_draws(path)["run"] == path.stem, path
            continue
        record = load_results(path)
        experiment = EXPERIMENTS[record["experiment"]]
        classes = experiment.classes
        assert record["data"].get("classes") == (list(classes) if classes else None), path
        n_train, n_test = sizes[classes]  # a random-label experiment trains on the first images only
        assert (record["data"]["n_train"], record["data"]["n_test"]) == (experiment.train_subset or n_train,
                                                                          n_test), path
        # I(Z;Y) >= H(Y) - class loss can never exceed H(Y), of the classes the record was tested on
        h_y = math.log2(len(classes) if classes else 10)
        bounds = [m["izy"] for m in record["final"].values()] + [v for k, vals in record["history"].items()
                                                                 if k.endswith("izy") for v in vals]
        assert max(bounds) <= h_y + 1e-9, (path, max(bounds), h_y)


def _resealed(edit):
    """An edit of a record made to look genuine: the checksum recomputed after it."""
    return lambda r: sealed(edit({k: v for k, v in r.items() if k != "checksum"}))


def _final(key, value):
    return _resealed(lambda r: {**r, "final": {**r["final"], "ema_test": {**r["final"]["ema_test"], key: value}}})


@pytest.mark.parametrize("edit, words", [
    (_final("avg_err", -0.01), "cannot be true .*avg_err"),
    (_final("avg_err", 1.5), "cannot be true .*avg_err"),
    (_final("izx", -1.0), "cannot be true .*izx"),
    (_final("izy", 3.4), "cannot be true .*izy"),  # above H(Y) = log2 10
    (_final("err", float("nan")), "bare NaN"),  # json writes it bare, which strict JSON refuses
    (_final("err", "0.1"), "cannot be true .*'0.1'"),
    (_resealed(lambda r: {**r, "history": {**r["history"], "test_err": 0.5}}), "is a float, not a list"),
    (_resealed(lambda r: {**r, "eval_noise": {**r["eval_noise"], "avg_err": ["a", "b"]}}), "cannot be true"),
    (_resealed(lambda r: {**r, "eval_noise": {**r["eval_noise"], "draws": 7}}), "7 draws said"),
    (_resealed(lambda r: {**r, "data": {**r["data"], "classes": [0, 1, 2, 3, 4]}}), "made on the classes"),
    (_resealed(lambda r: {**r, "h_y_bits": 2.5}), "h_y_bits = 2.5 for 10 classes"),
    (_resealed(lambda r: {**r, "h_y_bits": "3.32"}), "h_y_bits = nan"),
    (_resealed(lambda r: {**r, "data": {}}), "names no data fingerprint"),  # was served, even on other data
    (_resealed(lambda r: {**r, "data": {**r["data"], "fingerprint": 7}}), "names no data fingerprint"),
], ids=["negative-error", "error-above-1", "negative-rate", "izy-above-h-y", "nan", "string", "history-a-number",
        "draws-strings", "draw-count", "other-classes", "h-y-of-other-classes", "h-y-a-string", "data-empty",
        "fingerprint-a-number"])
def test_a_resealed_record_whose_numbers_cannot_be_true_is_refused_in_one_line(record_file, edit, words):
    record_file.write_text(json.dumps(edit(json.loads(record_file.read_text()))))
    with pytest.raises(ResultsError, match=words) as info:
        load_results(record_file)
    assert "\n" not in str(info.value)


def test_a_record_in_another_experiments_folder_is_refused_in_one_line(record_file):
    misplaced = record_file.parents[1] / "uncertainty" / record_file.name
    misplaced.parent.mkdir()
    shutil.copy(record_file, misplaced)
    with pytest.raises(ResultsError, match="a record of the experiment 'k2', not of the folder 'uncertainty'"):
        load_results(misplaced)


def test_a_held_out_digit_record_without_its_h_y_is_refused_until_migrated(tmp_path):
    source = REPO / "results" / "held-out-digits" / "vib-beta0.001-k256-e10-seed0.json"
    record = json.loads(source.read_text())
    h_y = record.pop("h_y_bits")
    old = {**record, "final": {s: {**m, "izy": m["izy"] + math.log2(10) - h_y} for s, m in record["final"].items()},
           "history": {k: [v + math.log2(10) - h_y for v in vals] if k.endswith("izy") else vals
                       for k, vals in record["history"].items()}}
    path = tmp_path / "held-out-digits" / source.name
    path.parent.mkdir()
    path.write_text(json.dumps(sealed({k: v for k, v in old.items() if k != "checksum"})))
    with pytest.raises(ResultsError, match="H\\(Y\\) of its 5 classes: run python scripts/migrate_results.py"):
        load_results(path)
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from migrate_results import h_y_migrated
    finally:
        sys.path.pop(0)
    path.write_text(json.dumps(sealed(h_y_migrated(old))))
    again = load_results(path)
    stored = json.loads(source.read_text())["final"]
    assert again["h_y_bits"] == h_y and all(again["final"][s]["izy"] == pytest.approx(m["izy"], abs=1e-12)
                                            for s, m in stored.items())


# ----------------------------------------------------------------------------- the results download
def _results_archive(tmp_path: Path, files: dict[str, bytes]) -> Path:
    """A .tar.gz shaped like GitHub's archive of the repository, holding ``files`` under results/."""
    big = io.BytesIO()
    with tarfile.open(fileobj=big, mode="w:gz") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(f"vib-book-main/results/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    archive = tmp_path / "repo.tar.gz"
    archive.write_bytes(big.getvalue())
    return archive


def _refused_writing_nothing(archive: Path, dest: Path, words: str) -> None:
    with pytest.raises(ResultsError, match=words) as info:
        vt.results.fetch_results(archive.as_uri(), dest)
    assert "\n" not in str(info.value) and not dest.exists()


def test_the_results_download_refuses_an_archive_that_unpacks_too_large(tmp_path):
    archive = _results_archive(tmp_path, {"table1/a.json": b"{" + b" " * (17 * 2**20) + b"}"})
    _refused_writing_nothing(archive, tmp_path / "fetched", "more results than a results folder does")
    assert len(gzip.decompress(archive.read_bytes())) > 16 * 2**20  # the cap, not the archive, stopped it


def test_the_results_download_refuses_an_archive_of_too_many_files_writing_none(tmp_path, monkeypatch):
    monkeypatch.setattr(vt.results, "MAX_FILES", 50)
    archive = _results_archive(tmp_path, {f"table1/r{i}.json": b"{}" for i in range(51)})
    _refused_writing_nothing(archive, tmp_path / "fetched", "more than 50 results files")


# ----------------------------------------------------------------------------- a checksum is not enough
@pytest.mark.parametrize("edit, words", [
    (lambda t: t["scheduler"].update(last_epoch=0), "learning-rate schedule at epoch 0, not 1"),
    (lambda t: t["ema"].update(steps=t["ema"]["steps"] + 1), "Adam steps but"),
], ids=["schedule", "steps"])
def test_a_partial_run_whose_checksum_was_recomputed_is_checked_for_its_invariants(small, tmp_path, edit, words):
    from vibtools.store import save_checkpoint

    config = vt.TrainConfig(k=4, hidden=16, epochs=2)
    path = vt.train(config, small, device="cpu", cache=tmp_path, progress=False, stop_after=1).path
    payload = torch.load(path, map_location="cpu", weights_only=True)
    edit(payload["training"])
    save_checkpoint(path, payload)  # a valid checksum over inconsistent contents
    with pytest.warns(UserWarning, match=words):
        again = vt.train(config, small, device="cpu", cache=tmp_path, progress=False)
    fresh = vt.train(config, small, device="cpu", cache=False, progress=False)
    assert again.final == fresh.final  # retrained from scratch, not resumed on a wrong schedule


# ----------------------------------------------------------------------------- found by scripts/reliability_probe.py
def test_a_folder_in_place_of_a_run_file_or_a_record_is_one_line_before_training(home):
    config = vt.TrainConfig(k=4, epochs=1)
    fingerprint = vt.load_mnist(home / "data", download=False).fingerprint()
    mine = home / "out" / f"{run_key(config, fingerprint)}.pt"
    (mine / "notes").mkdir(parents=True)
    one_line(child(["train", *TINY_K, "--out", "out"], home), 2, "is a folder where this run's file goes")
    record = home / "results" / "k2" / "vib-beta1-k2-e1-seed0.json"
    record.mkdir(parents=True)
    one_line(child(["reproduce", "k2", "--epochs", "1", "--only", "vib-beta1-*seed0", "--no-progress"], home), 2,
             "is a folder where this run's results file goes")
    assert (mine / "notes").is_dir() and record.is_dir()


def test_sigterm_while_starting_up_is_one_line(home):
    environ = {**os.environ, "VIBTOOLS_DATA": str(home / "data"), "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "-m", "vibtools", "train", *TINY_K, "--out", "out"], cwd=home,
                         env=environ, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # inside the imports
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 143 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-1500:]


def test_the_results_download_never_deletes_a_folder_it_did_not_write(tmp_path):
    big = io.BytesIO()
    with tarfile.open(fileobj=big, mode="w:gz") as tar:
        info = tarfile.TarInfo("vib-book-main/results/table1/a.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    archive = tmp_path / "repo.tar.gz"
    archive.write_bytes(big.getvalue())
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me")
    with pytest.raises(ResultsError, match="is not an empty folder"):
        vt.results.fetch_results(archive.as_uri(), dest)
    assert (dest / "notes.txt").read_text() == "keep me"


def test_the_results_download_is_streamed_under_a_memory_limit(tmp_path):
    """A 15 MiB results file (inside the caps) is fetched by a process allowed 12 MiB more address space than it
    has after start-up: the archive and its files are copied in chunks, never held whole."""
    big = io.BytesIO()
    with tarfile.open(fileobj=big, mode="w:gz") as tar:
        blob = b"[" + b"0," * (15 * 2**19 - 1) + b"0]"
        info = tarfile.TarInfo("vib-book-main/results/table1/a.json")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    archive = tmp_path / "repo.tar.gz"
    archive.write_bytes(big.getvalue())
    script = (
        "import resource, sys, urllib.request, tarfile, vibtools.results as r\n"
        "size = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (size + 12 * 2**20, resource.RLIM_INFINITY))\n"
        "print(r.fetch_results(sys.argv[1], sys.argv[2]))\n")
    p = subprocess.run([sys.executable, "-c", script, archive.as_uri(), str(tmp_path / "fetched")],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 0, p.stderr[-1500:]
    assert (tmp_path / "fetched" / "table1" / "a.json").stat().st_size == len(blob)


def test_running_out_of_memory_in_the_results_download_is_one_line(tmp_path, monkeypatch):
    import tarfile as tarfile_module

    archive = tmp_path / "repo.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("vib-book-main/results/table1/a.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(tarfile_module, "open", no_memory)
    with pytest.raises(ResultsError, match=r"could not fetch .*\(MemoryError\)") as info:
        vt.results.fetch_results(archive.as_uri(), tmp_path / "fetched")
    assert "\n" not in str(info.value) and not (tmp_path / "fetched").exists()


# ----------------------------------------------------------------------------- bounded reading of stored JSON
def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_text("[" * 200_000 + "]" * 200_000), "nested deeper"),
    (lambda p: p.write_text('{"a": NaN}'), "bare NaN"),
    (lambda p: p.write_bytes(b"\xff\xfe{}"), "not UTF-8"),
    (lambda p: p.write_text('{"a": [' + "[" * 40 + "]" * 40 + "]}"), "nested deeper"),
    (_fifo, "not a regular file"),
    (lambda p: p.symlink_to("/dev/zero"), "not a regular file"),
    (lambda p: p.write_bytes(b" " * (17 * 2**20)), "more than the"),
], ids=["deep-list", "bare-nan", "not-utf8", "deep-record", "fifo", "dev-zero", "too-large"])
def test_a_stored_file_that_cannot_be_a_record_is_refused_in_one_line_at_once(tmp_path, make, words):
    from vibtools.robustness import load_record

    path = tmp_path / "table1" / "vib-beta0.001-k256-e10-seed0.json"
    path.parent.mkdir()
    make(path)
    for read in (load_results, load_record):
        start = time.monotonic()
        with pytest.raises(ResultsError, match=words) as info:
            read(path)
        assert "\n" not in str(info.value) and time.monotonic() - start < 30


def test_reading_an_unknown_experiment_is_one_line():
    for bad in ("../outside", "table2"):
        with pytest.raises(ResultsError, match="unknown experiment"):
            vt.reproduce.load_experiment(REPO / "results", bad)
        with pytest.raises(ResultsError, match="unknown experiment"):
            vt.reproduce.load_protocol_runs(REPO / "results", bad, 200)


@pytest.mark.parametrize("class_bits", [[3.0, float("inf")], ["3.0", "3.1"], [3.0, True], 3.0])
def test_many_draw_objectives_with_impossible_values_are_one_line(tmp_path, class_bits):
    path = tmp_path / "vib-beta1-k2-e200-seed0.json"
    stored = {"run": path.stem, "rate_bits": 0.5, "class_bits": class_bits, "data": {"fingerprint": "0" * 16}}
    path.write_text(json.dumps(stored))  # json writes inf as a bare Infinity, which strict JSON refuses too
    with pytest.raises(ResultsError, match="is not a file of scripts/objective_draws.py"):
        vt.results.load_objective_draws(path)


# ----------------------------------------------------------------------------- divergence
def test_a_diverging_run_is_one_line_exits_non_zero_and_nothing_is_cached_as_finished(home):
    p = child(["train", "--beta", "1e300", "--k", "2", "--epochs", "2", "--no-progress", "--out", "out"], home)
    err = p.stderr.strip()
    assert p.returncode != 0 and len(err.splitlines()) == 1 and "Traceback" not in err, err[-1500:]
    assert "diverged at epoch 1" in err and "smaller beta or learning rate" in err
    assert not list((home / "out").glob("*.json")) if (home / "out").exists() else True  # no history written
    for run in (home / "out").glob("*.pt") if (home / "out").exists() else ():
        payload = torch.load(run, weights_only=True)
        assert payload.get("final") is None  # nothing stored as finished
    again = child(["train", "--beta", "1e300", "--k", "2", "--epochs", "2", "--no-progress", "--out", "out"], home)
    assert again.returncode != 0 and "diverged" in again.stderr  # a rerun does not serve a result either


def test_a_run_file_with_non_finite_weights_is_refused(small, tmp_path):
    from vibtools.store import CheckpointError, check_run_payload, run_shapes

    config = vt.TrainConfig(k=2, hidden=8, epochs=1)
    result = vt.train(config, small.subset(200, 100), cache=tmp_path, progress=False)
    payload = torch.load(result.path, weights_only=True)
    check_run_payload(payload, run_shapes(config), result.path)  # as trained: accepted
    name = next(iter(payload["ema_model"]))
    payload["ema_model"][name] = payload["ema_model"][name].clone().fill_(float("nan"))
    with pytest.raises(CheckpointError, match="not finite"):
        check_run_payload(payload, run_shapes(config), result.path)
