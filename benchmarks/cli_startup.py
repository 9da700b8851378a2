"""How long ``python -m vibtools --help`` and an argument error take, this checkout against another commit's.

    python benchmarks/cli_startup.py [--before 6a3af5c] [--repeats 7]

Both trees are run by the same interpreter, alternately (so a busy machine slows both alike), each command
``--repeats`` times; the medians and their ratio are printed. The other commit is checked out into a temporary
git worktree, which is removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (["--help"], ["train", "--beta", "-1"])


def seconds(tree: Path, args: list[str]) -> float:
    """Wall time of one ``python -m vibtools ARGS`` importing the package from ``tree``."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vibtools", *args], cwd=tempfile.gettempdir(), capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(tree)})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="6a3af5c", help="the commit to compare with (default: before the redesign)")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(old), args.before], check=True)
        try:
            times = {(t, i): [] for t in ("before", "now") for i in range(len(COMMANDS))}
            for _ in range(args.repeats):
                for i, command in enumerate(COMMANDS):
                    for label, tree in (("before", old), ("now", ROOT)):
                        times[label, i].append(seconds(tree, command))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=True)
    for i, command in enumerate(COMMANDS):
        b, n = statistics.median(times["before", i]), statistics.median(times["now", i])
        print(f"python -m vibtools {' '.join(command)}: {args.before} {b:.2f} s, this checkout {n:.2f} s "
              f"(medians of {args.repeats}), {b / n:.0f}x")


if __name__ == "__main__":
    main()
