"""``python -m vibtools`` (cli.py): bad inputs fail cleanly (status 2, one line, nothing written), --help, a tiny run,
warnings and cache notices in one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import cli, fake_mnist

import vibtools as vt
from vibtools.cli import build_parser

TRAIN_OPTIONS = {"--beta", "--k", "--epochs", "--seed", "--device", "--out", "--data", "--covariance", "--no-progress"}


# ---------------------------------------------------------------- bad input: exit status 2, one line, nothing written


def truncated_mnist(root: Path) -> Path:
    """A fake MNIST folder whose training images file lost its second half."""
    fake_mnist(root)
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[: images.stat().st_size // 2])
    return root


def bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments, a piece of text the error line must contain)."""
    a_file = tmp / "a-file"
    a_file.write_text("not a folder")
    return {
        "beta_negative": (["--beta", "-1"], "beta"),
        "beta_negative_eq": (["--beta=-0.5"], "beta"),
        "beta_not_a_number": (["--beta", "abc"], "beta"),
        "beta_nan": (["--beta", "nan"], "beta"),
        "beta_minus_inf": (["--beta", "-inf"], "beta must be a finite number"),  # argparse read it as an option
        "beta_minus_exponent": (["--beta", "-1e-3"], "beta must be a finite number"),
        "k_zero": (["--k", "0"], "k must be"),
        "k_not_int": (["--k", "2.5"], "k must be"),
        "epochs_zero": (["--epochs", "0"], "epochs"),
        "unknown_device": (["--device", "tpu"], "tpu"),
        "missing_data": (["--data", str(tmp / "missing")], str(tmp / "missing")),
        "data_is_a_file": (["--data", str(a_file)], str(a_file)),
        "covariance": (["--covariance", "spherical"], "covariance"),
        "seed_too_large": (["--seed", str(10**13)], "seed must be an integer from 0 to"),
        "seed_negative": (["--seed", "-3"], "seed must be"),
        "device_bad_index": (["--device", "cpu:x"], "unknown device 'cpu:x'"),
        "device_cuda_missing": (["--device", "cuda:7"], "cuda:7"),
        "out_under_a_file": (["--out", str(a_file / "runs")], "is a file, not a folder"),
        "k_too_large": (["--k", "400000000", "--data", str(fake_mnist(tmp / "fake", 200, 100))], "GiB"),
        "truncated_mnist": (["--data", str(truncated_mnist(tmp / "truncated"))], "is truncated"),
    }


# every case runs in-process (fast); one per kind of check also runs as a real ``python -m vibtools`` process
CASES = ["beta_negative", "beta_negative_eq", "beta_not_a_number", "beta_nan", "beta_minus_inf", "beta_minus_exponent",
         "k_zero", "k_not_int", "epochs_zero",
         "unknown_device", "missing_data", "data_is_a_file", "covariance", "seed_too_large", "seed_negative",
         "device_bad_index", "device_cuda_missing", "out_under_a_file", "k_too_large", "truncated_mnist"]
# an argument the parser rejects, one it used to read as an option, a check on the data
SUBPROCESS_CASES = ["beta_negative", "beta_minus_inf", "truncated_mnist"]


def with_out(args: list[str], tmp: Path) -> list[str]:
    """The case's arguments, with ``--out tmp/out`` unless the case sets --out itself."""
    return args if "--out" in args else [*args, "--out", str(tmp / "out")]


def check_failure(code, stdout: str, stderr: str, needle: str, tmp: Path) -> None:
    assert code == 2, (code, stdout, stderr)
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "error" in lines[0] and needle in lines[0], lines[0]
    assert stdout == ""
    assert not (tmp / "out").exists()
    assert not (tmp / "runs").exists() and not (tmp / "default-cache").exists()
    assert not (tmp / "a-file").is_dir() and (tmp / "a-file").read_text() == "not a folder"
    assert not (tmp / "missing").exists() and not (tmp / "default-data").exists()


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_bad_input_exits_2_with_one_line(tmp_path, case):
    args, needle = bad_inputs(tmp_path)[case]
    r = cli(["train", *with_out(args, tmp_path), "--no-progress"], tmp_path)
    check_failure(r.returncode, r.stdout, r.stderr, needle, tmp_path)


def run_main(args: list[str], tmp: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    """cli.main in this process (argparse errors raise SystemExit, the other checks return 2)."""
    from vibtools.cli import main

    monkeypatch.chdir(tmp)
    monkeypatch.setenv("VIBTOOLS_CACHE", str(tmp / "default-cache"))
    monkeypatch.setenv("VIBTOOLS_DATA", str(tmp / "default-data"))
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", CASES)
def test_bad_input_in_process(tmp_path, monkeypatch, capsys, case):
    args, needle = bad_inputs(tmp_path)[case]
    code, out, err = run_main(["train", *with_out(args, tmp_path), "--no-progress"], tmp_path, monkeypatch, capsys)
    check_failure(code, out, err, needle, tmp_path)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any folder: cannot make one "
                    "unreadable")
