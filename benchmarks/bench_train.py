"""Training throughput: vibtools (single model and vectorized sweeps) against a plain textbook PyTorch loop.

One model-epoch is 60 000 samples at batch 100 (600 steps). Every row is measured in this one run, on the
same device, after warm-up steps, so the ratios are side by side. Also times the optimizer step and the weight
averaging alone, since on a CPU they are a large share of the plain loop's time.

    python benchmarks/bench_train.py --data ../shared/data [--device cpu|cuda] [--steps 120] [--sweeps 8 16]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

import vibtools as vt
from vibtools.evaluate import _noise
from vibtools.train import TrainConfig, _compiled, _Group, _objective, _train_step

STEPS_PER_EPOCH = 600


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_loop(root: str, device: torch.device, steps: int, warmup: int) -> dict:
    """The textbook loop: DataLoader + ToTensor, default Adam, state_dict EMA, one .item() per step."""
    ds = datasets.MNIST(root, train=True, download=False, transform=transforms.ToTensor())
    loader = DataLoader(ds, batch_size=100, shuffle=True)
    torch.manual_seed(0)
    model = vt.VIB().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.999))
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    prior = vt.prior(256, device=device)
    t_opt = t_ema = 0.0
    it = iter(loader)
    t0 = None
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            t0, t_opt, t_ema = time.perf_counter(), 0.0, 0.0
        x, y = next(it)
        x, y = x.view(-1, 784).to(device), y.to(device)
        q = model.encode(x)
        logits = model.decode(q.rsample())
        class_loss = F.cross_entropy(logits, y) / vt.LN2
        info_loss = torch.distributions.kl_divergence(q, prior).mean() / vt.LN2
        loss = class_loss + 1e-3 * info_loss
        opt.zero_grad()
        loss.backward()
        _sync(device)
        a = time.perf_counter()
        opt.step()
        _sync(device)
        b = time.perf_counter()
        with torch.no_grad():
            for k, v in model.state_dict().items():
                ema[k] = 0.999 * ema[k] + 0.001 * v
        _sync(device)
        t_opt += b - a
        t_ema += time.perf_counter() - b
        loss.item()
    _sync(device)
    per = (time.perf_counter() - t0) / steps
    return {"sec_per_step": per, "opt_ms": 1e3 * t_opt / steps, "avg_ms": 1e3 * t_ema / steps}


def vib_loop(data, device: torch.device, m: int, steps: int, warmup: int, compile_mode: bool | str = False) -> dict:
    """vibtools' own step (resident data, fused Adam, foreach EMA) for a stack of m models."""
    group = _Group([TrainConfig(beta=10.0 ** -(i % 9), seed=i, data_seed=0) for i in range(m)], device)
    group.objective = _compiled(_objective, compile_mode)
    n = len(data.train_x)
    perm = torch.randperm(n, device=device)
    sums = torch.zeros(3, m, device=device)
    t_opt = t_ema = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            t0 = time.perf_counter()
        idx = perm[(step * 100) % n:(step * 100) % n + 100]
        eps = _noise(group.noise, (100, 256), device)
        sums += _train_step(group, data.train_x[idx], data.train_y[idx], eps)
    _sync(device)
    per = (time.perf_counter() - t0) / steps
    if device.type == "cpu":  # optimizer and averaging alone, for the breakdown
        a = time.perf_counter()
        for _ in range(20):
            group.opt.step()
        b = time.perf_counter()
        for _ in range(20):
            group.ema.update()
        t_opt, t_ema = (b - a) / 20, (time.perf_counter() - b) / 20
    return {"sec_per_step": per, "opt_ms": 1e3 * t_opt, "avg_ms": 1e3 * t_ema}


def matmul_floor(device: torch.device, steps: int) -> float:
    """Seconds per step spent in the nine matrix products of one forward+backward step alone (K=256, batch 100).

    No loop can beat this at float32: it bounds the speed-up any implementation can reach over the plain loop.
    """
    g = torch.Generator(device=device).manual_seed(0)
    shapes = [(784, 1024), (1024, 1024), (1024, 512), (256, 10)]
    ws = [torch.randn(i, o, device=device, generator=g) for i, o in shapes]
    hs = [torch.randn(100, i, device=device, generator=g) for i, _ in shapes]
    gs = [torch.randn(100, o, device=device, generator=g) for _, o in shapes]

    def step():
        for i, (w, h, d) in enumerate(zip(ws, hs, gs)):
            h @ w  # forward
            h.T @ d  # weight gradient
            if i > 0:
                d @ w.T  # input gradient (not needed for the images)

    for _ in range(5):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="MNIST root folder (default: $VIBTOOLS_DATA or the cache)")
    ap.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    ap.add_argument("--steps", type=int, default=120, help="timed steps per row (600 = one full epoch)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps before timing")
    ap.add_argument("--sweeps", type=int, nargs="*", default=[8, 16], help="sweep sizes M to time")
    ap.add_argument("--compile", default="", help="also time a torch.compile'd single model: 'default' or "
                                                  "'reduce-overhead' (CUDA graphs on a GPU)")
    ap.add_argument("--json", default=None, help="also write the table to this JSON file")
    args = ap.parse_args()
    dev = vt.pick_device(args.device)
    vt.device.configure_fast_math(dev)
    root = str(args.data or vt.default_data_root())
    data = vt.load_mnist(root, dev)
    rows = [("plain PyTorch loop", 1, plain_loop(root, dev, args.steps, args.warmup))]
    floor = matmul_floor(dev, args.steps) * STEPS_PER_EPOCH  # before any torch.compile (its workers linger)
    rows.append(("vibtools single model", 1, vib_loop(data, dev, 1, args.steps, args.warmup)))
    if args.compile:
        mode = True if args.compile == "default" else args.compile
        rows.append((f"vibtools single model, torch.compile({args.compile})", 1,
                     vib_loop(data, dev, 1, args.steps, max(args.warmup, 20), mode)))
    for m in args.sweeps:
        rows.append((f"vibtools sweep M={m}", m, vib_loop(data, dev, m, max(args.steps // m, 10), args.warmup)))
    base = rows[0][2]["sec_per_step"] * STEPS_PER_EPOCH
    name = vt.device.describe_device(dev)
    print(f"device: {name}, torch {torch.__version__}")
    print("| loop | s per model-epoch | model-epochs per s | speed-up vs plain | optimizer ms/step "
          "| averaging ms/step |")
    print("|---|---|---|---|---|---|")
    table = []
    for label, m, r in rows:
        spe = r["sec_per_step"] * STEPS_PER_EPOCH / m
        table.append({"loop": label, "models": m, "sec_per_model_epoch": spe, "speedup": base / spe, **r})
        print(f"| {label} | {spe:.3f} | {1 / spe:.3f} | {base / spe:.2f}x | {r['opt_ms']:.2f} | {r['avg_ms']:.2f} |")
    print(f"| matrix products alone (floor) | {floor:.3f} | {1 / floor:.3f} | {base / floor:.2f}x (upper bound) "
          "| — | — |")
    table.append({"loop": "matrix products alone", "models": 1, "sec_per_model_epoch": floor,
                  "speedup": base / floor})
    if args.json:
        vt.checkpoint.save_json(args.json, {"device": name, "rows": table})


if __name__ == "__main__":
    main()
