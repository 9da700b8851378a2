"""A chapter in a bare Colab-like runtime: the package installed from a wheel by the chapters' own install cell.

Colab preinstalls torch, torchvision, matplotlib, numpy, tqdm and ipywidgets (and the Jupyter stack that runs
the notebook) but not vibtools. The test builds a wheel of the package, makes a fresh virtual environment that
sees only those distributions and their dependencies (linked from the test's own environment, so nothing is
downloaded), points the training chapter's install cell at the wheel instead of the repository, and executes
the chapter in reduced settings on a kernel of that environment. It fails if the install cell does not install
the package, if the package needs anything Colab lacks, or if any cell raises. The β explorer chapter then runs in
the same runtime: its widget must come up from the stored file with nothing trained.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "book" / "02_training.ipynb"
EXPLORER = ROOT / "book" / "05_explore.ipynb"
COLAB_PREINSTALLED = ("torch", "torchvision", "matplotlib", "numpy", "tqdm", "ipywidgets")
JUPYTER = ("ipykernel", "nbclient", "nbformat")  # what runs a notebook there (Colab's own frontend and kernel)
INSTALL_URL = re.compile(r'"git\+https://[^"]+"')


def dependency_closure(names) -> dict[str, md.Distribution]:
    """The installed distributions ``names`` need, recursively (extras ignored, markers evaluated here)."""
    env = default_environment()
    out: dict[str, md.Distribution] = {}
    todo = list(names)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in out:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue  # an optional dependency that is not installed here
        out[name] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
                todo.append(req.name)
    return out


def link_view(dists: dict[str, md.Distribution], view: Path) -> None:
    """Symlink the top-level files and folders of each distribution into ``view`` (one site-packages-like folder)."""
    view.mkdir()
    for dist in dists.values():
        base = Path(dist.locate_file(""))
        tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            src, dst = base / top, view / top
            if src.exists() and not dst.exists() and top != "__pycache__":
                dst.symlink_to(src)


def run_chapter(chapter: Path, wheel: Path, python: Path, work: Path, env: dict) -> str:
    """Execute ``chapter`` on the bare kernel with its install cell pointed at ``wheel``; return its cells as JSON."""
    nb = json.loads(chapter.read_text())
    first = next(c for c in nb["cells"] if c["cell_type"] == "code")
    source = "".join(first["source"])
    assert INSTALL_URL.search(source) and 'find_spec("vibtools") is None' in source
    first["source"] = INSTALL_URL.sub(json.dumps(str(wheel)), source)
    name = chapter.name
    (work / name).write_text(json.dumps(nb))
    run = subprocess.run(
        [str(python), "-c", f"import nbclient, nbformat; nb = nbformat.read({name!r}, 4); "
         "nbclient.NotebookClient(nb, timeout=900, kernel_name='bare').execute(); "
         f"nbformat.write(nb, {name!r})"],
        cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, f"{name} failed in the bare runtime:\n{run.stderr[-3000:]}"
    return json.dumps(json.loads((work / name).read_text())["cells"])


@pytest.mark.skipif(not os.environ.get("VIBTOOLS_DATA"), reason="needs MNIST: set VIBTOOLS_DATA (make test does)")
def test_training_chapter_runs_in_a_bare_runtime_after_its_own_install_cell(tmp_path):
    # 1. a wheel of the package, built from a copy of its sources (a build in the checkout would leave files)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "vibtools", src / "vibtools", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True, text=True)
    (wheel,) = (tmp_path / "dist").glob("vibtools-*.whl")

    # 2. a fresh environment that sees only what Colab preinstalls
    bare = tmp_path / "bare"
    venv.create(bare, with_pip=True)
    python = bare / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    closure = dependency_closure(COLAB_PREINSTALLED + JUPYTER)
    assert "vibtools" not in closure and "filelock" in closure  # torch brings filelock, as on Colab
    link_view(closure, tmp_path / "preinstalled")
    (site / "colab_preinstalled.pth").write_text(str(tmp_path / "preinstalled") + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "JUPYTER_PATH")}
    work = tmp_path / "work"  # not the checkout: its vibtools/ folder would be importable from there
    work.mkdir()
    missing = subprocess.run([str(python), "-c", "import vibtools"], cwd=work, env=env, capture_output=True,
                             text=True)
    assert missing.returncode != 0, "vibtools is importable before the install cell ran"

    # 3. the chapter, its install cell pointed at the wheel
    kernels = tmp_path / "jupyter"
    subprocess.run([str(python), "-m", "ipykernel", "install", "--prefix", str(kernels), "--name", "bare"],
                   check=True, capture_output=True, text=True)
    env.update(JUPYTER_PATH=str(kernels / "share" / "jupyter"), VIBTOOLS_QUICK="1",
               VIBTOOLS_CACHE=str(tmp_path / "cache"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    outputs = run_chapter(CHAPTER, wheel, python, work, env)

    # 4. the package the kernel used is the one the install cell put into the bare environment
    where = subprocess.run([str(python), "-c", "import vibtools; print(vibtools.__file__)"], cwd=work, env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(site), where
    assert "mode=quick" in outputs and "provenance: vibtools" in outputs

    # 5. the explorer chapter in the same runtime: the live widget over the stored file, with nothing trained
    #    (the checkout's results/ stands in for the download from the repository, which needs the internet)
    cache = tmp_path / "explorer-cache"
    env.update(VIBTOOLS_CACHE=str(cache), VIBTOOLS_RESULTS=str(ROOT / "results"))
    outputs = run_chapter(EXPLORER, wheel, python, work, env)
    assert "application/vnd.jupyter.widget-view+json" in outputs, "the explorer widget was not displayed"
    assert not [f for f in cache.rglob("*") if f.is_file()], "the explorer chapter trained something"
