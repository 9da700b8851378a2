"""The optional compiled step and its plain fallback, and a smoke run of the training benchmark (speed itself is
measured in benchmarks/, not here)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch._dynamo

from vibtools.device import maybe_compile


def test_failed_compile_falls_back_to_the_plain_step_with_a_warning(monkeypatch):
    calls = []

    def broken_compile(fn, mode=None):
        def run(*args):  # what Dynamo raises when its backend cannot compile (here: no C++ compiler)
            raise torch._dynamo.exc.BackendCompilerFailed(broken_compile, RuntimeError("no C++ compiler"), None)
        return run

    def plain(*args):
        calls.append(args)
        return "plain"

    monkeypatch.setattr(torch, "compile", broken_compile)
    step = maybe_compile(plain, True)
    with pytest.warns(UserWarning, match="torch.compile failed"):
        assert step(1, 2) == "plain"
    assert step(3) == "plain"  # later steps go straight to the plain function
    assert calls == [(1, 2), (3,)]


def test_compile_fallback_is_only_for_compiler_errors():
    """An error of the step itself (here a transient one on the first call) is raised, not hidden as a compile
    failure behind a silent retry of the plain step."""
    from vibtools.device import maybe_compile

    calls = []

    def flaky(x):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory")
        return x

    step = maybe_compile(flaky, True)
    with pytest.raises(RuntimeError, match="out of memory"):
        step(torch.zeros(2))


# ---------------------------------------------------------------- the benchmark runs


def test_benchmark_smoke_run(tmp_path):
    """benchmarks/bench_train.py end to end with a few steps per row, on a fake MNIST of 400 images so the
    end-to-end command trains 4 steps, not a full epoch (speed itself is not tested here)."""
    import json
    from pathlib import Path

    from conftest import fake_mnist

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"
    out, data = tmp_path / "bench.json", fake_mnist(tmp_path / "mini", 400, 200)
    r = subprocess.run([sys.executable, str(script), "--data", str(data), "--device", "cpu", "--steps", "2",
                        "--warmup", "1", "--sweeps", "2", "--vmap", "2", "--end-to-end", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    rows = {row["loop"]: row for row in json.loads(out.read_text())["rows"]}
    assert {"plain PyTorch loop", "vibtools single model", "vibtools sweep M=2",
            "torch.func stack_module_state + vmap, M=2", "matrix products alone"} <= set(rows)
    assert all(row["sec_per_model_epoch"] > 0 for row in rows.values())
    e2e = json.loads(out.read_text())["end_to_end"]
    assert len(e2e) == 1 and e2e[0]["epochs"] == 1 and 0 < e2e[0]["evaluation_share"] < 1
    assert e2e[0]["training_s"] < e2e[0]["start_to_exit_s"]