def test_unreadable_data_folder_exits_2(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        r = cli(["train", "--data", str(locked), "--out", str(tmp_path / "out")], tmp_path)
    finally:
        locked.chmod(0o755)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and str(locked) in r.stderr
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_exits_2_and_is_left_alone(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.write_text("keep me")
    code, stdout, stderr = run_main(["train", "--out", str(out), "--device", "cpu"], tmp_path, monkeypatch, capsys)
    assert code == 2 and stdout == ""
    assert len(stderr.strip().splitlines()) == 1 and "--out" in stderr
    assert out.read_text() == "keep me"


# ---------------------------------------------------------------- help


def test_help_mentions_every_option(tmp_path):
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    options = {s for a in sub.choices["train"]._actions for s in a.option_strings if s.startswith("--")} - {"--help"}
    assert TRAIN_OPTIONS <= options
    r = cli(["train", "--help"], tmp_path)
    assert r.returncode == 0 and r.stderr == ""
    for option in options:
        assert option in r.stdout, option


def test_top_level_help_and_missing_command(tmp_path, monkeypatch, capsys):
    code, out, _ = run_main(["--help"], tmp_path, monkeypatch, capsys)
    assert code == 0 and "train" in out
    code, out, err = run_main([], tmp_path, monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- a tiny successful run on a fake MNIST folder


def test_tiny_cli_run_then_cached(tmp_path):
    data = fake_mnist(tmp_path / "data")
    out = tmp_path / "out"
    args = ["train", "--k", "2", "--epochs", "1", "--beta", "0.01", "--device", "cpu", "--data", str(data),
            "--out", str(out), "--no-progress"]
    first = cli(args, tmp_path)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.strip().splitlines()
    assert lines[0].startswith("0: IZY=") and "avg_err=" in lines[0]
    assert lines[1].startswith("EMA: IZY=")
    assert "cached=False" in lines[-1]
    assert sorted(p.suffix for p in out.iterdir() if not p.name.startswith(".")) == [".json", ".pt"]
    saved = json.loads(next(out.glob("*.json")).read_text())
    assert saved["config"]["k"] == 2 and saved["config"]["beta"] == 0.01 and len(saved["history"]["epoch"]) == 1

    second = cli(args, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "cached=True" in second.stdout
    assert second.stdout.splitlines()[:2] == lines[:2]  # the same run, reloaded


# ---------------------------------------------------------------- warnings and cache notices: one line


def test_cli_prints_cache_notices_as_one_line(tmp_path):
    from conftest import cli, fake_mnist

    data = fake_mnist(tmp_path / "data")
    args = ["train", "--k", "2", "--epochs", "1", "--device", "cpu", "--data", str(data), "--out", str(tmp_path / "o"),
            "--no-progress"]
    assert cli(args, tmp_path).returncode == 0
    run = next((tmp_path / "o").glob("*.pt"))
    run.write_bytes(run.read_bytes()[:100])
    again = cli(args, tmp_path)
    assert again.returncode == 0, again.stderr
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m vibtools: warning: ignoring stored run"), lines


def test_cli_warnings_are_one_line_only_while_the_command_runs(tmp_path, capsys):
    import warnings

    from conftest import fake_mnist

    from vibtools.cli import main

    before = warnings.showwarning
    data = fake_mnist(tmp_path / "data")
    assert main(["train", "--k", "2", "--epochs", "1", "--device", "cpu", "--data", str(data), "--out",
                 str(tmp_path / "out"), "--no-progress"]) == 0
    assert warnings.showwarning is before


@pytest.mark.parametrize("command", [["reproduce", "--list"], ["attack-study", "--list"]])
@pytest.mark.parametrize("only", [",", " ", "vib-*,", ""])
def test_an_empty_only_pattern_is_refused_in_one_line(tmp_path, command, only):
    from conftest import cli

    p = cli([*command, "--only", only], tmp_path)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "empty pattern" in p.stderr
    assert p.stdout == ""


def test_an_only_pattern_has_to_match_in_one_of_the_experiments_not_in_each(tmp_path):
    from conftest import cli

    p = cli(["reproduce", "k2", "table1", "--list", "--epochs", "200", "--only", "vib-*,deterministic-*"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "deterministic-k256-e200-seed0" in p.stdout and "vib-beta0.1-k2-e200-seed0" in p.stdout
    assert "dropout" not in p.stdout
    none = cli(["reproduce", "k2", "table1", "--list", "--only", "dropout-*,nothing-*"], tmp_path)
    assert none.returncode == 2 and "'nothing-*' matches no run of k2, table1" in none.stderr


@pytest.mark.parametrize("value, quick", [("1", True), ("yes", True), ("0", False), ("", False), ("no", False)])
def test_vibtools_quick_takes_its_documented_values(monkeypatch, value, quick):
    monkeypatch.setenv("VIBTOOLS_QUICK", value)
    assert (vt.book.settings() is vt.book.QUICK) is quick


@pytest.mark.parametrize("value", ["garbage", "on", "2"])
def test_vibtools_quick_refuses_anything_else(monkeypatch, value):
    monkeypatch.setenv("VIBTOOLS_QUICK", value)
    with pytest.raises(ValueError, match=f"VIBTOOLS_QUICK='{value}' is not a setting"):
        vt.book.settings()


def test_a_run_cache_that_is_a_file_is_refused_before_any_pass_starts(tmp_path):
    from conftest import cli

    fake_mnist(tmp_path / "data")
    (tmp_path / "cache-file").write_text("not a folder")
    p = cli(["reproduce", "k2", "--epochs", "1", "--only", "vib-beta1-*seed0", "--data", str(tmp_path / "data"),
             "--results", str(tmp_path / "results"), "--no-progress"], tmp_path,
            VIBTOOLS_CACHE=str(tmp_path / "cache-file"))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "is not a folder" in p.stderr
    assert "started" not in p.stdout and not (tmp_path / "results").exists()
