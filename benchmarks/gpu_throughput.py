"""Throughput of the stacked passes that wrote a results folder, as JSON: what a GPU session reports.

Runs trained in one stacked pass share their epoch times, so each pass's model-epochs per second is
(models x epochs) / its summed training seconds. Prints device, torch version and one row per pass.

    python benchmarks/gpu_throughput.py RESULTS [--call-seconds S] [--rc RC] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def passes(results: Path) -> list[dict]:
    """One row per stacked pass found in ``results/<experiment>/*.json``."""
    from vibtools.reproduce import ResultsError, load_results

    groups: dict[tuple, dict] = {}
    for path in sorted(results.glob("*/*.json")):
        try:
            r = load_results(path)
        except ResultsError as exc:
            print(f"skipping {path}: {exc}", file=sys.stderr)
            continue
        seconds = tuple(r["history"]["seconds"])
        g = groups.setdefault((r["experiment"], r["device"], seconds), {
            "experiment": r["experiment"], "device": r["device"], "epochs": len(seconds), "runs": [],
            "training_seconds": round(sum(seconds), 2)})
        g["runs"].append(r["run"])
    rows = list(groups.values())
    for g in rows:
        g["model_epochs_per_s"] = round(len(g["runs"]) * g["epochs"] / max(g["training_seconds"], 1e-9), 3)
    return rows


def main() -> None:
    """Print the session's JSON."""
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path)
    p.add_argument("--call-seconds", type=float, default=None)
    p.add_argument("--rc", type=int, default=None)
    p.add_argument("--device", default="cuda")
    a = p.parse_args()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    print(json.dumps({"device": a.device, "gpu": gpu, "torch": torch.__version__, "call_seconds": a.call_seconds,
                      "reproduce_rc": a.rc, "passes": passes(a.results)}, indent=1))


if __name__ == "__main__":
    main()
