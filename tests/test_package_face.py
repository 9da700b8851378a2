"""The package face: ``import vibtools`` and ``python -m vibtools --help`` load what they name and nothing more,
and no module of the package imports the face itself; the package's metadata: the version written once, the torch
requirement."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import vibtools

PACKAGE = Path(vibtools.__file__).parent


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_vibtools_loads_neither_torch_nor_the_chapter_helpers():
    mods = loaded_after("import vibtools")
    assert "torch" not in mods and "matplotlib" not in mods
    assert {m for m in mods if m.startswith("vibtools.")} == {"vibtools._version"}


def test_help_and_argument_errors_answer_without_torch(tmp_path):
    probe = ("import sys, json\nsys.argv = ['vibtools'] + sys.argv[1:]\nfrom vibtools.cli import main\n"
             "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
             "mods = sorted(m for m in sys.modules if m.startswith('vibtools'))\n"
             "print(json.dumps([code, 'torch' in sys.modules, mods]))")
    for args in (["--help"], ["train", "--help"], ["reproduce", "--help"], ["train", "--beta", "-1"],
                 ["train", "--k", "0"], ["reproduce", "nope"], ["reproduce", "--only", "zzz-*"],
                 ["reproduce", "--list", "--epochs", "200"]):
        out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120,
                             cwd=tmp_path)
        code, torch_loaded, mods = json.loads(out.stdout.strip().splitlines()[-1])
        assert code in (0, 2) and not torch_loaded, (args, mods)
        assert not {"vibtools.book", "vibtools.plots", "vibtools.training"} & set(mods), (args, mods)


def test_importing_the_package_and_the_cli_help_load_no_plotting_or_widgets():
    code = ("import sys, vibtools, vibtools.cli\n"
            "try:\n    vibtools.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'ipywidgets'}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_the_face_names_resolve_and_vt_train_loads_only_the_training_core():
    for name in vibtools.__all__:
        assert getattr(vibtools, name) is not None, name
    training = importlib.import_module("vibtools.training")  # importing the module never hides the face's function
    assert callable(vibtools.train) and vibtools.train is training.train
    mods = loaded_after("import vibtools as vt\nvt.train")
    assert "torch" in mods and "vibtools.training" in mods
    assert not {"vibtools.book", "vibtools.plots", "vibtools.attacks", "vibtools.widgets", "matplotlib"} & mods


def test_plots_import_no_chapter_settings():
    """The figures need the paper's numbers (``report``) and stored results (``results``), never the chapters'
    settings (``book``)."""
    mods = loaded_after("import vibtools.plots, vibtools.widgets")
    assert "vibtools.book" not in mods and "vibtools.plots" in mods
    # nor when they draw: plot_table1_curves reads the paper's numbers from report, which imported book
    drawn = loaded_after(
        "import matplotlib; matplotlib.use('Agg'); import vibtools.plots as p\n"
        "h = {'ema_test_avg_err': [0.02, 0.015]}\n"
        "p.plot_table1_curves([{'model': 'vib', 'history': h}, {'model': 'deterministic', 'history': h}])"
    )
    assert "vibtools.book" not in drawn and "vibtools.report" in drawn


def test_no_module_imports_the_package_face():
    """Modules import each other directly (``from .train import ...``), never ``from . import`` or ``vibtools``."""
    for path in PACKAGE.glob("*.py"):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None:
                names = {a.name for a in node.names} - {p.stem for p in PACKAGE.glob("*.py")}
                assert not names, f"{path.name} imports the package face: from . import {', '.join(names)}"
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "vibtools":
                raise AssertionError(f"{path.name} imports the package face: from vibtools import ...")


def test_version_is_written_once():
    """The version is written in vibtools/_version.py alone; pyproject.toml and the package face read it there."""
    text = (PACKAGE.parent / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text and 'version = { attr = "vibtools._version.__version__" }' in text
    assert [p.name for p in PACKAGE.glob("*.py") if "__version__ = " in p.read_text()] == ["_version.py"]


def test_torch_requirement_admits_cpu_fused_adam():
    """The optimizer uses fused Adam on the CPU, which torch has from 2.4 on."""
    import re

    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    for text in ((repo / "requirements.txt").read_text(), (repo / "pyproject.toml").read_text()):
        low = re.search(r"torch>=(\d+)\.(\d+)", text)
        assert low and (int(low[1]), int(low[2])) >= (2, 4), low and low[0]


def test_every_name_the_chapters_use_resolves():
    """Each ``vt.<name>`` in the notebooks' code is a name of the face or a submodule, and so is each
    ``vt.<module>.<name>``."""
    import re

    used = set()
    for path in (PACKAGE.parent / "book").glob("*.ipynb"):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                used |= set(re.findall(r"\bvt\.([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?", "".join(cell["source"])))
    assert used
    for name, attr in sorted(used):
        value = getattr(vibtools, name)
        if attr:
            assert hasattr(value, attr), f"vt.{name}.{attr}"


def test_every_committed_record_reads_without_torch():
    """vt.results and the study readers read every committed record (training, attack study, paper attack) in an
    interpreter that never loads torch: the book's pages and their readers need only the numbers."""
    root = PACKAGE.parent / "results"
    code = f"""
from pathlib import Path
import vibtools.results as r
from vibtools import records, robustness
n = 0
for folder in sorted(p for p in Path({str(root)!r}).iterdir() if p.is_dir()):
    for f in sorted(folder.glob("*.json")):
        if folder.name == "explorer":
            continue
        if folder.name == robustness.FOLDER:
            robustness.load_record(f)
        elif folder.name == "adversarial-paper":
            robustness.load_record(f, "vibtools-paper-cw")
        else:
            records.load_results(f)
        n += 1
for epochs in (10, 200):
    robustness.strongest_rows(robustness.load_study({str(root)!r}, epochs), "l2")
from vibtools import explorer
explorer.explorer_html(explorer.load_explorer_data({str(root / "explorer" / "k2-embeddings.json")!r}))
assert n > 100, n
"""
    mods = loaded_after(code)
    assert "torch" not in mods and "numpy" not in mods
