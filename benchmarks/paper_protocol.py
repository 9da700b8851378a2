"""The paper's MNIST protocol: K=256, β=1e-3, 200 epochs, 3 seeds; EMA 12-sample test error, mean and spread.

Meant for a GPU (about 0.15 s per epoch on an H100-class card with --compile; hours on a CPU). One command:

    python benchmarks/paper_protocol.py --data ../shared/data --out paper_protocol.json [--device cuda]

The paper reports 1.13% test error; the reference notebook's authors reached 1.21%. Each seed is trained on
its own (its own batch order) and stored in the run cache, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import vibtools as vt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="MNIST root folder (default: $VIBTOOLS_DATA or the cache)")
    ap.add_argument("--device", default=None, help="cuda, cpu, mps (default: best available)")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--beta", type=float, default=1e-3)
    ap.add_argument("--compile", default="", help="torch.compile mode: '', 'default' or 'reduce-overhead'")
    ap.add_argument("--cache", default=True, help="run cache folder (default: vibtools' cache)")
    ap.add_argument("--out", default="paper_protocol.json", help="where to write the results JSON")
    args = ap.parse_args()
    dev = vt.pick_device(args.device)
    data = vt.load_mnist(args.data, dev)
    compile_mode = {"": False, "default": True}.get(args.compile, args.compile)
    runs = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        r = vt.train(vt.TrainConfig(beta=args.beta, epochs=args.epochs, seed=seed), data, device=str(dev),
                     cache=args.cache, compile=compile_mode)
        m = r.final["ema_test"]
        runs.append({"seed": seed, "ema_test_err_12": m["avg_err"], "ema_test_err_1": m["err"],
                     "izx": m["izx"], "izy": m["izy"], "from_cache": r.from_cache,
                     "train_seconds": sum(r.history["seconds"]), "wall_seconds": time.perf_counter() - t0})
        print(vt.format_line(f"seed {seed} EMA", m), flush=True)
    errs = [r["ema_test_err_12"] for r in runs]
    summary = {
        "protocol": {"k": 256, "beta": args.beta, "epochs": args.epochs, "seeds": args.seeds, "batch_size": 100},
        "device": vt.device.describe_device(dev), "vibtools": vt.__version__,
        "ema_test_err_12_mean": statistics.mean(errs),
        "ema_test_err_12_std": statistics.stdev(errs) if len(errs) > 1 else 0.0,
        "ema_test_err_12_min": min(errs), "ema_test_err_12_max": max(errs),
        "paper": 0.0113, "reference_authors": 0.0121, "runs": runs,
    }
    vt.checkpoint.save_json(args.out, summary)
    print(f"EMA 12-sample test error {100 * summary['ema_test_err_12_mean']:.2f}% ± "
          f"{100 * summary['ema_test_err_12_std']:.2f} (mean ± sd over {len(errs)} seeds) on {summary['device']}; "
          f"written to {args.out}")


if __name__ == "__main__":
    main()
