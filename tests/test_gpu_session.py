"""The GPU session script, rehearsed on the CPU: the same script the device tool runs, with a fake $OUT, a mini
MNIST carried compressed and 1 epoch, checked against the device tool's limits on what comes back."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import torch
from conftest import fake_mnist

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_session.sh"
MAX_FILES, MAX_BYTES, MAX_DEPTH = 8, 16 * 2**20, 2  # the device tool returns at most 8 files of 16 MiB, 2 folders down
NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def session(args: list[str], tmp: Path, **env) -> subprocess.CompletedProcess:
    """Run the script from the repository root, with its folder, data and output inside ``tmp``."""
    full = {**os.environ, "GPU_DIR": str(tmp / "_gpu"), "VIBTOOLS_DATA": str(tmp / "src"), "PY": sys.executable,
            "OMP_NUM_THREADS": "1", "VIBTOOLS_CACHE": str(tmp / "default-cache"), **env}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=full, capture_output=True, text=True,
                          timeout=600)


def returned(out: Path) -> list[Path]:
    """The files under $OUT, checked against what the device tool can bring back."""
    files = [p for p in out.rglob("*") if p.is_file()]
    assert 0 < len(files) <= MAX_FILES
    for p in files:
        rel = p.relative_to(out)
        assert p.stat().st_size <= MAX_BYTES and len(rel.parts) - 1 <= MAX_DEPTH, rel
        assert all(NAME.match(part) for part in rel.parts), rel
    return files


def test_gpu_session_rehearsed_on_the_cpu(tmp_path):
    from vibtools.reproduce import load_experiment

    fake_mnist(tmp_path / "src", 300, 100)
    packed = session(["pack-data"], tmp_path)
    assert packed.returncode == 0, packed.stderr
    raw = tmp_path / "_gpu" / "data" / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{f}.gz" for f in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))

    run = {"DEVICE": "cpu", "EPOCHS": "1", "EXPERIMENTS": "k2", "BUDGET_S": "500"}
    out = tmp_path / "out1"
    out.mkdir()
    first = session(["run"], tmp_path, OUT=str(out), **run)
    assert first.returncode == 0, first.stdout + first.stderr
    assert {p.name for p in returned(out)} == {"results.tar.gz", "session.json", "log.txt"}
    unpacked = tmp_path / "repo"
    with tarfile.open(out / "results.tar.gz") as tar:
        assert all(m.name == "results" or m.name.startswith("results/") for m in tar.getmembers())
        tar.extractall(unpacked, filter="data")
    records = load_experiment(unpacked / "results", "k2", epochs=1)  # checks every file and the protocol whole
    assert len(records) == 12 and all(r["device"].startswith("cpu") for r in records)
    report = json.loads((out / "session.json").read_text())
    assert report["device"] == "cpu" and report["reproduce_rc"] == 0 and report["torch"] == torch.__version__
    assert sum(len(p["runs"]) for p in report["passes"]) == 12
    assert all(p["model_epochs_per_s"] > 0 for p in report["passes"])

    # a second call resumes from the cache it left: nothing is trained again, and the archive is whole
    out2 = tmp_path / "out2"
    out2.mkdir()
    second = session(["run"], tmp_path, OUT=str(out2), **run)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "wrote 0 results files" in (out2 / "log.txt").read_text()
    returned(out2)
    with tarfile.open(out2 / "results.tar.gz") as tar:
        assert len([m for m in tar.getmembers() if m.name.endswith(".json")]) == 12


def test_gpu_session_without_packed_data_says_what_to_do(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    r = session(["run"], tmp_path, OUT=str(out))
    assert r.returncode == 2 and "pack-data" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "_gpu").exists()
