"""The package's import graph, its code lines per module, and what one ``vt.train`` call loads.

Usage: ``python scripts/import_graph.py [PACKAGE_DIR] [--dot FILE]``, from a checkout (default: ./vibtools).

Prints one line per module (code lines: neither blank nor comments nor docstrings; its imports of other vibtools
modules, at module level and inside functions), the totals, and the vibtools modules a fresh interpreter holds
after ``import vibtools as vt; vt.train`` (the face resolves the name; nothing is trained). ``--dot`` also writes
the graph for Graphviz (``dot -Tsvg FILE``): solid edges load with the module, dashed ones when a function runs.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path


def code_lines(tree: ast.Module, source: str) -> int:
    """Lines that are neither blank, nor comments, nor docstrings."""
    doc: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            doc.update(range(body[0].lineno, body[0].end_lineno + 1))
    return sum(1 for i, line in enumerate(source.splitlines(), 1)
               if line.strip() and not line.strip().startswith("#") and i not in doc)


def imports(tree: ast.Module, modules: set[str]) -> tuple[set[str], set[str]]:
    """(module-level, inside functions) imports of other modules of the package; TYPE_CHECKING blocks left out."""
    top, lazy = set(), set()

    def names(node) -> set[str]:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                return {node.module.split(".")[0]} & modules
            return {a.name for a in node.names} & modules
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vibtools."):
            return {node.module.split(".")[1]} & modules
        if isinstance(node, ast.Import):
            return {a.name.split(".")[1] for a in node.names if a.name.startswith("vibtools.")} & modules
        return set()

    def visit(node, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                (lazy if in_function else top).update(names(child))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return top, lazy - top


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("package", nargs="?", default="vibtools", type=Path)
    p.add_argument("--dot", type=Path, default=None)
    args = p.parse_args()
    files = sorted(f for f in args.package.glob("*.py"))
    modules = {f.stem for f in files}
    rows, edges = [], []
    for f in files:
        source = f.read_text()
        tree = ast.parse(source)
        top, lazy = imports(tree, modules - {f.stem})
        rows.append((f.stem, code_lines(tree, source), sorted(top), sorted(lazy)))
        edges += [(f.stem, t, "top") for t in top] + [(f.stem, t, "lazy") for t in lazy]
    for name, lines, top, lazy in rows:
        print(f"{name:<14} {lines:5d}  imports {', '.join(top) or '-'}" + (f"; in functions {', '.join(lazy)}"
                                                                            if lazy else ""))
    n_top = sum(1 for e in edges if e[2] == "top")
    print(f"# {len(rows)} modules, {sum(r[1] for r in rows)} code lines, {n_top} module-level import edges, "
          f"{len(edges) - n_top} inside functions")
    probe = ("import sys, json; import vibtools as vt; vt.train; "
             "print(json.dumps(sorted(m for m in sys.modules if m.startswith('vibtools.'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=args.package.parent)
    if out.returncode == 0:
        loaded = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"# vt.train loads {len(loaded)} vibtools modules: {', '.join(m.split('.')[1] for m in loaded)}")
    if args.dot:
        lines = ["digraph vibtools {", "  rankdir=LR; node [shape=box, fontname=Helvetica];"]
        lines += [f'  "{a}" -> "{b}"' + (" [style=dashed]" if kind == "lazy" else "") + ";" for a, b, kind in edges]
        args.dot.write_text("\n".join(lines + ["}"]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
