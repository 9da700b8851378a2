"""Interruptions: Ctrl-C, SIGTERM and SIGKILL of the CLI, interrupts inside train(), stale temporary files, the
run lock between two processes, and partial runs saved on another device type.

Every interrupted run is resumed and compared with an uninterrupted one: a resume must be bit-identical (the
per-epoch wall-clock columns aside) and must replay the stored epochs first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import fake_mnist

import vibtools
import vibtools.training as loop
import vibtools.training as runs
from vibtools import TrainConfig, TrainingInterrupted
from vibtools.store import load_checkpoint, save_checkpoint

TIMEOUT = 120  # seconds any one subprocess may take before the watchdog kills it
CLI_EPOCHS = 3
TIMING = ("seconds", "eval_seconds")  # wall-clock history columns: the only ones a resume may change


# ----------------------------------------------------------------------------- helpers




def environ(tmp: Path) -> dict[str, str]:
    """A subprocess environment: one thread, default data and cache folders inside ``tmp``."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "VIBTOOLS_CACHE": str(tmp / "default-cache"),
            "VIBTOOLS_DATA": str(tmp / "default-data")}


def cli_command(data: Path, out: Path) -> list[str]:
    """The command line of every CLI run here; only --out differs between runs."""
    return [sys.executable, "-m", "vibtools", "train", "--k", "2", "--epochs", str(CLI_EPOCHS), "--device", "cpu",
            "--data", str(data), "--out", str(out), "--no-progress"]


