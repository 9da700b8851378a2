"""The optional compiled step and its plain fallback (speed itself is measured in benchmarks/, not here)."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo

from vibtools.training import maybe_compile


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
