"""The objective J = class loss + β·rate of stored K=2 runs, its class loss averaged over many draws of z.

    python scripts/objective_draws.py --data ../shared/data results/k2/vib-beta1-k2-e200-seed*.json

A results record holds J's class loss from one draw of z per test image, and a one-draw estimate carries Monte
Carlo noise. Near the collapsed optimum J − H(Y) is a few thousandths of a bit, about the size of that noise, so
chapter 4 reads it from here instead: for each record this loads the run's EMA model from the run cache (it trains
nothing), computes the rate in closed form and the class loss over the 10 000 test images for ``--draws``
independent draws of z, and writes ``results/k2/objective-draws/<run>.json`` beside the records. A run that is not
in the run cache, or a record that is not a finished K=2 run, stops the script with a one-line message before
anything is written; so does a cached model whose exact rate differs from the record's (another training
of the same config).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from vibtools import load_mnist
from vibtools.bounds import class_loss_bits
from vibtools.config import TrainConfig
from vibtools.reproduce import ResultsError, code_version, data_record, load_results
from vibtools.results import OBJECTIVE_FOLDER
from vibtools.store import default_cache_dir, run_key, save_json
from vibtools.training import load_run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", nargs="+", type=Path, help="K=2 results records (results/k2/*.json)")
    ap.add_argument("--data", required=True, help="the folder holding MNIST/raw/ (the full set)")
    ap.add_argument("--draws", type=int, default=100, help="draws of z per test image (default 100)")
    args = ap.parse_args()
    if args.draws < 2:
        sys.exit("--draws must be at least 2 (the spread of one draw needs two)")
    records = []
    for path in args.records:  # check everything before computing or writing anything
        if not path.is_file():
            sys.exit(f"{path}: no such record; give results/k2/<run>.json files")
        try:
            record = load_results(path)
        except ResultsError as exc:
            sys.exit(str(exc))
        config = TrainConfig.from_dict(record["config"])
        if config.k != 2 or not record.get("final"):
            sys.exit(f"{path}: not a finished K=2 run; give results/k2/<run>.json files")
        records.append((path, record, config))
    try:
        data = load_mnist(args.data, download=False)
    except (OSError, ValueError, RuntimeError) as exc:
        sys.exit(f"--data {args.data}: {exc}")
    fingerprint = data_record(data)["fingerprint"]
    todo = []
    for path, record, config in records:
        if record["data"]["fingerprint"] != fingerprint:
            sys.exit(f"{path}: made on other data than {args.data}; give the folder the run was trained on")
        cached = default_cache_dir() / f"{run_key(config, fingerprint)}.pt"
        if not cached.is_file():
            sys.exit(f"{path}: its run is not in the run cache ({cached}); train it with `vibtools reproduce` first")
        todo.append((path, record, config, cached))
    x, y = data.test_x, data.test_y
    freq = torch.bincount(y).double() / len(y)
    h_y = float(-(freq * freq.log2()).sum())
    done = []
    for path, record, config, cached in todo:  # compute everything, then write
        model = load_run(cached, "cpu").ema_model.eval()
        gen = torch.Generator().manual_seed(config.seed)
        with torch.no_grad():
            q = model.encode(x)
            prior = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
            rate = float(torch.distributions.kl_divergence(q, prior).mean()) / math.log(2)
            stored_rate = record["final"]["ema_test"]["izx"]
            if not math.isclose(rate, stored_rate, rel_tol=1e-5):
                # the rate is exact given the weights: a mismatch means the cache holds another training of this
                # config (a one-model run rounds differently from the stacked pass that wrote the record)
                sys.exit(f"{path}: the run cache holds a different model than this record (rate {rate:.6f} bit, "
                         f"record {stored_rate:.6f}); retrain it with `vibtools reproduce` or leave it out")
            class_bits = []
            for _ in range(args.draws):
                z = q.mean + (q.scale_tril @ torch.randn(len(x), 2, 1, generator=gen)).squeeze(-1)
                class_bits.append(float(class_loss_bits(model.decode(z), y)))
        done.append((path, record, config, rate, class_bits))
    for path, record, config, rate, class_bits in done:
        out = path.parent / OBJECTIVE_FOLDER / path.name
        out.parent.mkdir(exist_ok=True)
        save_json(out, {"run": record["run"], "beta": config.beta, "draws": args.draws, "h_y_bits": h_y,
                        "rate_bits": rate, "class_bits": class_bits, "data": record["data"],
                        "code": code_version()})
        j = [c + config.beta * rate for c in class_bits]
        mean = sum(j) / len(j)
        sd = math.sqrt(sum((v - mean) ** 2 for v in j) / (len(j) - 1))
        print(f"{out}: J - H(Y) = {mean - h_y:+.4f} bit over {args.draws} draws (one draw: sd {sd:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
