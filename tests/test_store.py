"""The run store (store.py): run files and their round trip, loading without any training state, cache keys,
damaged or bad cache files (warned about in one line and retrained), and the cache folder (the home folder, the
umask, read-only, a file, a full disk)."""

from __future__ import annotations

import math
import os
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY, assert_same_weights, fit, numeric

import vibtools
import vibtools as vt
import vibtools.preflight
import vibtools.store
import vibtools.training
from vibtools import load_run
from vibtools.store import FORMAT, load_checkpoint, save_checkpoint

# ---------------------------------------------------------------- run files: round trip, loading


def test_cache_round_trip(small, cache_dir):
    first = fit(TINY, small, cache=cache_dir)
    assert not first.from_cache
    assert first.path is not None and first.path.parent == cache_dir and first.path.is_file()
    assert sorted(p.name for p in cache_dir.iterdir() if p.suffix != ".lock") == [first.path.name]  # no .tmp

    again = fit(TINY, small, cache=cache_dir)
    assert again.from_cache and again.path == first.path
    assert again.history == first.history  # the stored history, wall-clock column included
    assert again.final == first.final
    assert_same_weights(again.model, first.model)
    assert_same_weights(again.ema_model, first.ema_model)

    loaded = load_run(first.path, device="cpu")
    assert loaded.from_cache and loaded.config == TINY
    assert loaded.history == first.history and loaded.final == first.final
    assert_same_weights(loaded.model, first.model)
    assert_same_weights(loaded.ema_model, first.ema_model)

    payload = torch.load(first.path, weights_only=True)
    assert payload["format"] == FORMAT and payload["epochs_done"] == 2
    assert payload["config"] == TINY.as_dict()
    assert "training" not in payload  # a finished run keeps only what loading it needs

    # the returned EMA model is the one that was evaluated (I(Z;X) bound does not depend on the noise)
    m = vibtools.evaluate(loaded.ema_model, small.test_x, small.test_y)
    assert m["izx"] == pytest.approx(first.final["ema_test"]["izx"], rel=1e-4)


def test_finished_runs_load_without_any_training_state(small, cache_dir, monkeypatch):
    first = fit(TINY, small, cache=cache_dir)

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished run must load without building a training state")

    monkeypatch.setattr(vibtools.training, "TrainState", forbidden)
    again = fit(TINY, small, cache=cache_dir)
    loaded = vt.load_run(first.path, device="cpu")
    assert again.from_cache and loaded.final == first.final
    assert not loaded.model.training and not loaded.ema_model.training


# ---------------------------------------------------------------- cache keys


def test_cache_key_depends_on_config_and_data(small, cache_dir):
    a = fit(TINY, small, cache=cache_dir)
    b = fit(TINY.with_(beta=1e-2), small, cache=cache_dir)
    c = fit(TINY, small.subset(900, 500), cache=cache_dir)
    assert not b.from_cache and not c.from_cache
    assert len({a.path, b.path, c.path}) == 3


def test_equal_configs_share_one_key_and_one_file(small, cache_dir):
    a = TINY.with_(beta=1)
    b = TINY.with_(beta=1.0)
    assert a == b and hash(a) == hash(b) and isinstance(a.beta, float)
    assert TINY.with_(beta=-0.0).key_dict() == TINY.with_(beta=0.0).key_dict()
    assert math.copysign(1, TINY.with_(beta=-0.0).beta) == 1.0
    assert TINY.with_(data_seed=None).key_dict() == TINY.with_(data_seed=TINY.seed).key_dict()
    assert TINY.with_(adam_betas=[0.5, 0.999]) == TINY
    first = fit(TINY.with_(beta=0), small, cache=cache_dir)
    second = fit(TINY.with_(beta=-0.0, data_seed=0), small, cache=cache_dir)
    assert second.from_cache and second.path == first.path
    assert len(list(cache_dir.glob("*.pt"))) == 1


# ---------------------------------------------------------------- damaged and bad cache files


