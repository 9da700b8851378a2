"""Reliability probe: try the failures a reliability review listed, and count per category how many hold.

Each case is tried the way a user meets it: ``python -m vibtools`` in a child process on a small fake MNIST, or
the Python API in this process. A case *holds* when

- its failure ends in one true line: for the command line exactly one non-empty stderr line and no traceback,
  with exit status 2 for bad input (before any work), 1 for a failure after the checks, 130/143 for Ctrl-C/SIGTERM,
  0 where the command should simply succeed (a damaged stored run is reported in one warning line and retrained);
  for the API a ValueError, DataNotFoundError, MNISTFileError or ResultsError (CheckpointError for ``load_run``)
  whose message is one line, or exactly one one-line warning where the package reports and retrains;
- it loses nothing: a saved epoch stays, and a resumed run prints what an uninterrupted one prints;
- it touches nothing it did not create: the working folder is listed before and after (symbolic links included,
  not followed), and for bad input nothing may appear in it.

Categories: input (bad options, settings and TrainConfig fields), damaged (run files, MNIST files), interrupt
(SIGINT, SIGTERM, SIGKILL during train and reproduce, then a rerun), concurrency (2 and 4 processes on one --out),
security (results archives, pickled objects in run files), resources (full disk, memory limit, read-only and
unwritable folders), reproduce (results files edited, misplaced, stale, or not files at all), records (what a stored
record could claim falsely, issue 32: attack-study records of other data or damaged, another experiment's record,
diverged training stored as finished, values and types no run produces, bounded reading). Each case prints one line
as it ends; a table of tried/held per category follows, then the cases that did not hold with what happened. Exit
status 1 when any did not hold.

Run from the repository root (10-20 minutes on a loaded 2-core machine; the real MNIST is not used: the probe writes
fake ones under /tmp/probe-*, removed at the end unless --keep)::

    nice .venv/bin/python scripts/reliability_probe.py
    .venv/bin/python scripts/reliability_probe.py --only interrupt --jobs 2 --keep   # one category

Children run niced (at least 10), with one thread, offline (an unreachable proxy), through a launcher that sets
their resource limits, signal dispositions (SIGINT default, as from a terminal, even when this probe runs in the
background) and capabilities before it execs ``python -m vibtools``. Root writes through permissions, so "cannot
write" is tried as root without its capabilities (its bounding set dropped: permissions then apply to it) or with
a file-size limit of 0.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import gzip
import hashlib
import io
import json
import math
import os
import queue
import re
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the package under test, and the tests' fake MNIST
sys.dont_write_bytecode = True  # leave the checkout as it is

import torch  # noqa: E402
from conftest import fake_mnist, write_idx  # noqa: E402

import vibtools as vt  # noqa: E402
from vibtools.reproduce import ResultsError, load_results, sealed  # noqa: E402
from vibtools.store import CheckpointError, digest, load_checkpoint, save_checkpoint  # noqa: E402

PY = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
OFFLINE = "http://127.0.0.1:9"  # an unreachable proxy: no child downloads anything
TRAIN = ["train", "--k", "4", "--epochs", "2", "--device", "cpu", "--no-progress"]  # small data, ~1 s of training
BIG = ["train", "--k", "16", "--epochs", "3", "--device", "cpu", "--no-progress"]  # big data: seconds per epoch
REPRO = ["reproduce", "k2", "--epochs", "1", "--only", "vib-beta1-*seed0,vib-beta0.1-*seed0", "--device", "cpu",
         "--no-progress"]
REPRO_ONE = [*REPRO[:4], "--only", "vib-beta1-*seed0", *REPRO[6:]]
REPRO_BIG = ["reproduce", "k2", "--epochs", "3", "--only", "vib-beta1-*seed0", "--device", "cpu", "--no-progress"]
BETA1, BETA01 = "vib-beta1-k2-e1-seed0.json", "vib-beta0.1-k2-e1-seed0.json"
API_CFG = vt.TrainConfig(k=4, hidden=64, epochs=2)  # the in-process runs
EPOCH_LINE = re.compile(r"^(\d+|EMA):")

# the child's launcher: limits, signals and capabilities, then exec python -m vibtools ARGS (argv: spec, args...)
LAUNCHER = """\
import json, os, resource, signal, sys
spec = json.loads(sys.argv[1])
os.nice(max(0, 10 - os.nice(0)))
for name, value in spec["limits"].items():
    resource.setrlimit(getattr(resource, name), (value, value))