def start(cmd: list[str], tmp: Path) -> subprocess.Popen:
    """Start ``cmd`` in ``tmp`` with piped text output and a watchdog that kills it after TIMEOUT seconds."""
    proc = subprocess.Popen(cmd, cwd=tmp, env=environ(tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    watchdog = threading.Timer(TIMEOUT, proc.kill)
    watchdog.daemon = True
    watchdog.start()
    return proc


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    """Wait for ``proc``; return its exit status, stdout and stderr."""
    out, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out, err


def run_cli(data: Path, out: Path, tmp: Path) -> tuple[int, str, str]:
    """Run the CLI command to its end; return its exit status, stdout and stderr."""
    return finish(start(cli_command(data, out), tmp))


def saved_files(folder: Path) -> set[tuple[str, int]]:
    """The run files in ``folder`` with their modification times (an atomic rewrite changes the time)."""
    return {(p.name, p.stat().st_mtime_ns) for p in folder.glob("*.pt")}


def interrupted_cli(data: Path, out: Path, tmp: Path, sig: int, after_checkpoint: bool = False) -> tuple[int, str, str]:
    """Run the CLI; send ``sig`` once its first epoch line is out (and, if asked, once it has saved a new file)."""
    before = saved_files(out) if out.is_dir() else set()
    proc = start(cli_command(data, out), tmp)
    try:
        first = proc.stdout.readline()
        if not first.startswith("0: IZY="):
            proc.kill()
            code, rest, err = finish(proc)
            pytest.fail(f"no epoch line before the signal (status {code}): {first + rest!r} {err!r}")
        if after_checkpoint:
            while saved_files(out) - before == set() and proc.poll() is None:
                time.sleep(0.002)
            # let the run note the save and go on training; the moment right after a save is tested
            # deterministically by test_ctrl_c_right_after_a_save_reports_that_epoch_saved
            time.sleep(0.1)
        proc.send_signal(sig)
        code, rest, err = finish(proc)
        return code, first + rest, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def tmp_files(folder: Path) -> list[str]:
    """Names of the temporary files (``*.tmp``, hidden ones included) in ``folder``."""
    return sorted(p.name for p in folder.glob("*.tmp"))


def check_one_error_line(code: int, expected: int, stderr: str) -> str:
    """Check an interrupted CLI run's exit status and single stderr line, and return that line."""
    assert code == expected, (code, stderr)
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "interrupted after epoch" in lines[0], lines[0]
    return lines[0]


def epoch_lines(stdout: str) -> list[str]:
    """A finished CLI run's stdout lines without the final '# device=...' line (which holds wall times)."""
    lines = stdout.splitlines()
    assert lines and lines[-1].startswith("# device="), stdout
    assert len(lines) == CLI_EPOCHS + 2 and lines[-2].startswith("EMA: IZY="), stdout
    return lines[:-1]


def untimed(history: dict) -> dict:
    """A history (or one history row) without its wall-clock columns."""
    return {k: v for k, v in history.items() if k not in TIMING}


def assert_same_run(a: vibtools.RunResult, b: vibtools.RunResult) -> None:
    """Assert two runs are bit-identical: history (timing aside), final metrics, raw and EMA weights."""
    assert untimed(a.history) == untimed(b.history)
    assert a.final == b.final
    for ma, mb in ((a.model, b.model), (a.ema_model, b.ema_model)):
        sa, sb = ma.state_dict(), mb.state_dict()
        assert sa.keys() == sb.keys()
        for name in sa:
            assert torch.equal(sa[name].cpu(), sb[name].cpu()), name


def counting_train_step(monkeypatch, interrupt_at: int | None = None) -> dict[str, int]:
    """Replace loop.train_step by a counting wrapper (raising KeyboardInterrupt on call ``interrupt_at``)."""
    calls = {"n": 0}
    original = loop.train_step

    def step(*args, **kwargs):
        """Count the call, interrupt on the chosen one, else take the real step."""
        calls["n"] += 1
        if calls["n"] == interrupt_at:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", step)
    return calls


def train(config: TrainConfig, data, folder, **kwargs) -> vibtools.RunResult:
    """vibtools.train on the CPU, without progress bars, with ``folder`` as the run cache."""
    return vibtools.train(config, data, device="cpu", cache=folder, progress=False, **kwargs)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cli_data(tmp_path_factory) -> Path:
    """A fake MNIST folder: 1000 training and 200 test images (10 steps per epoch)."""
    return fake_mnist(tmp_path_factory.mktemp("fake-mnist"), 1000, 200)


@pytest.fixture(scope="module")
def reference(cli_data, tmp_path_factory):
    """The uninterrupted CLI run's lines (without '# device'), computed in the background while tests run."""
    tmp = tmp_path_factory.mktemp("reference")
    proc = start(cli_command(cli_data, tmp / "out"), tmp)
    done: dict[str, list[str]] = {}

    def lines() -> list[str]:
        """Wait for the reference run (once) and return its epoch and EMA lines."""
        if "lines" not in done:
            code, out, err = finish(proc)
            assert code == 0, err
            done["lines"] = epoch_lines(out)
        return done["lines"]

    yield lines
    if proc.poll() is None:
        proc.kill()
        proc.wait()


# ----------------------------------------------------------------------------- the CLI, as a real process
def test_cli_ctrl_c_after_first_epoch_line_saves_it_and_resumes(cli_data, reference, tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = interrupted_cli(cli_data, out, tmp_path, signal.SIGINT)
    line = check_one_error_line(code, 130, stderr)
    assert tmp_files(out) == []
    # the epoch whose line was printed counts as finished: the user must be told it is kept and how to resume
    assert "rerun the same command to resume" in line, line
    code, stdout, stderr = run_cli(cli_data, out, tmp_path)
    assert code == 0, stderr
    assert epoch_lines(stdout) == reference()
    assert tmp_files(out) == []


def test_cli_sigterm_after_first_epoch_line_exits_143(cli_data, tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = interrupted_cli(cli_data, out, tmp_path, signal.SIGTERM)
    check_one_error_line(code, 143, stderr)
    assert tmp_files(out) == []


def test_cli_sigkill_then_ctrl_c_after_a_save_then_rerun_is_bit_identical(cli_data, reference, tmp_path):
    out = tmp_path / "out"
    code, _, _ = interrupted_cli(cli_data, out, tmp_path, signal.SIGKILL)  # may leave a temporary file behind
    assert code == -signal.SIGKILL
    # the rerun clears what the killed writer left, trains, and gets Ctrl-C once it has saved an epoch
    code, stdout, stderr = interrupted_cli(cli_data, out, tmp_path, signal.SIGINT, after_checkpoint=True)
    line = check_one_error_line(code, 130, stderr)
    assert "rerun the same command to resume" in line, line
    assert tmp_files(out) == []
    (stored,) = out.glob("*.pt")
    saved = load_checkpoint(stored)
    assert 1 <= saved["epochs_done"] <= CLI_EPOCHS and saved["final"] is None
    assert f"interrupted after epoch {saved['epochs_done']} of {CLI_EPOCHS}" in line, line
    code, stdout, stderr = run_cli(cli_data, out, tmp_path)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert epoch_lines(stdout) == reference()  # the stored epochs are reprinted, the rest trained identically
    assert tmp_files(out) == []
    assert load_checkpoint(stored)["epochs_done"] == CLI_EPOCHS


# ----------------------------------------------------------------------------- stale temporary files
def test_stale_temporary_files_of_the_run_are_removed(small, cache_dir):
    config = TrainConfig(k=8, hidden=32, epochs=2)
    partial = train(config, small, cache_dir, stop_after=1)
    path = partial.path
    stale = cache_dir / f".{path.name}.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = cache_dir / ".0123456789abcdef0123.pt.xyz789.tmp"  # another run's writer: not ours to remove
    other.write_bytes(b"someone else's")
    done = train(config, small, cache_dir)
    assert not stale.exists()
    assert other.exists()
    assert done.final and load_checkpoint(path)["epochs_done"] == 2
    stale.write_bytes(b"left by a killed writer")  # a cache hit clears them too
    assert train(config, small, cache_dir).from_cache
    assert not stale.exists()


# ----------------------------------------------------------------------------- interrupts inside train()
def test_interrupt_in_final_evaluation_keeps_all_epochs(small, tmp_path, monkeypatch):
    config = TrainConfig(k=8, hidden=32, epochs=2)
    folder = tmp_path / "interrupted"

    def interrupt(*args, **kwargs):
        """Ctrl-C during the final evaluation."""
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(runs, "final_evaluation", interrupt)
        with pytest.raises(TrainingInterrupted) as info:
            train(config, small, folder)
    assert isinstance(info.value, KeyboardInterrupt)
    message = str(info.value)
    assert "interrupted after epoch 2 of 2" in message and "rerun" in message, message
    (path,) = folder.glob("*.pt")
    stored = load_checkpoint(path)
    assert stored["epochs_done"] == 2 and stored["final"] is None
    assert tmp_files(folder) == []

    calls = counting_train_step(monkeypatch)
    resumed = train(config, small, folder)
    assert calls["n"] == 0  # only the final evaluation was left to do
    assert not resumed.from_cache
    assert set(resumed.final) == {"raw_test", "ema_test", "ema_train"}
    assert all(resumed.final[split] for split in resumed.final)
    assert load_checkpoint(path)["final"] == resumed.final
    assert_same_run(resumed, train(config, small, tmp_path / "uninterrupted"))


def test_ctrl_c_mid_epoch_resumes_bit_identically(small, tmp_path, monkeypatch):
    config = TrainConfig(k=8, hidden=32, epochs=3)  # 1000 images at batch 100: 10 steps per epoch
    folder = tmp_path / "interrupted"
    with monkeypatch.context() as m:
        counting_train_step(m, interrupt_at=15)
        with pytest.raises(TrainingInterrupted) as info:
            train(config, small, folder)
    message = str(info.value)
    assert "interrupted after epoch 1 of 3" in message and "rerun" in message, message
    (path,) = folder.glob("*.pt")
    assert load_checkpoint(path)["epochs_done"] == 1
    assert tmp_files(folder) == []
    calls = counting_train_step(monkeypatch)
    resumed = train(config, small, folder)
    assert calls["n"] == 20  # epochs 2 and 3 only
    assert_same_run(resumed, train(config, small, tmp_path / "uninterrupted"))


def test_ctrl_c_right_after_a_save_reports_that_epoch_saved(small, tmp_path, monkeypatch):
    config = TrainConfig(k=8, hidden=32, epochs=3)
    folder = tmp_path / "runs"
    real_save = runs.save_checkpoints

    def save_then_ctrl_c(items):
        """Write the files, then get a real Ctrl-C (SIGINT to this process) after the first epoch's save."""
        real_save(items)
        if items[0][1]["epochs_done"] == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(runs, "save_checkpoints", save_then_ctrl_c)
    with pytest.raises(TrainingInterrupted) as info:
        train(config, small, folder)
    (path,) = folder.glob("*.pt")
    assert load_checkpoint(path)["epochs_done"] == 1
    message = str(info.value)
    # the file on disk holds epoch 1: the message must say so, not "nothing was saved"
    assert "interrupted after epoch 1 of 3" in message and "rerun" in message, message


def test_ctrl_c_without_cache_says_nothing_was_saved(small, tmp_path, monkeypatch):
    monkeypatch.setenv("VIBTOOLS_CACHE", str(tmp_path / "default-cache"))
    counting_train_step(monkeypatch, interrupt_at=15)
    with pytest.raises(TrainingInterrupted) as info:
        train(TrainConfig(k=8, hidden=32, epochs=3), small, False)
    message = str(info.value)
    assert "interrupted after epoch 1 of 3" in message and "nothing was saved" in message, message
    assert "rerun" not in message, message
    assert not (tmp_path / "default-cache").exists()


def test_on_epoch_replays_stored_epochs_on_resume(small, tmp_path):
    config = TrainConfig(k=8, hidden=32, epochs=4)
    folder = tmp_path / "interrupted"
    train(config, small, folder, stop_after=2)
    seen: list[tuple[int, list[dict]]] = []
    resumed = train(config, small, folder, on_epoch=lambda e, rows: seen.append((e, rows)))
    expected: list[tuple[int, list[dict]]] = []
    fresh = train(config, small, tmp_path / "uninterrupted", on_epoch=lambda e, rows: expected.append((e, rows)))
    assert [e for e, _ in seen] == [0, 1, 2, 3]
    assert [e for e, _ in expected] == [0, 1, 2, 3]
    for (_, rows), (_, want) in zip(seen, expected):
        assert [untimed(r) for r in rows] == [untimed(r) for r in want]
    assert_same_run(resumed, fresh)


# ----------------------------------------------------------------------------- two processes, one run
LOCK_SCRIPT = '''
import sys, time
from pathlib import Path
import vibtools

root, folder, wait_for, hold_until = sys.argv[1:5]
data = vibtools.load_mnist(root, download=False).subset(3000, 500)


def gate(name):
    """Wait (at most a minute) until the file ``name`` exists; "-" waits for nothing."""
    deadline = time.monotonic() + 60
    while name != "-" and not Path(name).exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def on_epoch(e, rows):
    """Report the epoch; after the first, hold (the run's lock) until told to go on."""
    print("epoch", e, flush=True)
    if e == 0:
        gate(hold_until)


gate(wait_for)
r = vibtools.train(vibtools.TrainConfig(k=8, hidden=32, epochs=3), data, device="cpu", cache=folder,
                   progress=False, on_epoch=on_epoch)
print(f"from_cache={r.from_cache}", flush=True)
print(f"avg_err={r.final['ema_test']['avg_err']!r}", flush=True)
'''


def test_second_process_waits_for_the_first_and_loads_its_run(data_root, tmp_path):
    script = tmp_path / "train_one.py"
    script.write_text(LOCK_SCRIPT)
    folder, go_b, release_a = tmp_path / "runs", tmp_path / "go-b", tmp_path / "release-a"
    a = start([sys.executable, str(script), str(data_root), str(folder), "-", str(release_a)], tmp_path)
    b = start([sys.executable, str(script), str(data_root), str(folder), str(go_b), "-"], tmp_path)
    try:
        first = a.stdout.readline()
        assert first.strip() == "epoch 0", first
        go_b.touch()  # A holds the run's lock (paused in its on_epoch): B must wait for it
        waited = ""
        for line in b.stderr:  # the lock's one-second patience runs out, then B says why it waits
            waited += line
            if "waiting for another process" in line:
                break
        release_a.touch()
        code_a, out_a, err_a = finish(a)
        code_b, out_b, err_b = finish(b)
    finally:
        release_a.touch()
        go_b.touch()
        for proc in (a, b):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code_a == 0, err_a
    assert code_b == 0, waited + err_b
    assert "waiting for another process" in waited, waited + err_b
    lines_a, lines_b = (first + out_a).splitlines(), out_b.splitlines()
    assert lines_a[:3] == ["epoch 0", "epoch 1", "epoch 2"] and lines_a[3] == "from_cache=False", lines_a
    assert lines_b[0] == "from_cache=True", lines_b  # B trained nothing: no epoch lines
    assert lines_b[1] == lines_a[4] and lines_b[1].startswith("avg_err="), (lines_a, lines_b)
    assert len(list(folder.glob("*.pt"))) == 1
    assert tmp_files(folder) == []


# ----------------------------------------------------------------------------- runs from another device type
def edit_payload(path: Path, edit) -> None:
    """Load a run file, apply ``edit`` to its payload and store it again with a valid checksum."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    edit(payload)
    save_checkpoint(path, payload)


def test_partial_run_from_cuda_is_reported_in_one_line_and_trained_from_scratch(small, tmp_path):
    """As the README says: random-stream states are device-specific, so the run says why and starts again."""
    config = TrainConfig(k=8, hidden=32, epochs=2)
    folder = tmp_path / "from-cuda"
    path = train(config, small, folder, stop_after=1).path
    fresh = train(config, small, tmp_path / "fresh")

    def as_cuda(payload):
        """Pretend the training state was saved on a GPU (a CUDA generator state is 16 bytes)."""
        payload["training"]["device_type"] = "cuda"
        payload["training"]["rng"]["noise"] = torch.zeros(16, dtype=torch.uint8)

    edit_payload(path, as_cuda)
    with pytest.warns(UserWarning) as record:
        again = train(config, small, folder)
    message = str(record[0].message)
    assert "saved on cuda and cannot resume on cpu; training from scratch" in message and "\n" not in message
    assert "epoch 1 of 2" in message and not again.from_cache
    assert again.final == fresh.final  # trained from scratch: the same run as one that never stopped


def test_finished_cuda_run_loads_on_cpu(small, tmp_path):
    config = TrainConfig(k=8, hidden=32, epochs=1)
    folder = tmp_path / "runs"
    trained = train(config, small, folder)
    edit_payload(trained.path, lambda payload: payload.update(device="cuda (NVIDIA H200)"))
    loaded = vibtools.load_run(trained.path, device="cpu")
    assert loaded.device == "cuda (NVIDIA H200)"
    assert next(loaded.model.parameters()).device.type == "cpu"
    assert_same_run(loaded, trained)
    cached = train(config, small, folder)
    assert cached.from_cache and cached.device == "cuda (NVIDIA H200)"
    assert_same_run(cached, trained)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cpu_run_loads_on_cuda(small, tmp_path):
    trained = train(TrainConfig(k=8, hidden=32, epochs=1), small, tmp_path / "runs")
    loaded = vibtools.load_run(trained.path, device="cuda")
    for model in (loaded.model, loaded.ema_model):
        assert all(p.device.type == "cuda" for p in model.parameters())
    assert loaded.device == trained.device and loaded.device.startswith("cpu")
    assert_same_run(loaded, trained)


def test_a_full_disk_at_the_end_of_a_stacked_pass_leaves_the_pass_whole(small, tmp_path, monkeypatch):
    import vibtools.store as store

    configs = [TrainConfig(k=4, hidden=16, epochs=2, beta=b) for b in (1e-3, 1e-2)]
    folder = tmp_path / "runs"
    real_blob, finals = store._checkpoint_blob, []

    def full_disk_at_the_second_final_file(payload):
        """The disk fills while the pass's finished runs are written: the first is written, the second fails."""
        if payload.get("final") is not None:
            finals.append(payload)
            if len(finals) == 2:
                raise OSError(28, "No space left on device")
        return real_blob(payload)

    monkeypatch.setattr(store, "_checkpoint_blob", full_disk_at_the_second_final_file)
    with pytest.raises(OSError, match="No space"):
        runs.train_sweep(configs, small, cache=folder, progress=False)
    files = sorted(folder.glob("*.pt"))
    assert len(files) == 2 and [load_checkpoint(p).get("final") for p in files] == [None, None]  # both unfinished
    assert tmp_files(folder) == []
    monkeypatch.setattr(store, "_checkpoint_blob", real_blob)
    done = runs.train_sweep(configs, small, cache=folder, progress=False)
    passes = {(r.timing["pass"]["id"], r.timing["pass"]["models"]) for r in done}
    assert len(passes) == 1 and next(iter(passes))[1] == 2  # one pass of two models, not split
