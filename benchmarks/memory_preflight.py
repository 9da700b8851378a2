"""What a user sees when a run needs more memory than the machine has: the pre-flight check, or PyTorch's own error.

    python benchmarks/memory_preflight.py [--k 1000000] [--limit-gib 8]

Runs ``python -m vibtools train --k K --epochs 1`` twice in a child process: as shipped (``preflight.check_memory``
refuses the run before the data is read), and with that check replaced by a no-op, so PyTorch meets the shortage
itself. The second child runs under an address-space limit (``RLIMIT_AS``), so its allocation fails with PyTorch's
error instead of waking the kernel's out-of-memory killer, which ends an uncapped process with SIGKILL and no
message at all (and may kill other processes with it). Prints each child's exit status, seconds and last stderr
lines. Needs MNIST ($VIBTOOLS_DATA).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time

CHILD = """
import sys
import vibtools.store
if sys.argv[1] == "off":
    vibtools.preflight.check_memory = lambda configs, device: None
from vibtools.cli import main
sys.exit(main(sys.argv[2:]))
"""


def run(check: str, k: int, limit: int | None, out: str) -> tuple[int, float, str]:
    """One child: (exit status, seconds, its stderr)."""

    def cap():
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", CHILD, check, "train", "--k", str(k), "--epochs", "1",
                        "--out", out, "--no-progress"], capture_output=True, text=True, preexec_fn=cap)
    return p.returncode, time.perf_counter() - t0, p.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=1_000_000)
    ap.add_argument("--limit-gib", type=float, default=8.0)
    args = ap.parse_args()
    limit = int(args.limit_gib * 2**30)
    with tempfile.TemporaryDirectory() as tmp:
        for check, cap in (("on", None), ("off", limit)):
            code, seconds, err = run(check, args.k, cap, f"{tmp}/{check}")
            lines = [line for line in err.strip().splitlines() if line.strip()]
            print(f"pre-flight {check}{'' if cap is None else f', RLIMIT_AS {args.limit_gib:g} GiB'}: exit {code} "
                  f"after {seconds:.1f} s, {len(lines)} stderr line(s); last: {lines[-1] if lines else ''}")


if __name__ == "__main__":
    main()
