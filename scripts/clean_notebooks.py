"""Strip volatile metadata (execution timestamps, Colab keys, the kernel's Python version) from the book's notebooks.

    python scripts/clean_notebooks.py            # clean book/*.ipynb in place
    python scripts/clean_notebooks.py --check    # list the dirty notebooks, exit 1 if any, write nothing
    python scripts/clean_notebooks.py a.ipynb …  # other notebooks

Removed: each cell's ``metadata.execution`` and ``metadata.colab``; the notebook's ``metadata.colab`` and
``metadata.widgets`` with the widget views that refer to it (a widget needs a live kernel, so the site draws
none, and the explorer's state alone was 187 kB);
``metadata.language_info.version``; every ``metadata.kernelspec`` field other than
display_name, language and name.  Merged: consecutive stream outputs of one cell and stream (a kernel sends one
per flush; a frontend shows them as one block).  Kept: ``metadata.accelerator`` (Colab opens the notebook on a
GPU runtime), sources, other outputs, execution counts and everything else.  A notebook is rewritten only when
something was removed, in nbformat's layout (one-space indent, non-ASCII kept as is, trailing newline) and in the
key order it was read in, so a clean notebook is left byte for byte and the diff of a dirty one shows only the
removed keys.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GLOB = "book/*.ipynb"
NOTEBOOK_KEYS = ("colab", "widgets")  # written by Colab, and the kernel's widget state ("accelerator": kept)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
CELL_KEYS = ("execution", "colab")  # cell-level metadata: execution timestamps, Colab's per-cell state
KERNELSPEC_KEEP = ("display_name", "language", "name")


def _strip(nb: dict) -> list[str]:
    """Remove the volatile keys from `nb` in place and return their dotted names (cells counted, not listed)."""
    removed: list[str] = []
    meta = nb.get("metadata", {})
    for key in NOTEBOOK_KEYS:
        if key in meta:
            del meta[key]
            removed.append(f"metadata.{key}")
    info = meta.get("language_info")
    if isinstance(info, dict) and "version" in info:
        del info["version"]
        removed.append("metadata.language_info.version")
    spec = meta.get("kernelspec")
    if isinstance(spec, dict):
        for key in [k for k in spec if k not in KERNELSPEC_KEEP]:
            del spec[key]
            removed.append(f"metadata.kernelspec.{key}")
    for key in CELL_KEYS:
        hits = 0
        for cell in nb.get("cells", []):
            cell_meta = cell.get("metadata", {})
            if key in cell_meta:
                del cell_meta[key]
                hits += 1
        if hits:
            removed.append(f"cells[*].metadata.{key} ({hits} cell{'s' if hits > 1 else ''})")
    merged = views = 0
    for cell in nb.get("cells", []):
        outputs = cell.get("outputs")
        if not outputs:
            continue
        kept = [o for o in outputs if WIDGET_VIEW not in o.get("data", {})]
        views += len(outputs) - len(kept)
        joined: list[dict] = []
        for out in kept:  # a kernel sends one stream message per flush; a frontend shows them as one block
            prev = joined[-1] if joined else None
            if (prev is not None and out.get("output_type") == "stream" and prev.get("output_type") == "stream"
                    and out.get("name") == prev.get("name")):
                prev["text"] = _text(prev["text"]) + _text(out["text"])
                merged += 1
            else:
                joined.append(out)
        cell["outputs"] = joined
    if views:
        removed.append(f"widget views ({views})")
    if merged:
        removed.append(f"split stream outputs ({merged} merged into the one before)")
    return removed


def _text(text) -> str:
    """A stream output's text, stored as one string or as a list of lines."""
    return "".join(text) if isinstance(text, list) else text


def dirty_keys(nb: dict) -> list[str]:
    """The volatile keys `nb` holds, as dotted names; `nb` itself is not changed."""
    return _strip(copy.deepcopy(nb))


def clean(nb: dict) -> list[str]:
    """Strip the volatile keys from `nb` in place; return what was removed (empty when it was clean)."""
    return _strip(nb)


def dumps(nb: dict) -> str:
    """Serialise `nb` in nbformat's on-disk layout, keeping its key order."""
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def _validate(nb: dict, path: Path) -> None:
    """Check `nb` against the nbformat schema when nbformat is installed (on a copy: nbformat may repair in place)."""
    try:
        import nbformat
    except ImportError:  # the cleaner itself needs only the standard library
        return
    try:
        nbformat.validate(nbformat.from_dict(copy.deepcopy(nb)))
    except nbformat.ValidationError as err:
        raise SystemExit(f"{path}: not a valid notebook after cleaning: {err.message}") from err


def clean_file(path: Path, check: bool = False) -> list[str]:
    """Clean one notebook in place (only report with `check`); return the keys removed (or that would be)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    removed = dirty_keys(nb) if check else clean(nb)
    if removed and not check:
        _validate(nb, Path(path))
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(dumps(nb))
    return removed


def default_paths() -> list[Path]:
    """The book's notebooks, book/*.ipynb, sorted."""
    return sorted(ROOT.glob(DEFAULT_GLOB))


def check_paths(paths: list[Path] | None = None) -> dict[Path, list[str]]:
    """Map each dirty notebook among `paths` (default: the book's) to its volatile keys; writes nothing."""
    result = {}
    for path in paths if paths is not None else default_paths():
        removed = clean_file(path, check=True)
        if removed:
            result[Path(path)] = removed
    return result


def _display(path: Path) -> str:
    """`path` relative to the repository when it lies inside it, else as given."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    """Command line: clean the notebooks given (default book/*.ipynb), or with --check list the dirty ones."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help=f"notebooks to clean (default: {DEFAULT_GLOB})")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 and list each dirty notebook")
    args = parser.parse_args(argv)
    paths = args.paths or default_paths()
    if not paths:
        parser.error(f"no notebooks found ({DEFAULT_GLOB})")
    dirty = 0
    for path in paths:
        removed = clean_file(path, check=args.check)
        if removed:
            dirty += 1
            verb = "volatile metadata" if args.check else "removed"
            print(f"{_display(path)}: {verb}: {', '.join(removed)}")
    return 1 if args.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())
