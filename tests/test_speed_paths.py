"""The optional compiled step and its plain fallback (speed itself is measured in benchmarks/, not here)."""

from __future__ import annotations

import pytest
import torch

from vibtools.train import _compiled, _objective


def test_compile_off_returns_the_plain_step():
    assert _compiled(_objective, False) is _objective


def test_failed_compile_falls_back_to_the_plain_step_with_a_warning(monkeypatch):
    calls = []

    def broken_compile(fn, mode=None):
        def run(*args):
            raise RuntimeError("no C++ compiler")
        return run

    def plain(*args):
        calls.append(args)
        return "plain"

    monkeypatch.setattr(torch, "compile", broken_compile)
    step = _compiled(plain, True)
    with pytest.warns(UserWarning, match="torch.compile failed"):
        assert step(1, 2) == "plain"
    assert step(3) == "plain"  # later steps go straight to the plain function
    assert calls == [(1, 2), (3,)]
