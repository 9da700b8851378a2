"""How much a stored run's test numbers move with the evaluation noise alone (the draws of z), not with training.

Evaluates the raw and the EMA weights of one run file on the test set under N seeds of the evaluation noise and
prints each metric's mean and standard deviation over those draws, in the reference notebook's units:

    python benchmarks/eval_noise.py RUN.pt --data ../shared/data [--draws 10] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics

import vibtools as vt


def cell(draws: list[dict], key: str, scale: float = 1.0, unit: str = "") -> str:
    """mean ± sd of one metric over the draws."""
    values = [scale * d[key] for d in draws]
    return f"{statistics.mean(values):.2f}{unit} ± {statistics.stdev(values):.2f}{unit}"


def main() -> None:
    """Parse the options, evaluate under every seed, print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a run file written by vibtools (<cache>/<key>.pt, or the CLI's --out folder)")
    ap.add_argument("--data", default=None, help="MNIST root folder (default: $VIBTOOLS_DATA or the cache)")
    ap.add_argument("--draws", type=int, default=10, help="seeds of the evaluation noise (default 10)")
    ap.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    args = ap.parse_args()
    if args.draws < 2:
        ap.error("--draws must be at least 2 (a spread needs two draws)")
    run = vt.load_run(args.run, device=args.device)
    dev = next(run.model.parameters()).device
    data = vt.load_mnist(args.data, dev)
    print(f"run: {args.run} ({run.config.epochs} epochs, beta={run.config.beta:g}, K={run.config.k}); "
          f"{args.draws} draws of the evaluation noise on the {len(data.test_x)} test images")
    print("| weights | I(Z;Y) [bits] | I(Z;X) [bits] | error, 1 sample | error, 12 samples |")
    print("|---|---|---|---|---|")
    for label, model in (("raw (last epoch)", run.model), ("EMA", run.ema_model)):
        draws = [vt.evaluate(model, data.test_x, data.test_y, run.config.n_eval_samples, seed=s)
                 for s in range(args.draws)]

        cells = [cell(draws, "izy"), cell(draws, "izx"), cell(draws, "err", 100, "%"), cell(draws, "avg_err", 100, "%")]
        print(f"| {label} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