def _truncate(path):
    """Cut a file to half its length."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit(**changes):
    """Change top-level entries and store the file again with a valid checksum (the checks after it must catch it)."""
    def edit(path):
        st = torch.load(path, weights_only=True)
        st.update(changes)
        save_checkpoint(path, st)
    return edit


def _edit_nested(fn):
    """Apply ``fn`` to the payload and store it again with a valid checksum."""
    def edit(path):
        st = torch.load(path, weights_only=True)
        fn(st)
        save_checkpoint(path, st)
    return edit


def _flip_bytes(path):
    """Change one weight without updating the checksum: a damaged file that still unpickles."""
    st = torch.load(path, weights_only=True)
    st["ema_model"]["enc1_weight"][0, 0] += 1.0
    torch.save(st, path)


UNREADABLE = "not a readable vibtools checkpoint"


BAD_FILES = {
    "truncated": (_truncate, UNREADABLE),
    "empty": (lambda p: p.write_bytes(b""), UNREADABLE),
    "garbage": (lambda p: p.write_bytes(b"\x80\x04garbage, not a checkpoint" * 50), UNREADABLE),
    "not_a_dict": (lambda p: torch.save(torch.zeros(3), p), "format 'Tensor'"),
    "other_format": (_edit(format="vibtools-run-v0"), "format 'vibtools-run-v0'"),
    "other_version": (_edit(version=1), "results version 1"),
    "flipped_bytes": (_flip_bytes, "checksum does not match"),
    "other_config": (_edit(config=TINY.with_(beta=0.5).as_dict()), "different configuration"),
    "other_data": (_edit(data="0123456789abcdef"), "different configuration or data set"),
    "no_model": (_edit_nested(lambda st: st.pop("model")), "lacks 'model'"),
    "missing_tensor": (_edit_nested(lambda st: st["model"].pop("dec_bias")), "lacks the tensor model['dec_bias']"),
    "wrong_shape": (_edit_nested(lambda st: st["ema_model"].update(enc1_weight=torch.zeros(3, 3))),
                    "ema_model['enc1_weight'] of shape (3, 3)"),
    "no_final_ema_test": (_edit_nested(lambda st: st["final"].pop("ema_test")), "lacks final['ema_test']"),
}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the garbage file
@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_cache_file_warns_and_is_retrained(small, cache_dir, kind):
    spoil, reason = BAD_FILES[kind]
    ref = fit(TINY, small, cache=cache_dir)
    spoil(ref.path)
    with pytest.warns(UserWarning, match="ignoring stored run") as record:
        again = fit(TINY, small, cache=cache_dir)
    ours = [str(w.message) for w in record if "ignoring stored run" in str(w.message)]
    assert len(ours) == 1
    message = ours[0]
    assert str(ref.path) in message and reason in message and "retrained" in message
    assert "\n" not in message
    assert not again.from_cache
    assert numeric(again.history) == numeric(ref.history)
    assert_same_weights(again.model, ref.model)
    assert load_checkpoint(ref.path)["epochs_done"] == TINY.epochs  # overwritten with a good file
    assert fit(TINY, small, cache=cache_dir).from_cache


def test_stored_runs_missing_history_or_metrics_are_retrained(small, cache_dir):
    from vibtools.store import save_checkpoint

    r = fit(TINY, small, cache=cache_dir)
    for damage, words in ((lambda st: st["history"].pop("test_err"), "history['test_err']"),
                          (lambda st: st["history"]["epoch"].pop(), "history['epoch'] of 2 epochs"),
                          (lambda st: st["final"]["ema_test"].pop("avg_err"), "final['ema_test']['avg_err']")):
        st = torch.load(r.path, weights_only=True)
        damage(st)
        save_checkpoint(r.path, st)
        with pytest.warns(UserWarning, match="ignoring stored run") as record:
            again = fit(TINY, small, cache=cache_dir)
        assert words in str(record[0].message) and not again.from_cache


def test_a_partial_run_with_a_non_dict_ema_or_adam_is_ignored_not_a_crash(small, cache_dir):
    from vibtools.store import save_checkpoint

    config = TINY.with_(epochs=3)
    for key in ("ema", "adam"):
        r = fit(config, small, cache=cache_dir, stop_after=1)
        st = torch.load(r.path, weights_only=True)
        st["training"][key] = [1, 2, 3]
        save_checkpoint(r.path, st)
        with pytest.warns(UserWarning, match=f"training\\['{key}'\\] that is not a dict"):
            again = fit(config, small, cache=cache_dir)
        assert len(again.history["epoch"]) == 3 and not again.from_cache
        r.path.unlink()


def test_load_run_refuses_bad_files(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(vibtools.CheckpointError, match="bad.pt"):
        load_run(bad)
    torch.save({"format": "something-else"}, bad)
    with pytest.raises(vibtools.CheckpointError, match="something-else"):
        load_run(bad)


# ---------------------------------------------------------------- the cache folder: home, umask, read-only, full disk


def test_cache_argument_expands_the_home_folder(small, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    r = fit(TINY, small, cache="~/runs")
    assert r.path.parent == tmp_path / "home" / "runs"
    assert not (tmp_path / "~").exists()


def test_run_files_follow_the_umask(small, cache_dir):
    old = os.umask(0o027)
    try:
        r = fit(TINY, small, cache=cache_dir)
    finally:
        os.umask(old)
    assert r.path.stat().st_mode & 0o777 == 0o640


def test_a_read_only_cache_serves_finished_runs_and_refuses_new_ones(small, cache_dir, monkeypatch):
    first = fit(TINY, small, cache=cache_dir)
    real = os.access

    def access(path, mode):
        """Deny writing to the cache folder (as root, chmod cannot)."""
        return False if str(path) == str(cache_dir) else real(path, mode)

    monkeypatch.setattr(vibtools.preflight.os, "access", access)
    again = fit(TINY, small, cache=cache_dir)
    assert again.from_cache and again.final == first.final
    with pytest.raises(ValueError, match="is not writable"):
        fit(TINY.with_(beta=0.5), small, cache=cache_dir)


def test_unwritable_cache_folders_are_refused_before_any_work(small, tmp_path, monkeypatch):
    a_file = tmp_path / "a-file"
    a_file.write_text("keep")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        fit(TINY, small, cache=a_file / "runs")
    assert a_file.read_text() == "keep"

    monkeypatch.setattr(vibtools.preflight.shutil, "disk_usage", lambda p: SimpleNamespace(free=1000))
    with pytest.raises(ValueError, match="MiB free"):
        fit(TINY, small, cache=tmp_path / "full-disk")
    assert not (tmp_path / "full-disk").exists()


def test_a_failed_write_names_the_file_it_was_for(tmp_path, monkeypatch):
    """A full disk fails in write() or fsync(), whose OSError names no file; the error names the file being written
    (the CLI's "could not write ..." line used to say only "No space left on device")."""

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    target = tmp_path / "runs" / "run.json"
    with pytest.raises(OSError) as info:
        vibtools.store.save_json(target, {"a": 1})
    assert info.value.errno == 28 and info.value.filename == str(target)
    assert not target.exists() and list(target.parent.iterdir()) == []  # no temporary file left