if spec["ignore_xfsz"]:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
if spec["no_caps"]:  # root without its capabilities after the exec: permissions apply to it as to any user
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(64):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP (fails harmlessly when not root)
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.executable, [sys.executable, "-m", "vibtools", *sys.argv[2:]])
"""


# ----------------------------------------------------------------------------- verdicts
class NotHeld(Exception):
    """A case that did not hold; the message says what happened instead."""


def check(condition: object, reason: str) -> None:
    """Raise NotHeld(reason) unless ``condition``."""
    if not condition:
        raise NotHeld(reason)


def brief(text: str, width: int = 220) -> str:
    """``text`` on one line, cut to ``width`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + "..."


@dataclass
class Case:
    """One tried failure: its category, its name, and the function that raises NotHeld when it does not hold."""

    category: str
    name: str
    run: Callable[[], str | None]  # raises NotHeld; may return a note on what held
    api: bool = False  # in this process's main thread (warnings and signals are process-wide)


@dataclass
class Verdict:
    """What one case did."""

    case: Case
    held: bool
    reason: str
    seconds: float


# ----------------------------------------------------------------------------- child processes
@dataclass
class Child:
    """A finished child: exit status (negative: killed by that signal), stdout, stderr."""

    code: int
    out: str
    err: str

    def lines(self) -> list[str]:
        """The non-empty stderr lines."""
        return [line for line in self.err.splitlines() if line.strip()]

    def show(self) -> str:
        """Exit status and stderr, in one line, for a reason."""
        lines = self.lines()
        return f"exit {self.code}, {len(lines)} stderr line(s)" + (f": {' | '.join(lines[:3])}" if lines else "")

    def results_lines(self) -> list[str]:
        """The stdout lines of epochs and of the EMA weights."""
        return [line for line in self.out.splitlines() if EPOCH_LINE.match(line)]


class Running:
    """A child started with piped output; its stdout lines arrive on a queue as they are printed."""

    def __init__(self, cmd: list[str], cwd: Path, env: dict[str, str]):
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, errors="replace")
        self.out: list[str] = []
        self.err: list[str] = []
        self.arrived: queue.Queue = queue.Queue()
        self.readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.out, True), daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stderr, self.err, False), daemon=True)]
        for t in self.readers:
            t.start()

    def _read(self, stream, into: list[str], announce: bool) -> None:
        """Collect one stream's lines (and announce stdout's)."""
        for line in stream:
            into.append(line)
            if announce:
                self.arrived.put(line)
        if announce:
            self.arrived.put(None)

    def wait_for(self, prefix: str, timeout: float = 240) -> bool:
        """Wait until a stdout line starts with ``prefix``; False when the output ended or time ran out first."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.arrived.get(timeout=max(0.05, end - time.monotonic()))
            except queue.Empty:
                return False
            if line is None:
                return False
            if line.startswith(prefix):
                return True
        return False

    def send(self, sig: int) -> None:
        """Send ``sig`` unless the child has ended."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def finish(self, timeout: float = 300) -> Child:
        """Wait for the end (killed after ``timeout`` s: NotHeld, it hung)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise NotHeld(f"hung: no end after {timeout:.0f} s (killed)") from None
        for t in self.readers:
            t.join(10)
        return Child(self.proc.returncode, "".join(self.out), "".join(self.err))


def one_line(child: Child, codes: int | tuple[int, ...], *words: str) -> str:
    """Raise NotHeld unless ``child`` exited with ``codes`` and one stderr line holding each of ``words``."""
    codes = codes if isinstance(codes, tuple) else (codes,)
    lines = child.lines()
    check(child.code in codes and len(lines) == 1 and "Traceback" not in child.err,
          f"expected exit {'/'.join(map(str, codes))} and one stderr line; got {child.show()}")
    for word in words:
        check(word in lines[0], f"the line lacks {word!r}: {lines[0]}")
    return lines[0]


def quiet(child: Child, what: str = "") -> None:
    """Raise NotHeld unless ``child`` exited 0 with nothing on stderr."""
    check(child.code == 0 and not child.lines(), f"{what}expected exit 0 and no stderr; got {child.show()}")


# ----------------------------------------------------------------------------- folders
def listing(folder: Path, times: bool = True) -> dict[str, tuple]:
    """Every path under ``folder`` (links not followed): kind, link target, size and (``times``) mtime of files."""
    rows = {}
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(top, name)
            st = path.lstat()
            regular = stat.S_ISREG(st.st_mode)
            rows[str(path.relative_to(folder))] = (
                stat.S_IFMT(st.st_mode), os.readlink(path) if stat.S_ISLNK(st.st_mode) else None,
                st.st_size if regular else None, st.st_mtime_ns if regular and times else None)
    return rows


def unchanged(before: dict, after: dict, what: str = "the folder") -> None:
    """Raise NotHeld naming what appeared, went or changed between two listings."""
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    check(not changed, f"{what} changed: {', '.join(repr(c) for c in changed[:4])}"
                       f"{' ...' if len(changed) > 4 else ''}")


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tmp_files(*folders: Path) -> list[str]:
    """Temporary files (*.tmp) left under ``folders``."""
    return [str(p) for f in folders if f.is_dir() for p in f.rglob("*.tmp")]


def no_tmp(*folders: Path) -> None:
    """Raise NotHeld when a temporary file is left under ``folders``."""
    left = tmp_files(*folders)
    check(not left, f"temporary files left: {', '.join(left[:3])}")


def epochs_done(folder: Path) -> int:
    """The epochs saved in the one run file of ``folder`` (0 without one)."""
    runs = sorted(folder.glob("*.pt")) if folder.is_dir() else []
    return torch.load(runs[0], map_location="cpu", weights_only=True)["epochs_done"] if runs else 0


# ----------------------------------------------------------------------------- the probe
class Evil:
    """An object whose unpickling would create ``marker`` (what a malicious run file would run)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        """Unpickling calls open(marker, "w")."""
        return open, (self.marker, "w")


@dataclass
class Probe:
    """The temporary root, the fake MNIST folders, the reference runs (made once), and the verdicts."""

    root: Path
    verdicts: list[Verdict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    once_lock: threading.Lock = field(default_factory=threading.Lock)
    done: dict = field(default_factory=dict)
    counter: int = 0

    def __post_init__(self):
        self.small, self.big, self.other = (self.root / n for n in ("data-small", "data-big", "data-other"))
        self.home = self.root / "home"
        self.cases = self.root / "cases"

    def prepare(self) -> None:
        """Write the fake MNIST folders (600/200, 2000/300 and 700/200 images) and the home folder."""
        fake_mnist(self.small, 600, 200)
        fake_mnist(self.big, 2000, 300)
        fake_mnist(self.other, 700, 200)
        for p in (self.home, self.cases):
            p.mkdir()
        for p in (self.root, *self.root.rglob("*")):
            p.chmod(0o755 if p.is_dir() else 0o644)  # readable by any user

    def folder(self, name: str) -> Path:
        """A fresh working folder for one case."""
        with self.lock:
            self.counter += 1
            path = self.cases / f"{self.counter:03d}-{re.sub(r'[^A-Za-z0-9]+', '-', name)[:50]}"
        path.mkdir()
        path.chmod(0o755)
        return path

    def once(self, key: str, make: Callable):
        """``make()``, computed once for all threads (a failure is every caller's failure)."""
        with self.once_lock:
            future = self.done.get(key)
            owner = future is None
            if owner:
                future = self.done[key] = concurrent.futures.Future()
        if owner:
            try:
                future.set_result(make())
            except BaseException as exc:  # noqa: B036 - handed to every waiter
                future.set_exception(exc)
        try:
            return future.result()
        except NotHeld as exc:
            raise NotHeld(f"reference {key!r} failed: {exc}") from None

    # ---------------------------------------------------------------- children
    def env(self, folder: Path, data: Path | None) -> dict[str, str]:
        """A child's environment: one thread, offline, data and run cache named, nothing of the caller's vibtools."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIBTOOLS_")}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1",
                   HOME=str(self.home), XDG_CACHE_HOME=str(self.home / ".cache"), http_proxy=OFFLINE,
                   https_proxy=OFFLINE, HTTP_PROXY=OFFLINE, HTTPS_PROXY=OFFLINE, no_proxy="", NO_PROXY="",
                   VIBTOOLS_DATA=str(data or self.small), VIBTOOLS_CACHE=str(folder / "cache"))
        return env

    def start(self, folder: Path, args: list[str], *, data: Path | None = None, limits: dict | None = None,
              xfsz: bool = False, no_caps: bool = False, env: dict[str, str] | None = None) -> Running:
        """Start ``python -m vibtools ARGS`` in ``folder`` through the launcher (``env``: variables set over
        :meth:`env`'s)."""
        spec = json.dumps({"limits": limits or {}, "ignore_xfsz": xfsz, "no_caps": no_caps})
        return Running([PY, "-c", LAUNCHER, spec, *args], folder, {**self.env(folder, data), **(env or {})})

    def cli(self, folder: Path, args: list[str], timeout: float = 300, **options) -> Child:
        """Run ``python -m vibtools ARGS`` in ``folder`` to its end."""
        return self.start(folder, args, **options).finish(timeout)

    # ---------------------------------------------------------------- references
    def small_run(self) -> tuple[Path, list[str]]:
        """A finished ``train --k 4 --epochs 2`` on the small data: its folder (out/ inside) and its lines."""
        def make():
            folder = self.root / "ref-small"
            folder.mkdir()
            child = self.cli(folder, [*TRAIN, "--out", "out"])
            quiet(child, "the reference run: ")
            return folder, child.results_lines()
        return self.once("small-run", make)

    def big_run(self) -> list[str]:
        """The lines of an uninterrupted ``train --k 16 --epochs 3`` on the big data."""
        def make():
            folder = self.root / "ref-big"
            folder.mkdir()
            child = self.cli(folder, [*BIG, "--out", "out"], data=self.big)
            quiet(child, "the reference run: ")
            return child.results_lines()
        return self.once("big-run", make)

    def small_results(self) -> Path:
        """A finished ``reproduce k2 --epochs 1`` of two runs on the small data: its folder (results/, cache/)."""
        def make():
            folder = self.root / "ref-repro"
            folder.mkdir()
            quiet(self.cli(folder, REPRO), "the reference reproduce: ")
            return folder
        return self.once("small-results", make)

    def big_record(self) -> dict:
        """The results record of an uninterrupted ``reproduce k2 --epochs 3`` of one run on the big data."""
        def make():
            folder = self.root / "ref-repro-big"
            folder.mkdir()
            quiet(self.cli(folder, REPRO_BIG, data=self.big), "the reference reproduce: ")
            return json.loads((folder / "results" / "k2" / "vib-beta1-k2-e3-seed0.json").read_text())
        return self.once("big-record", make)

    def tensors(self, root: Path | None = None):
        """The fake MNIST of ``root`` (default: the small one) as tensors."""
        return vt.load_mnist(root or self.small, download=False)

    def api_runs(self) -> dict:
        """In-process runs of API_CFG: a finished and a partial (1 of 2 epochs) run file, and a fresh run's final."""
        def make():
            data, folder = self.tensors(), self.root / "api-runs"
            finished = vt.train(API_CFG, data, device="cpu", cache=folder / "finished", progress=False).path
            partial = vt.train(API_CFG, data, device="cpu", cache=folder / "partial", progress=False,
                               stop_after=1).path
            fresh = vt.train(API_CFG, data, device="cpu", cache=False, progress=False)
            return {"finished": finished, "partial": partial, "final": fresh.final}
        return self.once("api-runs", make)

    def copy_of(self, source: Path, name: str) -> Path:
        """A working folder holding a copy of ``source``'s contents (links kept as links)."""
        folder = self.folder(name)
        for item in source.iterdir():
            if item.is_dir() and not item.is_symlink():
                shutil.copytree(item, folder / item.name, symlinks=True)
            else:
                shutil.copy2(item, folder / item.name, follow_symlinks=False)
        return folder

    # ---------------------------------------------------------------- running the cases
    def execute(self, case: Case) -> Verdict:
        """Run one case and print its line."""
        t0 = time.perf_counter()
        try:
            note = case.run()
            held, reason = True, f"(note: {note})" if note else ""
        except NotHeld as exc:
            held, reason = False, brief(str(exc), 600)
        except Exception as exc:  # the probe's own error: reported, not hidden
            held, reason = False, brief(f"probe error: {type(exc).__name__}: {exc}", 600)
        verdict = Verdict(case, held, reason, time.perf_counter() - t0)
        with self.lock:
            self.verdicts.append(verdict)
            print(f"{case.category:<12} {case.name:<62} {'held ' if held else 'NOT HELD: '}{reason} "
                  f"({verdict.seconds:.0f} s)", flush=True)
        return verdict


# ----------------------------------------------------------------------------- API helpers
def raises(fn: Callable, kinds: tuple[type[BaseException], ...], *words: str) -> str:
    """Raise NotHeld unless ``fn()`` raises one of ``kinds`` with a one-line message holding each of ``words``."""
    try:
        fn()
    except kinds as exc:
        message = str(exc)
        check(message.strip() and "\n" not in message, f"{type(exc).__name__} of {message.count(chr(10)) + 1} "
                                                       f"lines: {brief(message)}")
        for word in words:
            check(word in message, f"the message lacks {word!r}: {brief(message)}")
        return message
    except Exception as exc:
        raise NotHeld(f"raised {type(exc).__name__} (not {'/'.join(k.__name__ for k in kinds)}): "
                      f"{brief(exc)}") from None
    raise NotHeld("raised nothing")


def resealed(record: dict, **fields) -> dict:
    """``record`` with ``fields`` replaced and its checksum recomputed (an edit made to look genuine)."""
    return sealed({**{k: v for k, v in record.items() if k != "checksum"}, **fields})


@contextlib.contextmanager
def warnings_caught():
    """Record every warning of the block (main thread only)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def one_warning(caught: list, *words: str) -> None:
    """Raise NotHeld unless exactly one one-line warning holding each of ``words`` was recorded."""
    messages = [str(w.message) for w in caught]
    check(len(messages) == 1 and "\n" not in messages[0],
          f"expected one one-line warning; got {len(messages)}: {brief(' | '.join(messages))}")
    for word in words:
        check(word in messages[0], f"the warning lacks {word!r}: {brief(messages[0])}")


# ----------------------------------------------------------------------------- 1. bad input
def bad_input_folder(p: Probe, name: str) -> Path:
    """A working folder holding what bad names point at: a file, a broken link, a loop, a name with a newline."""
    folder = p.folder(name)
    (folder / "a-file").write_text("not a folder\n")
    (folder / "file\nwith newline").write_text("x\n")
    (folder / "dangling").symlink_to(folder / "nowhere")
    (folder / "loop1").symlink_to(folder / "loop2")
    (folder / "loop2").symlink_to(folder / "loop1")
    (folder / "empty-data").mkdir()
    return folder


def refused(p: Probe, name: str, args: list[str], *words: str, code: int = 2, **options) -> Callable[[], None]:
    """A case: ``args`` exits ``code`` with one line holding ``words``, and the working folder stays as it was."""
    def run():
        folder = bad_input_folder(p, name)
        before = listing(folder)
        one_line(p.cli(folder, args, **options), code, *words)
        unchanged(before, listing(folder), "the working folder")
    return run


def input_cases(p: Probe) -> list[Case]:
    """Bad options of train and reproduce, and bad TrainConfig fields and train() options through the API."""
    beta, k = "beta must be a finite number >= 0", "k must be an integer >= 1"
    epochs, seed = "epochs must be an integer from 1 to 100000", "seed must be an integer from 0 to 4294967295"
    train = [
        ("--beta -1", ["--beta", "-1"], beta), ("--beta nan", ["--beta", "nan"], beta),
        ("--beta abc", ["--beta", "abc"], beta), ("--k 0", ["--k", "0"], k), ("--k 2.5", ["--k", "2.5"], k),
        ("--beta -inf (not read as an option)", ["--beta", "-inf"], beta),
        ("--beta -1e-3 (not read as an option)", ["--beta", "-1e-3"], beta),
        ("--epochs of 40 digits", ["--epochs", "1" + "0" * 39], epochs), ("--seed -3", ["--seed", "-3"], seed),
        ("--model resnet", ["--model", "resnet"], "invalid choice"),
        ("--covariance spherical", ["--covariance", "spherical"], "invalid choice"),
        ("--beta with --model deterministic", ["--model", "deterministic", "--beta", "0.1"], "vib only"),
        ("--device tpu", ["--device", "tpu"], "unknown device 'tpu'"),
        ("--device ''", ["--device", ""], "unknown device ''"),
        ("--device cuda:7 (not here)", ["--device", "cuda:7"], "cuda:7"),
        ("--out ''", ["--out", ""], "--out is empty"), ("--out a file", ["--out", "a-file"], "is a file"),
        ("--out under a file", ["--out", "a-file/runs"], "cannot be created"),
        ("--out ~nouser", ["--out", "~nosuchuser-probe/runs"], "names no user"),
        ("--out a 300-byte name", ["--out", "a" * 300], "longer than 255 bytes"),
        ("--out a broken link", ["--out", "dangling"], "broken symbolic link"),
        ("--out a loop of links", ["--out", "loop1"], "broken symbolic link"),
        ("--data missing", ["--data", "missing"], "is not a readable folder"),
        ("--data a file", ["--data", "a-file"], "is not a readable folder"),
        ("--data named with a newline", ["--data", "no\nsuch"], "is not a readable folder"),
        ("--data empty, download impossible", ["--data", "empty-data"], "MNIST not found"),
    ]
    base = REPRO[:4] + ["--device", "cpu", "--no-progress"]
    reproduce = [
        ("unknown experiment", ["reproduce", "k3", "--epochs", "1"], "unknown experiment 'k3'"),
        ("experiment named with a newline", ["reproduce", "k2\nk3", "--epochs", "1"], "unknown experiment"),
        ("--only matching nothing", [*base, "--only", "zzz*"], "matches no run"),
        ("--only: one pattern of two matches nothing", [*base, "--only", "vib-beta1-*seed0,nothing*"],
         "'nothing*' matches no run"),
        ("--epochs 0", [*base, "--epochs", "0"], epochs),
        ("--pass-model-epochs 0", [*base, "--pass-model-epochs", "0"], "pass-model-epochs must be an integer"),
        ("--compile bogus", [*base, "--compile", "bogus"], "invalid choice"),
        ("--results ''", [*base, "--results", ""], "--results is empty"),
        ("--results under a file", [*base, "--results", "a-file/sub"], "cannot be created"),
        ("--cache a broken link", [*base, "--cache", "dangling"], "broken symbolic link"),
        ("--cache a file", [*base, "--only", "vib-beta1-*seed0", "--cache", "a-file"], "a-file"),
        ("--data missing", [*base, "--data", "missing"], "is not a readable folder"),
        ("--only ',' (an empty pattern)", [*base, "--only", ","], "empty pattern"),
        ("--only ' ' (an empty pattern)", [*base, "--only", " "], "empty pattern"),
    ]
    cases = [Case("input", f"train {name}", refused(p, name, [*TRAIN, *extra], words))
             for name, extra, words in train]
    cases += [Case("input", f"reproduce {name}", refused(p, name, args, words)) for name, args, words in reproduce]
    cases.append(Case("input", "attack-study --only ',' (an empty pattern)",
                      refused(p, "attack-only-comma", ["attack-study", "--only", ","], "empty pattern")))

    def cache_env_a_file():
        """$VIBTOOLS_CACHE naming a file: one line before any pass is announced, nothing created."""
        folder = bad_input_folder(p, "cache-env-a-file")
        before = listing(folder)
        child = p.cli(folder, REPRO_ONE, env={"VIBTOOLS_CACHE": str(folder / "a-file")})
        one_line(child, 2, "a-file", "is not a folder")
        check(not child.out.strip(), f"stdout before the refusal: {brief(child.out)}")
        unchanged(before, listing(folder), "the working folder")

    cases.append(Case("input", "reproduce with $VIBTOOLS_CACHE a file: refused before any pass", cache_env_a_file))
    cases += [Case("input", f"API {name}", fn, api=True) for name, fn in api_input_cases(p)]
    return cases


def api_input_cases(p: Probe) -> list[tuple[str, Callable[[], None]]]:
    """Bad TrainConfig fields and train() options: a one-line ValueError, and no cache folder created."""
    fields = [("beta=nan", {"beta": math.nan}, "beta must be"), ("k=True", {"k": True}, "k must be"),
              ("epochs=0", {"epochs": 0}, "epochs must be"),
              ("lr=0", {"lr": 0}, "lr must be a finite number > 0"),
              ("adam_betas=(0.5,)", {"adam_betas": (0.5,)}, "adam_betas must be two numbers"),
              ("covariance='spherical'", {"covariance": "spherical"}, "covariance must be one of")]
    def refused_config(make: Callable, words: str) -> Callable[[], None]:
        """make() raises a one-line ValueError holding ``words``."""
        def run():
            raises(make, (ValueError,), words)
        return run

    cases = [(f"TrainConfig({name})", refused_config(lambda kw=kw: vt.TrainConfig(**kw), w)) for name, kw, w in fields]
    cases.append(("TrainConfig.from_dict with an unknown field",
                  refused_config(lambda: vt.TrainConfig.from_dict({"k": 4, "colour": "red"}), "unknown config fields")))

    def option(kwargs: dict, words: str, configs=None) -> Callable[[], None]:
        """train_sweep with a bad option: ValueError naming it, and nothing created."""
        def run():
            folder = p.folder("api-option")
            data = p.tensors()
            raises(lambda: vt.train_sweep(configs or [vt.TrainConfig(k=4, epochs=1)], data, device="cpu",
                                          cache=folder / "cache", progress=False, **kwargs), (ValueError,), words)
            check(not os.listdir(folder), f"created {os.listdir(folder)}")
        return run

    def quick(value: str) -> Callable[[], None]:
        """$VIBTOOLS_QUICK set to what is not a setting: the chapters' settings() refuse it (it meant the full
        hours-long settings)."""
        def run():
            with env_set("VIBTOOLS_QUICK", value):
                raises(vt.book.settings, (ValueError,), f"VIBTOOLS_QUICK={value!r} is not a setting")
        return run

    cases += [(f"$VIBTOOLS_QUICK={value!r}: settings()", quick(value)) for value in ("garbage", "on")]
    cases += [("train(checkpoint_every=0)", option({"checkpoint_every": 0}, "checkpoint_every must be")),
              ("batch_size 5000 on 600 images", option({}, "larger than the 600 training images",
                                                       [vt.TrainConfig(k=4, epochs=1, batch_size=5000)])),
              ("train_sweep of K=4 and K=8", option({}, "must share k",
                                                    [vt.TrainConfig(k=4, epochs=1), vt.TrainConfig(k=8, epochs=1)]))]
    return cases


# ----------------------------------------------------------------------------- 2. damaged state
def retrained(p: Probe, folder: Path, *words: str, extra: str = "ignoring stored run") -> Child:
    """Rerun the small train in ``folder``: exit 0, one warning line holding ``words``, the reference's lines."""
    child = p.cli(folder, [*TRAIN, "--out", "out"], timeout=240)
    one_line(child, 0, extra, *words)
    check(child.results_lines() == p.small_run()[1], f"lines differ from the uninterrupted run: "
                                                     f"{brief(' | '.join(child.results_lines()))}")
    return child


def damaged_run_cases(p: Probe) -> list[Case]:
    """Run files of the command line damaged or replaced, and in-process run files damaged in every way checked."""
    def cli_case(name: str, damage: Callable[[Path, Path], None], *words: str) -> Case:
        """Damage the run file of a copy of the finished small run; the rerun reports it and retrains."""
        def run():
            folder = p.copy_of(p.small_run()[0], name)
            run_file = next((folder / "out").glob("*.pt"))
            damage(folder, run_file)
            retrained(p, folder, *words)
            check(load_checkpoint(run_file)["epochs_done"] == 2, "the run file is not the retrained run")
        return Case("damaged", f"train: {name}", run)

    def truncate(folder, path):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    def flip(folder, path):
        blob = bytearray(path.read_bytes())
        for i in range(len(blob) // 2, len(blob) // 2 + 64):
            blob[i] ^= 0xFF
        path.write_bytes(bytes(blob))

    def fifo(folder, path):
        path.unlink()
        os.mkfifo(path)

    def link(folder, path):
        (folder / "victim.txt").write_text("a file of the user's\n")
        path.unlink()
        path.symlink_to(folder / "victim.txt")

    def link_kept():
        """A run file that is a link to a user's file: reported, retrained, the user's file left as it was."""
        folder = p.copy_of(p.small_run()[0], "link-victim")
        link(folder, next((folder / "out").glob("*.pt")))
        retrained(p, folder)
        check((folder / "victim.txt").read_text() == "a file of the user's\n", "the user's file was changed")

    def nan_weights(folder, path):
        """The EMA weights of a finished run set to NaN, the checksum recomputed (a diverged run stored as
        finished)."""
        payload = torch.load(path, map_location="cpu", weights_only=True)
        name = next(iter(payload["ema_model"]))
        payload["ema_model"][name] = payload["ema_model"][name].clone().fill_(math.nan)
        save_checkpoint(path, payload)

    cases = [cli_case("run file truncated", truncate, "not a readable vibtools checkpoint"),
             cli_case("run file with 64 flipped bytes", flip),
             cli_case("NaN EMA weights, checksum recomputed", nan_weights, "not finite"),
             cli_case("a FIFO in place of the run file", fifo, "is not a regular file"),
             Case("damaged", "train: run file a link to a user's file", link_kept)]

    def folder_in_place():
        """A folder of the user's at the run's path: one line, the folder and its contents kept."""
        folder = p.copy_of(p.small_run()[0], "folder-in-place")
        run_file = next((folder / "out").glob("*.pt"))
        run_file.unlink()
        run_file.mkdir()
        (run_file / "notes.txt").write_text("mine\n")
        child = p.cli(folder, [*TRAIN, "--out", "out"], timeout=240)
        one_line(child, (0, 1, 2))
        check((run_file / "notes.txt").read_text() == "mine\n", "the folder's contents were changed")

    def lock_folder():
        """A folder at the run's lock-file path: one line, the folder kept."""
        folder = p.copy_of(p.small_run()[0], "lock-folder")
        run_file = next((folder / "out").glob("*.pt"))
        run_file.unlink()
        lock = run_file.with_name(f".{run_file.name}.lock")
        lock.unlink()
        lock.mkdir()
        child = p.cli(folder, [*TRAIN, "--out", "out"], timeout=240)
        one_line(child, (1, 2))
        check(lock.is_dir(), "the folder at the lock's path is gone")

    def history_damaged():
        """A damaged history JSON beside a finished run: rewritten, exit 0, nothing on stderr."""
        folder = p.copy_of(p.small_run()[0], "history")
        run_file = next((folder / "out").glob("*.pt"))
        run_file.with_suffix(".json").write_text("{ half")
        child = p.cli(folder, [*TRAIN, "--out", "out"], timeout=240)
        quiet(child)
        check(json.loads(run_file.with_suffix(".json").read_text())["final"], "the history was not rewritten")

    cases += [Case("damaged", "train: a folder of the user's in place of the run file", folder_in_place),
              Case("damaged", "train: a folder in place of the run's lock file", lock_folder),
              Case("damaged", "train: history JSON beside a finished run damaged", history_damaged)]
    return cases + api_damaged_cases(p)


def api_damaged_cases(p: Probe) -> list[Case]:
    """In-process run files damaged: each reported in one warning and retrained to a fresh run's result."""
    def edit(change: Callable[[dict], None]) -> Callable[[Path], None]:
        """A damage that edits the payload and recomputes the checksum (a hand edit that checksums pass)."""
        def damage(path: Path) -> None:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            change(payload)
            save_checkpoint(path, payload)
        return damage

    def other_format(path: Path) -> None:
        body = torch.load(path, map_location="cpu", weights_only=True)
        body["format"] = "other-format"
        body.pop("checksum")
        body["checksum"] = digest(body)
        torch.save(body, path)

    def wrong_shape(payload: dict) -> None:
        name = next(iter(payload["ema_model"]))
        payload["ema_model"][name] = torch.zeros(3, 3)

    def case(name: str, which: str, damage: Callable[[Path], None], *words: str) -> Case:
        def run():
            runs = p.api_runs()
            folder = p.folder(name) / "cache"
            folder.mkdir()
            path = folder / runs[which].name
            shutil.copy(runs[which], path)
            damage(path)
            with warnings_caught() as caught:
                result = vt.train(API_CFG, p.tensors(), device="cpu", cache=folder, progress=False)
            one_warning(caught, "ignoring stored", *words)
            check(result.final == runs["final"], "the retrained run differs from a fresh one")
            check(load_checkpoint(path)["epochs_done"] == 2, "the run file was not rewritten")
        return Case("damaged", f"API: {name}", run, api=True)

    return [
        case("finished run file of 0 bytes", "finished", lambda p_: p_.write_bytes(b""), "not a readable"),
        case("a torch.save of a list", "finished", lambda p_: torch.save([1, 2, 3], p_), "has format 'list'"),
        case("another format, checksum recomputed", "finished", other_format, "format 'other-format'"),
        case("results version 1, checksum recomputed", "finished", edit(lambda d: d.update(version=1)),
             "results version 1"),
        case("a tensor of the wrong shape", "finished", edit(wrong_shape), "of shape (3, 3)"),
        case("a history column missing", "finished", edit(lambda d: d["history"].pop("train_err")),
             "history['train_err']"),
        case("made on other data (fingerprint edited)", "finished", edit(lambda d: d.update(data="0" * 16)),
             "different configuration or data set"),
        case("partial run: schedule at epoch 0 of 1 saved", "partial",
             edit(lambda d: d["training"]["scheduler"].update(last_epoch=0)), "learning-rate schedule at epoch 0"),
        case("partial run: EMA steps != Adam steps", "partial",
             edit(lambda d: d["training"]["ema"].update(steps=d["training"]["ema"]["steps"] + 1)), "Adam steps but"),
        case("partial run: training state missing", "partial", edit(lambda d: d.update(training=None)),
             "lacks the training state"),
    ]


def mnist_cases(p: Probe) -> list[Case]:
    """Damaged MNIST files: one-line MNISTFileError (API) or exit 2 (CLI), the data folder left as it was."""
    raw = Path("MNIST", "raw")

    def truncate(root: Path) -> None:
        f = root / raw / "train-images-idx3-ubyte"
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])

    def longer(root: Path) -> None:
        with open(root / raw / "train-images-idx3-ubyte", "ab") as fh:
            fh.write(b"0123456789")

    def magic(root: Path) -> None:
        f = root / raw / "train-labels-idx1-ubyte"
        f.write_bytes(b"\x00\x00\x08\x03" + f.read_bytes()[4:])

    def no_images(root: Path) -> None:
        write_idx(root / raw / "t10k-images-idx3-ubyte", torch.zeros(0, 28, 28, dtype=torch.uint8))

    def label_255(root: Path) -> None:
        f = root / raw / "train-labels-idx1-ubyte"
        blob = bytearray(f.read_bytes())
        blob[8 + 17] = 255
        f.write_bytes(bytes(blob))

    def mismatch(root: Path) -> None:
        write_idx(root / raw / "t10k-labels-idx1-ubyte", torch.zeros(199, dtype=torch.uint8))

    def bad_gzip(root: Path) -> None:
        (root / raw / "train-labels-idx1-ubyte").unlink()
        (root / raw / "train-labels-idx1-ubyte.gz").write_bytes(b"this is not gzip at all")

    def short_gzip(root: Path) -> None:
        f = root / raw / "train-images-idx3-ubyte"
        blob = gzip.compress(f.read_bytes())
        f.unlink()
        f.with_name(f.name + ".gz").write_bytes(blob[: len(blob) // 2])

    def bomb(root: Path) -> None:
        """The training images as a gzip bomb: a header promising 100 000 images, then 80 MiB of zeros (80 KB
        compressed)."""
        for old in (root / raw).glob("train-images-idx3-ubyte*"):
            old.unlink()
        header = (0x803).to_bytes(4, "big") + (100_000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
        (root / raw / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + bytes(80 << 20), 1))

    def damaged(name: str, damage: Callable[[Path], None], check: Callable[[Path], object], what: str) -> Callable:
        """A case: a copy of the small MNIST in a fresh folder, damaged, then ``check(folder)``; nothing changes."""
        def run():
            folder = p.folder(name)
            shutil.copytree(p.small, folder / "data")
            damage(folder / "data")
            before = listing(folder)
            check(folder)
            unchanged(before, listing(folder), what)
        return run

    def api(name: str, damage: Callable[[Path], None], *words: str) -> Case:
        def check(folder: Path) -> None:
            raises(lambda: vt.load_mnist(folder / "data"), (vt.MNISTFileError,), *words)
        return Case("damaged", f"API MNIST: {name}", damaged(name, damage, check, "the data folder"), api=True)

    def cli(name: str, damage: Callable[[Path], None], *words: str) -> Case:
        def check(folder: Path) -> None:
            one_line(p.cli(folder, [*TRAIN, "--data", "data", "--out", "out"]), 2, *words)
        return Case("damaged", f"train MNIST: {name}", damaged(name, damage, check, "the working folder"))

    return [api("images truncated", truncate, "is truncated"),
            api("labels with an images magic number", magic, "bad magic number"),
            api("a header saying 0 images", no_images, "holds no images"),
            api("a label 255", label_255, "outside 0-9 (found 255)"),
            api("199 labels for 200 images", mismatch, "199 labels for 200 images"),
            api("labels .gz that is not gzip", bad_gzip, "not a valid gzip"),
            api("images .gz cut in half", short_gzip, "ends early"),
            api("images .gz a bomb of 80 MiB", bomb, "decompresses to more than 64 MiB"),
            cli("a label 255", label_255, "outside 0-9"),
            cli("images .gz a bomb of 80 MiB", bomb, "decompresses to more than 64 MiB")]


# ----------------------------------------------------------------------------- 3. interruptions
def saved_count(line: str) -> int | None:
    """The epochs an interrupt's line says are saved (None when it does not say)."""
    if "nothing was saved" in line:
        return 0
    m = re.search(r"epochs? 1(?:-(\d+))? (?:is|are) saved", line)
    return (int(m.group(1)) if m.group(1) else 1) if m else None


def loading_torch(running: Running, timeout: float = 120) -> bool:
    """Wait until the child maps torch's libraries (it is inside vibtools' imports, past Python's own start)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and running.proc.poll() is None:
        with contextlib.suppress(OSError):
            if "libtorch" in Path(f"/proc/{running.proc.pid}/maps").read_text():
                return True
        time.sleep(0.05)
    return False


def interrupt_cases(p: Probe) -> list[Case]:
    """SIGINT/SIGTERM/SIGKILL at several moments of train and reproduce; the rerun equals an uninterrupted run."""
    def at(running: Running, when: tuple, runs: Path | None = None) -> None:
        """Wait for the moment: ("torch", s) s after torch starts loading, ("saved", s) s after the first run file
        appears in ``runs``, (prefix, s) s after a stdout line that starts with prefix."""
        prefix, delay = when
        if prefix == "torch":
            check(loading_torch(running), "the child never loaded torch")
        elif prefix == "saved":
            end = time.monotonic() + 240
            while not (runs.is_dir() and list(runs.glob("*.pt"))) and running.proc.poll() is None:
                check(time.monotonic() < end, "no run file was saved in 240 s")
                time.sleep(0.05)
        else:
            check(running.wait_for(prefix), f"the line {prefix!r} never came")
        time.sleep(delay)

    def interrupted(child: Child, sig: int, runs: Path, printed: int) -> str:
        """The interrupted child's status and line, and the epochs it kept; returns a note of what was saved."""
        if sig == signal.SIGKILL:
            check(child.code == -signal.SIGKILL, f"expected to be killed; got {child.show()}")
        else:
            line = one_line(child, 130 if sig == signal.SIGINT else 143, "interrupted")
            said = saved_count(line)
            check(said is None or epochs_done(runs) >= said, f"the line says {said} epoch(s) saved, the file holds "
                                                             f"{epochs_done(runs)}")
        check(epochs_done(runs) >= printed, f"{printed} epoch line(s) printed, {epochs_done(runs)} saved")
        return f"stopped with {epochs_done(runs)} epoch(s) saved"

    def starting(args: list[str], sig: int) -> Callable[[], None]:
        """Interrupted while importing torch: one line, and nothing created (there is nothing to resume)."""
        def run():
            folder = p.folder(f"int-start-{args[0]}-{sig}")
            running = p.start(folder, args, data=p.big)
            at(running, ("torch", 0.5))
            running.send(sig)
            one_line(running.finish(), 130 if sig == signal.SIGINT else 143, "interrupted")
            check(not os.listdir(folder), f"created {os.listdir(folder)}")
        return run

    def train(sig: int, when: tuple, times: int = 1, gap: float = 0.0) -> Callable[[], None]:
        def run():
            reference = p.big_run()
            folder = p.folder(f"int-train-{sig}-{when}-{times}")
            running = p.start(folder, [*BIG, "--out", "out"], data=p.big)
            at(running, when)
            for _ in range(times):  # several: a user pressing Ctrl-C again while the first one unwinds
                running.send(sig)
                time.sleep(gap)
            child = running.finish()
            printed = len([x for x in child.results_lines() if x[0].isdigit()])
            if when[0] == "2:" and child.code == 0:  # the run ended before the signal came: nothing to check
                quiet(child)
                note = "the run had ended before the signal came"
            else:
                note = interrupted(child, sig, folder / "out", printed)
            again = p.cli(folder, [*BIG, "--out", "out"], data=p.big)
            quiet(again, "the rerun: ")
            check(again.results_lines() == reference, f"the rerun's lines differ from an uninterrupted run's: "
                                                      f"{brief(' | '.join(again.results_lines()))}")
            no_tmp(folder)
            return note
        return run

    def reproduce(sig: int, when: tuple, times: int = 1, gap: float = 0.0) -> Callable[[], None]:
        def run():
            reference = p.big_record()
            folder = p.folder(f"int-repro-{sig}-{when}-{times}")
            running = p.start(folder, REPRO_BIG, data=p.big)
            at(running, when, folder / "cache")
            for _ in range(times):
                running.send(sig)
                time.sleep(gap)
            note = interrupted(running.finish(), sig, folder / "cache", 0)
            quiet(p.cli(folder, REPRO_BIG, data=p.big), "the rerun: ")
            record = json.loads((folder / "results" / "k2" / "vib-beta1-k2-e3-seed0.json").read_text())
            for key in ("final", "eval_noise"):
                check(record[key] == reference[key], f"the rerun's {key!r} differs from an uninterrupted run's")
            no_tmp(folder)
            return note
        return run

    int_, term, kill = signal.SIGINT, signal.SIGTERM, signal.SIGKILL
    moments = [(int_, ("0:", 0), "right after epoch 1's line"), (int_, ("0:", 1.0), "1 s into epoch 2"),
               (int_, ("2:", 0), "during the final evaluation"), (term, ("0:", 1.5), "1.5 s into epoch 2"),
               (kill, ("0:", 1.0), "1 s into epoch 2")]
    return [*(Case("interrupt", f"{args[0]}: {signal.Signals(s).name} while importing torch", starting(args, s))
              for args in ([*BIG, "--out", "out"], REPRO_BIG) for s in (int_, term)),
            *(Case("interrupt", f"train: {signal.Signals(s).name} {what}, rerun", train(s, when))
              for s, when, what in moments),
            Case("interrupt", "reproduce: SIGINT as epoch 1 is saved, rerun", reproduce(int_, ("saved", 0))),
            Case("interrupt", "reproduce: SIGTERM 1 s after epoch 1 is saved, rerun", reproduce(term, ("saved", 1.0))),
            Case("interrupt", "reproduce: SIGKILL 1 s after epoch 1 is saved, rerun", reproduce(kill, ("saved", 1.0))),
            *(Case("interrupt", f"train: three SIGINTs {1000 * gap:.0f} ms apart right after epoch 1's line, rerun",
                   train(int_, ("0:", 0), 3, gap)) for gap in (0.0, 0.02, 0.05)),
            Case("interrupt", "reproduce: three SIGINTs 20 ms apart as epoch 1 is saved, rerun",
                 reproduce(int_, ("saved", 0), 3, 0.02))]


# ----------------------------------------------------------------------------- 4. concurrency
def only_warnings(child: Child) -> bool:
    """True when every stderr line of ``child`` is a one-line warning (no error, no traceback)."""
    return all(line.startswith("python -m vibtools: warning: ") for line in child.lines()) and "Traceback" not in \
        child.err


def repeated_warnings(children: list[Child]) -> str | None:
    """A note when a process printed more than one warning line (true, but repeated), else None."""
    counts = [len(c.lines()) for c in children]
    return f"stderr lines per process {counts}: a waiting process warns at each wait" if max(counts) > 1 else None


def concurrency_cases(p: Probe) -> list[Case]:
    """2 and 4 processes training one run into one --out (several rounds), and 2 reproduce into one results/."""
    def train(n: int, round_: int) -> Callable[[], None]:
        def run():
            reference = p.small_run()[1]
            folder = p.folder(f"concurrent-{n}-{round_}")
            children = [r.finish(400) for r in [p.start(folder, [*TRAIN, "--out", "out"]) for _ in range(n)]]
            for i, child in enumerate(children):
                check(child.code == 0 and only_warnings(child), f"process {i + 1} of {n}: {child.show()}")
                check(child.results_lines() == reference, f"process {i + 1} of {n} printed other lines")
            no_tmp(folder)
            return repeated_warnings(children)
        return run

    def reproduce():
        folder = p.folder("concurrent-reproduce")
        children = [r.finish(400) for r in [p.start(folder, REPRO) for _ in range(2)]]
        for i, child in enumerate(children):
            check(child.code == 0 and only_warnings(child), f"process {i + 1} of 2: {child.show()}")
        for name in (BETA1, BETA01):
            load_results(folder / "results" / "k2" / name)
        no_tmp(folder)
        return repeated_warnings(children)

    return [*(Case("concurrency", f"2 trains of one run into one --out, round {r}", train(2, r)) for r in (1, 2, 3)),
            Case("concurrency", "4 trains of one run into one --out", train(4, 1)),
            Case("concurrency", "2 reproduce of the same runs into one results/", reproduce)]


# ----------------------------------------------------------------------------- 5. security
def tar_archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], level: int = 6) -> str:
    """Write a .tar.gz of ``members`` (info, data) and return its file:// URL."""
    with tarfile.open(path, "w:gz", compresslevel=level) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path.as_uri()


def member(name: str, data: bytes | None = b"{}", kind: bytes = tarfile.REGTYPE, target: str = "") -> tuple:
    """One archive member: a file holding ``data``, or a link (``kind``) to ``target``."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, data if kind == tarfile.REGTYPE else None


def security_cases(p: Probe) -> list[Case]:
    """Results archives that try to write outside their folder or too much, and run files holding pickled code."""
    top = "vib-book-main/results"
    good = member(f"{top}/table1/good.json")

    safe = [".complete", "table1", "table1/good.json"]

    def fetch(name: str, members: Callable[[Path], list], *, error: str | None = None, expect=safe) -> Case:
        """fetch_results of an archive: ``expect`` in dest, no links (or a one-line ResultsError naming
        ``error``), nothing written outside dest."""
        def run():
            folder = p.folder(name)
            (folder / "outside").mkdir()
            url = tar_archive(folder / "repo.tar.gz", members(folder), level=1)
            dest = folder / "fetched"
            before = listing(folder)
            try:
                vt.results.fetch_results(url, dest)
                check(error is None, "no ResultsError: the archive was accepted")
                found = sorted(str(q.relative_to(dest)) for q in dest.rglob("*"))
                check(found == expect and not any(q.is_symlink() for q in dest.rglob("*")), f"dest holds {found}")
            except ResultsError as exc:
                check("\n" not in str(exc), "a ResultsError of several lines")
                check(error is not None and error in str(exc), f"ResultsError: {brief(exc)}")
                check(not dest.exists(), "dest was created")
            after = {k: v for k, v in listing(folder).items() if k != "fetched" and not k.startswith("fetched/")}
            unchanged(before, after, "the folder outside dest")
            check(not list(Path("/tmp").glob("escape-probe-*")), "a file escaped to /tmp")
        return Case("security", f"fetch_results: {name}", run, api=True)

    def huge(folder: Path) -> list:
        return [good, member(f"{top}/table1/huge.json", b"{" + b" " * (17 * 2**20) + b"}")]

    def too_much(folder: Path) -> list:
        blob = b"{" + b" " * (15 * 2**20 + 2**19) + b"}"
        return [member(f"{top}/t/{i}.json", blob) for i in range(17)]

    def user_files_in_dest():
        """An incomplete dest holding a file of the user's: kept (or refused in one line)."""
        folder = p.folder("dest-with-user-files")
        url = tar_archive(folder / "repo.tar.gz", [good])
        dest = folder / "my-results"
        dest.mkdir()
        (dest / "notes.txt").write_text("mine\n")
        try:
            vt.results.fetch_results(url, dest)
        except ResultsError as exc:
            check("\n" not in str(exc), "a ResultsError of several lines")
        check((dest / "notes.txt").is_file(), "the user's file in dest was deleted")

    cases = [
        fetch("a member ../../escape", lambda f: [good, member(f"{top}/../../escape-probe-x.json")]),
        fetch("an absolute member", lambda f: [good, member(str(f / "outside" / "abs.json"))]),
        fetch("a symlink member to /etc/passwd",
              lambda f: [good, member(f"{top}/table1/link.json", kind=tarfile.SYMTYPE, target="/etc/passwd")]),
        fetch("a hard-link member to /etc/passwd", lambda f: [good, member(f"{top}/table1/hard.json",
                                                                          kind=tarfile.LNKTYPE, target="/etc/passwd")]),
        fetch("a linked folder, then a file through it",
              lambda f: [member(f"{top}/evil", kind=tarfile.SYMTYPE, target=str(f / "outside")),
                         member(f"{top}/evil/x.json"), good], expect=[*safe[:1], "evil", "evil/x.json", *safe[1:]]),
        fetch("a 17 MiB member", huge, error="more results than a results folder does"),
        fetch("17 members of 15.5 MiB (264 MiB in all)", too_much, error="more results than a results folder does"),
        fetch("30 000 files of 2 bytes", lambda f: [member(f"{top}/table1/r{i}.json") for i in range(30_000)],
              error=f"more than {vt.results.MAX_FILES} results files"),
        Case("security", "fetch_results: dest holding a file of the user's", user_files_in_dest, api=True),
    ]

    def not_gzip():
        folder = p.folder("not-gzip")
        (folder / "repo.tar.gz").write_bytes(os.urandom(4096))
        raises(lambda: vt.results.fetch_results((folder / "repo.tar.gz").as_uri(), folder / "fetched"),
               (ResultsError,), "could not fetch")
        check(not (folder / "fetched").exists(), "dest was created")

    cases.append(Case("security", "fetch_results: random bytes, not a .tar.gz", not_gzip, api=True))
    return cases + pickle_cases(p)


def pickle_cases(p: Probe) -> list[Case]:
    """Run files holding a pickled object whose loading would run code: refused, the code never runs."""
    def evil_file(folder: Path, path: Path, how: str) -> Path:
        """Write a malicious run file at ``path``; return the marker its code would create."""
        marker = folder / "PWNED"
        if how == "nested":
            torch.save({"format": "vibtools-run", "version": vt.RESULTS_VERSION, "config": Evil(marker)}, path)
        else:
            torch.save(Evil(marker), path, _use_new_zipfile_serialization=how != "legacy")
        return marker

    def load_run(how: str) -> Callable[[], None]:
        def run():
            folder = p.folder(f"pickle-{how}")
            marker = evil_file(folder, folder / "run.pt", how)
            raises(lambda: vt.load_run(folder / "run.pt", device="cpu"), (CheckpointError,), "run.pt")
            check(not marker.exists(), "the pickled code ran")
        return run

    def train_api():
        runs = p.api_runs()
        folder = p.folder("pickle-train") / "cache"
        folder.mkdir()
        marker = evil_file(folder.parent, folder / runs["finished"].name, "zip")
        with warnings_caught() as caught:
            result = vt.train(API_CFG, p.tensors(), device="cpu", cache=folder, progress=False)
        one_warning(caught, "ignoring stored run")
        check(not marker.exists(), "the pickled code ran")
        check(result.final == runs["final"], "the retrained run differs from a fresh one")

    def train_cli():
        folder = p.copy_of(p.small_run()[0], "pickle-cli")
        run_file = next((folder / "out").glob("*.pt"))
        marker = evil_file(folder, run_file, "zip")
        retrained(p, folder)
        check(not marker.exists(), "the pickled code ran")

    return [Case("security", "load_run: a pickled object (zip format)", load_run("zip"), api=True),
            Case("security", "load_run: a pickled object (legacy format)", load_run("legacy"), api=True),
            Case("security", "load_run: an object inside a run-like dict", load_run("nested"), api=True),
            Case("security", "API train: a pickled object as the cached run", train_api, api=True),
            Case("security", "train: a pickled object as the run file in --out", train_cli)]


# ----------------------------------------------------------------------------- 6. resource limits
def resource_cases(p: Probe) -> list[Case]:
    """A full disk (RLIMIT_FSIZE), a memory limit (RLIMIT_AS), read-only and unwritable folders."""
    full = {"limits": {"RLIMIT_FSIZE": 2**20}, "xfsz": True}
    none = {"limits": {"RLIMIT_FSIZE": 0}, "xfsz": True}

    def disk_train():
        folder = p.folder("disk-train")
        one_line(p.cli(folder, [*TRAIN, "--out", "out"], **full), 1, "could not write", "File too large")
        no_tmp(folder)

    def disk_resume():
        """A partial run (1 of 2 epochs) kept byte for byte when the disk is full; the rerun finishes it."""
        folder = p.folder("disk-resume")
        partial = p.once("cli-partial", lambda: vt.train(vt.model_config("vib", k=4, epochs=2, seed=0), p.tensors(),
                                                         device="cpu", cache=p.root / "cli-partial", progress=False,
                                                         stop_after=1).path)
        shutil.copytree(partial.parent, folder / "out")
        saved = file_hash(folder / "out" / partial.name)
        one_line(p.cli(folder, [*TRAIN, "--out", "out"], **full), 1, "could not write")
        check(file_hash(folder / "out" / partial.name) == saved, "the saved epoch was changed")
        no_tmp(folder)
        again = p.cli(folder, [*TRAIN, "--out", "out"])
        quiet(again, "the rerun: ")
        check(again.results_lines() == p.small_run()[1], "the resumed run differs from an uninterrupted one")
        check(len(list((folder / "out").glob("*.pt"))) == 1, "the command line trained another run than the saved")

    def disk_reproduce():
        """A full disk while reproducing: one line that names the file it could not write (it named none)."""
        folder = p.folder("disk-reproduce")
        line = one_line(p.cli(folder, REPRO_ONE, **full), 1, "could not write", "File too large")
        named = re.match(r".*could not write (\S+) \(", line)
        check(named and Path(named.group(1)).is_relative_to(folder) and Path(named.group(1)).suffix in (".pt", ".json"),
              f"the line names no file under the working folder: {line}")
        no_tmp(folder)

    def pass_kept_whole():
        """The disk fills between two models' saves at the end of a stacked pass: neither is stored as finished (one
        finished and one partial split the pass on resume), and the rerun ends as one pass of both models."""
        import vibtools.store as store

        configs = [vt.TrainConfig(k=4, hidden=24, epochs=2, beta=b) for b in (1e-3, 1e-2)]  # hidden 24: these only
        folder = p.folder("pass-kept-whole") / "cache"
        real_blob, finals = store._checkpoint_blob, []

        def full_at_the_second_finished_file(payload):
            if payload.get("final") is not None and payload.get("config", {}).get("hidden") == 24:
                finals.append(payload)
                if len(finals) == 2:
                    raise OSError(28, "No space left on device")
            return real_blob(payload)

        store._checkpoint_blob = full_at_the_second_finished_file
        try:
            raises(lambda: vt.train_sweep(configs, p.tensors(), device="cpu", cache=folder, progress=False),
                   (OSError,), "No space left")
        finally:
            store._checkpoint_blob = real_blob
        files = sorted(folder.glob("*.pt"))
        check(len(files) == 2, f"{len(files)} run files")
        check([load_checkpoint(f).get("final") for f in files] == [None, None], "a model of the pass is finished")
        no_tmp(folder)
        done = vt.train_sweep(configs, p.tensors(), device="cpu", cache=folder, progress=False)
        passes = {(r.timing["pass"]["id"], r.timing["pass"]["models"]) for r in done}
        check(len(passes) == 1 and next(iter(passes))[1] == 2, f"the rerun's passes: {passes}")

    def disk_history():
        """A finished run whose history JSON is missing, on a full disk: one line, the run file kept."""
        folder = p.copy_of(p.small_run()[0], "disk-history")
        run_file = next((folder / "out").glob("*.pt"))
        run_file.with_suffix(".json").unlink()
        saved = file_hash(run_file)
        one_line(p.cli(folder, [*TRAIN, "--out", "out"], **none), 1, "could not write")
        check(file_hash(run_file) == saved, "the run file was changed")
        no_tmp(folder)

    def memory_limit():
        folder = p.folder("memory-limit")
        one_line(p.cli(folder, ["train", "--k", "20000", "--epochs", "1", "--device", "cpu", "--no-progress",
                                "--out", "out"], limits={"RLIMIT_AS": 5 * 2**30}), 1, "ran out of memory")

    def memory_check():
        folder = p.folder("memory-check")
        one_line(p.cli(folder, [*TRAIN, "--k", "400000000", "--out", "out"]), 2, "more than the")
        check(not os.listdir(folder), f"created {os.listdir(folder)}")

    def read_only_served():
        """A read-only --out holding the finished run serves it (root: no write may add a byte)."""
        folder = p.copy_of(p.small_run()[0], "read-only")
        out = folder / "out"
        hashes = {q.name: file_hash(q) for q in out.iterdir()}
        before = listing(folder, times=False)
        for q in [*out.iterdir(), out]:
            q.chmod(0o555 if q.is_dir() else 0o444)
        try:
            child = p.cli(folder, [*TRAIN, "--out", "out"], **(none if os.geteuid() == 0 else {}))
        finally:
            out.chmod(0o755)
        quiet(child)
        check(child.results_lines() == p.small_run()[1], "other lines than the run's")
        unchanged(before, listing(folder, times=False))
        check({q.name: file_hash(q) for q in out.iterdir()} == hashes, "a file's contents changed")

    def not_writable(args: list[str], name: str, *words: str, holding: bool = False) -> Callable[[], None]:
        """An --out/--results that the user (root without capabilities) has no permission to write."""
        def run():
            folder = p.copy_of(p.small_run()[0], name) if holding else p.folder(name)
            target = folder / "out"
            target.mkdir(exist_ok=True)
            target.chmod(0o555)
            before = listing(folder)
            child = p.cli(folder, [*args, *(["--out", "out"] if args[0] == "train" else ["--results", "out"])],
                          no_caps=True)
            if holding:
                quiet(child)
                check(child.results_lines() == p.small_run()[1], "other lines than the run's")
            else:
                one_line(child, 2, *words)
            unchanged(before, listing(folder))
        return run

    return [Case("resources", "full disk while training", disk_train),
            Case("resources", "full disk while resuming: the saved epoch stays, rerun resumes", disk_resume),
            Case("resources", "full disk while reproducing: the line names the file", disk_reproduce),
            Case("resources", "API: full disk between a stacked pass's final saves", pass_kept_whole, api=True),
            Case("resources", "full disk writing a finished run's history", disk_history),
            Case("resources", "RLIMIT_AS 5 GiB with --k 20000", memory_limit),
            Case("resources", "--k 400000000: the memory check refuses it", memory_check),
            Case("resources", "read-only --out holding the finished run", read_only_served),
            Case("resources", "--out a folder not writable (no permission)",
                 not_writable(TRAIN, "unwritable-out", "not writable")),
            Case("resources", "--out not writable, holding the finished run",
                 not_writable(TRAIN, "unwritable-served", holding=True)),
            Case("resources", "reproduce --results not writable (no permission)",
                 not_writable(REPRO_ONE, "unwritable-results", "not writable"))]


# ----------------------------------------------------------------------------- 7. reproduce
def reproduce_cases(p: Probe) -> list[Case]:
    """Results files edited, of another run or other data, replaced by folders or links, stale temporary files."""
    def folder_of(name: str) -> tuple[Path, Path]:
        """A copy of the reference results and run cache; and its results/k2."""
        folder = p.copy_of(p.small_results(), name)
        return folder, folder / "results" / "k2"

    def reference(name: str) -> dict:
        return json.loads((p.small_results() / "results" / "k2" / name).read_text())

    def remade(name: str, edit: Callable[[Path], None], *words: str, args=REPRO, data=None) -> Case:
        """Edit results/k2/<name>; the rerun says why it remakes it, in one line, and remakes it."""
        def run():
            folder, k2 = folder_of(f"remade-{name}")
            edit(k2 / name)
            child = p.cli(folder, args, data=data)
            one_line(child, 0, f"remaking {name}", *words)
            record = load_results(k2 / name)
            if data is None:
                check(record["final"] == reference(name)["final"], "the remade record differs from the original")
            else:
                check(record["data"]["fingerprint"] == p.tensors(data).fingerprint(), "not remade on this data")
            no_tmp(folder)
        return run

    def rewrite(change: Callable[[dict], dict]) -> Callable[[Path], None]:
        return lambda path: path.write_text(json.dumps(change(json.loads(path.read_text()))))

    def hand_edit(r: dict) -> dict:
        r["final"]["ema_test"]["avg_err"] = 0.0
        return r

    def other_config(r: dict) -> dict:
        return sealed({**r, "config": {**r["config"], "hidden": 512}})

    def negative_error(r: dict) -> dict:
        return resealed(r, final={**r["final"], "ema_test": {**r["final"]["ema_test"], "avg_err": -0.01}})

    def fifo(path: Path) -> None:
        path.unlink()
        os.mkfifo(path)

    def dev_zero(path: Path) -> None:
        path.unlink()
        path.symlink_to("/dev/zero")

    def folder_in_place():
        """A folder of the user's where a results file goes: one line, the folder and its contents kept."""
        folder, k2 = folder_of("folder-in-place")
        (k2 / BETA01).unlink()
        (k2 / BETA01).mkdir()
        (k2 / BETA01 / "notes.txt").write_text("mine\n")
        child = p.cli(folder, REPRO)
        one_line(child, (0, 1, 2))
        check((k2 / BETA01 / "notes.txt").read_text() == "mine\n", "the folder's contents were changed")

    def stale_tmp():
        """A dead writer's temporary file is removed, a live one's kept; exit 0, quiet."""
        folder, k2 = folder_of("stale-tmp")
        ended = subprocess.Popen([PY, "-c", "pass"])
        ended.wait()
        dead, live = k2 / f".{BETA1}.{ended.pid}.abc.tmp", k2 / f".{BETA1}.{os.getpid()}.def.tmp"
        for q in (dead, live):
            q.write_text("{")
        quiet(p.cli(folder, REPRO))
        check(not dead.exists(), "the dead writer's temporary file is left")
        check(live.exists(), "a live writer's temporary file was removed")

    def linked():
        """A results file that is a link to a user's file: remade, the user's file kept."""
        folder, k2 = folder_of("linked-record")
        (folder / "user.json").write_text('{"mine": 1}')
        (k2 / BETA01).unlink()
        (k2 / BETA01).symlink_to(folder / "user.json")
        one_line(p.cli(folder, REPRO), 0, f"remaking {BETA01}")
        check((folder / "user.json").read_text() == '{"mine": 1}', "the user's file was changed")
        load_results(k2 / BETA01)

    def k2_a_file():
        """results/k2 is a file: one line, the file kept."""
        folder, k2 = folder_of("k2-a-file")
        shutil.rmtree(k2)
        k2.write_text("mine\n")
        one_line(p.cli(folder, REPRO), (1, 2))
        check(k2.read_text() == "mine\n", "the file was changed")

    def nothing_to_do():
        """Everything stored: exit 0, quiet, no results file rewritten."""
        folder, k2 = folder_of("unchanged")
        before = listing(folder)
        quiet(p.cli(folder, REPRO))
        unchanged(before, listing(folder))

    def bad_results(name: str, make: Callable[[Path], None], words: str) -> Callable[[], None]:
        def run():
            folder = p.folder(name)
            make(folder)
            before = listing(folder)
            one_line(p.cli(folder, [*REPRO, "--results", "res"]), 2, words)
            unchanged(before, listing(folder))
        return run

    return [
        Case("reproduce", "a record edited by hand", remade(BETA1, rewrite(hand_edit), "checksum")),
        Case("reproduce", "another run's record under this name",
             remade(BETA01, lambda q: shutil.copy(q.with_name(BETA1), q), "holds the run")),
        Case("reproduce", "'final' a list (checksum resealed)",
             remade(BETA1, rewrite(lambda r: sealed({**r, "final": [1, 2]})), "holds a list as 'final'")),
        Case("reproduce", "a record cut in half",
             remade(BETA1, lambda q: q.write_text(q.read_text()[:500]), "not a readable results file")),
        Case("reproduce", "a record of another config (hidden 512)",
             remade(BETA1, rewrite(other_config), "another config (differs in hidden)")),
        Case("reproduce", "a record made on other data", remade(BETA1, lambda q: None, "made on other data",
                                                                 args=REPRO_ONE, data=p.other)),
        Case("reproduce", "a negative error (checksum resealed)",
             remade(BETA1, rewrite(negative_error), "cannot be true", "avg_err")),
        Case("reproduce", "'data' an empty mapping (checksum resealed)",
             remade(BETA1, rewrite(lambda r: resealed(r, data={})), "data")),
        Case("reproduce", "JSON nested 200 000 deep in a record's place",
             remade(BETA1, lambda q: q.write_text("[" * 200_000 + "]" * 200_000), "nested deeper")),
        Case("reproduce", "a FIFO in a record's place", remade(BETA1, fifo, "not a regular file")),
        Case("reproduce", "a record that is a link to /dev/zero", remade(BETA1, dev_zero, "not a regular file")),
        Case("reproduce", "a folder of the user's in place of a record", folder_in_place),
        Case("reproduce", "stale .tmp of a dead writer; a live writer's kept", stale_tmp),
        Case("reproduce", "a record that is a link to a user's file", linked),
        Case("reproduce", "results/k2 a file", k2_a_file),
        Case("reproduce", "everything stored: nothing rewritten", nothing_to_do),
        Case("reproduce", "--results a file", bad_results("results-file", lambda f: (f / "res").write_text("x"),
                                                          "exists and is not a folder")),
        Case("reproduce", "--results a broken link",
             bad_results("results-link", lambda f: (f / "res").symlink_to(f / "gone"), "broken symbolic link")),
    ]


# ----------------------------------------------------------------------------- 8. records
STUDY_RUN = "deterministic-k256-e10-seed0"  # the one attack-study model the probe trains (10 epochs, ~10 s)


@contextlib.contextmanager
def env_set(name: str, value: str):
    """Set ``$name`` for the block, then restore it (main thread: the API cases; children get their own)."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def in_time(fn: Callable, seconds: float, unblock: Callable[[], None]):
    """``fn()`` in a thread: its value or error, or NotHeld when it hangs (then ``unblock()`` lets it end)."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: B036 - handed to the caller
            box["error"] = exc
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        with contextlib.suppress(OSError):
            unblock()
        thread.join(10)
        raise NotHeld(f"hung: no answer after {seconds:.0f} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def records_cases(p: Probe) -> list[Case]:
    """Stored records that could lie: attack-study records of other data or damaged, another experiment's record,
    diverged training stored as finished, values and types no run can produce, bounded reading of what is not a
    record (issue 32)."""
    from vibtools import robustness as R

    grid = R.AttackGrid(n_images=8, eps_linf=(0.1,), eps_l2=(1.0,), steps=2, restarts=1, eot=2, check_eps=(0.1,),
                        cw_steps=2, cw_rounds=1, apgd_steps=2, apgd_eot=1, apgd_eps=(0.1,))  # seconds, not hours

    def study(folder: Path, data: Path) -> tuple[list[Path], list[str]]:
        """``run_study`` of STUDY_RUN on ``data`` into folder/results (run cache folder/cache): files and lines."""
        lines: list[str] = []
        with contextlib.redirect_stderr(io.StringIO()):  # its progress bars
            written = R.run_study(10, p.tensors(data), grid=grid, results_dir=folder / "results", device="cpu",
                                  cache=folder / "cache", only=[STUDY_RUN], log=lines.append)
        return written, lines

    def study_reference() -> Path:
        def make():
            folder = p.root / "ref-study"
            folder.mkdir()
            written, _ = study(folder, p.small)
            check(len(written) == 1, f"the reference study wrote {len(written)} records")
            return folder
        return p.once("study", make)

    def study_remade(name: str, damage: Callable[[Path], None], data: Path, *words: str) -> Callable[[], None]:
        """attack-study over a stored record: one line saying why it is remade, and a record of these images."""
        def run():
            folder = p.copy_of(study_reference(), name)
            record = folder / "results" / R.FOLDER / f"{STUDY_RUN}.json"
            damage(record)
            written, lines = study(folder, data)
            said = [line for line in lines if line.startswith("remaking")]
            check(len(said) == 1, f"{len(said)} 'remaking' lines: {brief(' | '.join(lines))}")
            for word in (f"remaking {record.name}", *words):
                check(word in said[0], f"the line lacks {word!r}: {said[0]}")
            check(written == [record], f"wrote {written}")
            made_on = R.load_record(record)["data"]["fingerprint"]
            check(made_on == p.tensors(data).fingerprint(), "the remade record is not of these images")
        return run

    def study_folder_a_file():
        """attack-study where results/adversarial is a file: refused in one line before any work."""
        folder = p.folder("study-folder-a-file")
        (folder / "res").mkdir()
        (folder / "res" / R.FOLDER).write_text("mine\n")
        before = listing(folder)
        one_line(p.cli(folder, ["attack-study", "--results", "res", "--device", "cpu"]), 2, "move it away")
        unchanged(before, listing(folder), "the working folder")

    def misplaced():
        """Another experiment's record copied into uncertainty/: the chapter's reader refuses it."""
        folder = p.folder("misplaced") / "results"
        source = REPO / "results" / "held-out-digits" / "vib-beta0.001-k256-e10-seed0.json"
        (folder / "uncertainty").mkdir(parents=True)
        shutil.copy(source, folder / "uncertainty" / source.name)
        with env_set("VIBTOOLS_RESULTS", str(folder)):
            raises(lambda: vt.uncertainty.stored_groups(vt.results.experiment_records("uncertainty")[0]),
                   (ResultsError,), "a record of the experiment 'held-out-digits', not of the folder 'uncertainty'")

    def unfinished(folder: Path) -> None:
        """Raise NotHeld when a run file under ``folder`` is stored as finished, or a history JSON was written."""
        runs = sorted(folder.rglob("*.pt")) if folder.is_dir() else []
        done = [q.name for q in runs if torch.load(q, map_location="cpu", weights_only=True).get("final") is not None]
        check(not done, f"stored as finished: {done}")

    def diverged_cli():
        """train --beta 1e300: one line naming the epoch, exit non-zero, nothing finished; the rerun says so again."""
        folder = p.folder("diverged")
        args = ["train", "--beta", "1e300", "--k", "2", "--epochs", "2", "--device", "cpu", "--no-progress",
                "--out", "out"]
        child = p.cli(folder, args)
        one_line(child, (1, 2), "diverged at epoch 1", "smaller beta or learning rate")
        unfinished(folder / "out")
        check(not list(folder.rglob("*.json")), "a history JSON was written")
        one_line(p.cli(folder, args), (1, 2), "diverged")
        return f"exit status {child.code}"

    def diverged_api():
        """reproduce(overrides={"lr": 1e6}): one-line ValueError, no results file, nothing finished."""
        folder = p.folder("diverged-api")
        raises(lambda: vt.reproduce.reproduce(["k2"], p.tensors(), epochs=1, device="cpu", progress=False,
                                              results_dir=folder / "results", cache=folder / "cache",
                                              overrides={"lr": 1e6}, only=["vib-beta1-*seed0"]),
               (ValueError,), "diverged", "lr=1e+06")
        check(not list(folder.rglob("*.json")), f"wrote {[str(q) for q in folder.rglob('*.json')]}")
        unfinished(folder / "cache")

    def reader(name: str, change: Callable[[dict], dict], *words: str) -> Callable[[], None]:
        """A copy of a reference record changed and resealed: load_results refuses it in one line."""
        def run():
            path = p.folder(name) / "k2" / BETA1
            path.parent.mkdir()
            record = json.loads((p.small_results() / "results" / "k2" / BETA1).read_text())
            path.write_text(json.dumps(change(record)))
            raises(lambda: load_results(path), (ResultsError,), *words)
        return run

    def history_number(r: dict) -> dict:
        return resealed(r, history={**r["history"], "test_err": 0.5})

    def draws_strings(r: dict) -> dict:
        return resealed(r, eval_noise={**r["eval_noise"], "avg_err": [str(v) for v in r["eval_noise"]["avg_err"]]})

    def nan_metric(r: dict) -> dict:
        return resealed(r, final={**r["final"], "ema_test": {**r["final"]["ema_test"], "err": math.nan}})

    def objective_draws(class_bits) -> Callable[[], None]:
        """A many-draw objective file whose class_bits are not finite numbers: one-line ResultsError."""
        def run():
            path = p.folder("objective-draws") / "vib-beta1-k2-e200-seed0.json"
            path.write_text(json.dumps({"run": path.stem, "rate_bits": 0.5, "class_bits": class_bits,
                                        "data": {"fingerprint": "0" * 16}}))  # inf: a bare Infinity
            raises(lambda: vt.results.load_objective_draws(path), (ResultsError,),
                   "is not a file of scripts/objective_draws.py")
        return run

    def outside():
        raises(lambda: vt.reproduce.load_experiment(REPO / "results", "../outside"), (ResultsError,),
               "unknown experiment '../outside'")

    def fifo_reader():
        """experiment_records() over a folder with a FIFO in a record's place: one line at once, no hang."""
        folder = p.folder("fifo-reader") / "results"
        shutil.copytree(p.small_results() / "results" / "k2", folder / "k2")
        fifo = folder / "k2" / BETA1
        fifo.unlink()
        os.mkfifo(fifo)

        def unblock():  # a writer that opens and closes: a reader blocked in open() sees the end of the file
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        with env_set("VIBTOOLS_RESULTS", str(folder)):
            in_time(lambda: raises(lambda: vt.results.experiment_records("k2"), (ResultsError,),
                                   "not a regular file"), 60, unblock)

    return [
        Case("records", "attack-study: a record made on other data is remade",
             study_remade("study-other-data", lambda q: None, p.other, "made on other data"), api=True),
        Case("records", "attack-study: a damaged record is remade, saying why",
             study_remade("study-damaged", lambda q: q.write_text("{"), p.small, "not a readable"), api=True),
        Case("records", "attack-study: results/adversarial a file", study_folder_a_file),
        Case("records", "reader: another experiment's record in uncertainty/", misplaced, api=True),
        Case("records", "train --beta 1e300: diverged, nothing stored as finished", diverged_cli),
        Case("records", "API reproduce(overrides lr 1e6): diverged, nothing stored", diverged_api, api=True),
        Case("records", "reader: a history column a number (resealed)",
             reader("history-number", history_number, "is a float, not a list"), api=True),
        Case("records", "reader: eval-noise draws strings (resealed)",
             reader("draws-strings", draws_strings, "cannot be true"), api=True),
        Case("records", "reader: a NaN metric (resealed)", reader("nan-metric", nan_metric, "NaN"), api=True),
        Case("records", "objective draws: class_bits inf", objective_draws([3.0, math.inf]), api=True),
        Case("records", "objective draws: class_bits strings", objective_draws(["3.0", "3.1"]), api=True),
        Case("records", "load_experiment('results', '../outside')", outside, api=True),
        Case("records", "experiment_records() with a FIFO in a record's place", fifo_reader, api=True),
    ]


# ----------------------------------------------------------------------------- main
CATEGORIES = ("input", "damaged", "interrupt", "concurrency", "security", "resources", "reproduce", "records")


def all_cases(p: Probe) -> list[Case]:
    """Every case, category by category."""
    return [*input_cases(p), *damaged_run_cases(p), *mnist_cases(p), *interrupt_cases(p), *concurrency_cases(p),
            *security_cases(p), *resource_cases(p), *reproduce_cases(p), *records_cases(p)]


def report(p: Probe, wall: float) -> bool:
    """Print the tally per category and the cases that did not hold; True when all held."""
    print(f"\n{'category':<12} {'tried':>5} {'held':>5}")
    for cat in CATEGORIES:
        mine = [v for v in p.verdicts if v.case.category == cat]
        if mine:
            print(f"{cat:<12} {len(mine):>5} {sum(v.held for v in mine):>5}")
    print(f"{'total':<12} {len(p.verdicts):>5} {sum(v.held for v in p.verdicts):>5}")
    failed = [v for v in p.verdicts if not v.held]
    if failed:
        print("\nnot held:")
        for v in sorted(failed, key=lambda v: CATEGORIES.index(v.case.category)):
            print(f"  {v.case.category}: {v.case.name}: {v.reason}")
    print(f"\nwall time {wall / 60:.1f} min")
    return not failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=6, help="child-process cases run at once (default 6)")
    ap.add_argument("--only", default="", help="run the cases whose category or name holds one of these texts (a,b)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    torch.set_num_threads(1)
    os.nice(max(0, 10 - os.nice(0)))
    for var in ("http_proxy", "https_proxy"):  # the API cases stay offline too
        os.environ[var] = OFFLINE
    root = Path(tempfile.mkdtemp(prefix="probe-", dir="/tmp"))
    p = Probe(root)
    p.prepare()
    print(f"# probe folder {root}; vibtools from {Path(vt.__file__).parent}", flush=True)
    wanted = args.only.split(",")
    cases = [c for c in all_cases(p) if any(w in c.category or w in c.name for w in wanted)]
    try:
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            heavy = {"interrupt": 0, "concurrency": 1, "reproduce": 2, "resources": 3, "damaged": 4}
            children = sorted((c for c in cases if not c.api), key=lambda c: heavy.get(c.category, 5))
            needs = {"interrupt": (p.big_run, p.big_record), "concurrency": (p.small_run, p.small_results),
                     "reproduce": (p.small_results,), "damaged": (p.small_run,), "resources": (p.small_run,),
                     "records": (p.small_results,)}
            for make in dict.fromkeys(m for c in children for m in needs.get(c.category, ())):
                pool.submit(make)  # the reference runs first, rather than by the first case that needs one
            futures = [pool.submit(p.execute, c) for c in children]
            for case in (c for c in cases if c.api):
                p.execute(case)
            concurrent.futures.wait(futures)
    finally:
        if not args.keep:
            for q in root.rglob("*"):  # chmod 555 folders a case left
                if q.is_dir() and not q.is_symlink():
                    q.chmod(0o755)
            shutil.rmtree(root, ignore_errors=True)
    return 0 if report(p, time.perf_counter() - t0) else 1


if __name__ == "__main__":
    sys.exit(main())
