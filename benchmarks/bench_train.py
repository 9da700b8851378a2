"""Training throughput: vibtools (single model and vectorized sweeps) against a plain textbook PyTorch loop.

One model-epoch is 60 000 samples at batch 100 (600 steps). Every row is measured in this one run, on the
same device, after warm-up steps, so the ratios are side by side. Also times the optimizer step and the weight
averaging alone, since on a CPU they are a large share of the plain loop's time; M models trained at once with
torch.func (stack_module_state + vmap) beside vibtools' hand-stacked layout; and whole command-line runs
(``python -m vibtools train``) from start to exit, split into training, evaluation and the rest.

    python benchmarks/bench_train.py --data ../shared/data [--device cpu|cuda] [--steps 120] [--sweeps 8 16]
                                     [--vmap 4] [--end-to-end 1 10]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

import vibtools as vt
from vibtools.bounds import stack_loss
from vibtools.device import maybe_compile
from vibtools.evaluation import draw_noise
from vibtools.training import TrainState, train_step

STEPS_PER_EPOCH = 600


def _sync(device: torch.device) -> None:
    """Wait for the GPU (timing needs it); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize()


class PlainVIB(nn.Module):
    """The textbook model: nn.Linear layers, encoder 784-1024-1024-2K, decoder K-10 (the reference's shapes)."""

    def __init__(self, k: int = 256):
        super().__init__()
        self.k = k
        self.enc1, self.enc2, self.enc3 = nn.Linear(784, 1024), nn.Linear(1024, 1024), nn.Linear(1024, 2 * k)
        self.dec = nn.Linear(k, 10)

    def forward(self, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class loss and info loss in bits for one batch and given noise (written out, so vmap can trace it)."""
        head = self.enc3(F.relu(self.enc2(F.relu(self.enc1(2 * x - 1)))))
        mu, sigma = head[:, : self.k], F.softplus(head[:, self.k:] - 5.0)
        logits = self.dec(mu + sigma * eps)
        class_bits = F.cross_entropy(logits, y) / vt.LN2
        info_bits = 0.5 * (mu**2 + sigma**2 - 1 - 2 * sigma.log()).sum(-1).mean() / vt.LN2
        return class_bits, info_bits


def plain_loop(root: str, device: torch.device, steps: int, warmup: int) -> dict:
    """The textbook loop: DataLoader + ToTensor, default Adam, state_dict EMA, one .item() per step."""
    ds = datasets.MNIST(root, train=True, download=False, transform=transforms.ToTensor())
    loader = DataLoader(ds, batch_size=100, shuffle=True)
    torch.manual_seed(0)
    model = PlainVIB().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.999))
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    t_opt = t_ema = 0.0
    it = iter(loader)
    t0 = None
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            t0, t_opt, t_ema = time.perf_counter(), 0.0, 0.0
        x, y = next(it)
        x, y = x.view(-1, 784).to(device), y.to(device)
        class_loss, info_loss = model(x, y, torch.randn(len(x), model.k, device=device))
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
    state = TrainState([vt.TrainConfig(beta=10.0 ** -(i % 9), seed=i, data_seed=0) for i in range(m)], device)
    step_fn = maybe_compile(stack_loss, compile_mode)
    n = len(data.train_x)
    perm = torch.randperm(n, device=device)
    sums = torch.zeros(3, m, device=device)
    t_opt = t_ema = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            t0 = time.perf_counter()
        idx = perm[(step * 100) % n:(step * 100) % n + 100]
        eps = draw_noise(state.noise, (100, 256), device)
        sums += train_step(state, step_fn, data.train_x[idx], data.train_y[idx], eps)
    _sync(device)
    per = (time.perf_counter() - t0) / steps
    if device.type == "cpu":  # optimizer and averaging alone, for the breakdown
        a = time.perf_counter()
        for _ in range(20):
            state.opt.step()
        b = time.perf_counter()
        for _ in range(20):
            state.ema.update()
        t_opt, t_ema = (b - a) / 20, (time.perf_counter() - b) / 20
    return {"sec_per_step": per, "opt_ms": 1e3 * t_opt, "avg_ms": 1e3 * t_ema}


def vmap_loop(data, device: torch.device, m: int, steps: int, warmup: int) -> dict:
    """M models at once the torch.func way: stack_module_state + vmap(functional_call), fused Adam, foreach EMA.

    The alternative to vibtools' hand-stacked weights; the same recipe and shapes, timed side by side.
    """
    from torch.func import functional_call, stack_module_state, vmap

    torch.manual_seed(0)
    models = [PlainVIB().to(device) for _ in range(m)]
    params, buffers = stack_module_state(models)
    base = PlainVIB().to("meta")

    def loss_one(p, b, x, y, eps, beta):
        """One model's VIB loss."""
        class_bits, info_bits = functional_call(base, (p, b), (x, y, eps), strict=True, tie_weights=False)
        return class_bits + beta * info_bits

    def loss_fn(p, b, x, y, eps, beta):
        """Every model's loss, summed (the models share no weights)."""
        return vmap(loss_one, in_dims=(0, 0, None, None, 0, 0))(p, b, x, y, eps, beta).sum()

    opt = torch.optim.Adam(params.values(), lr=1e-4, betas=(0.5, 0.999), fused=device.type in ("cpu", "cuda"))
    ema = vt.EMA(params.values(), 0.999)
    betas = torch.full((m,), 1e-3, device=device)
    gens = [torch.Generator(device=device).manual_seed(i) for i in range(m)]
    n = len(data.train_x)
    perm = torch.randperm(n, device=device)
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            t0 = time.perf_counter()
        idx = perm[(step * 100) % n:(step * 100) % n + 100]
        eps = draw_noise(gens, (100, 256), device)
        loss = loss_fn(params, buffers, data.train_x[idx], data.train_y[idx], eps, betas)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update()
    _sync(device)
    return {"sec_per_step": (time.perf_counter() - t0) / steps, "opt_ms": float("nan"), "avg_ms": float("nan")}


def end_to_end(root: str, device: torch.device, epochs: int) -> dict:
    """One ``python -m vibtools train`` run from start to exit, into an empty folder, timed from outside.

    Returns the start-to-exit seconds and the command's own split of them: training (the epochs' steps),
    evaluation (per-epoch test evaluations and the final one) and the rest (start-up, data, saving).
    """
    with tempfile.TemporaryDirectory(prefix="vib-e2e-") as out:
        cmd = [sys.executable, "-m", "vibtools", "train", "--epochs", str(epochs), "--data", root, "--out",
               str(Path(out) / "runs"), "--device", device.type, "--no-progress"]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
    found = dict(re.findall(r"(training|evaluation)=([0-9.]+)s", r.stdout))
    training, evaluation = float(found["training"]), float(found["evaluation"])
    return {"epochs": epochs, "start_to_exit_s": wall, "training_s": training, "evaluation_s": evaluation,
            "rest_s": wall - training - evaluation, "evaluation_share": evaluation / wall,
            "start_to_exit_over_training": wall / training}


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
    """Parse the options, time every row in this one run, print the tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="MNIST root folder (default: $VIBTOOLS_DATA or the cache)")
    ap.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    ap.add_argument("--steps", type=int, default=120, help="timed steps per row (600 = one full epoch)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps before timing")
    ap.add_argument("--sweeps", type=int, nargs="*", default=[8, 16], help="sweep sizes M to time")
    ap.add_argument("--compile", default="", help="also time a torch.compile'd single model: 'default' or "
                                                  "'reduce-overhead' (CUDA graphs on a GPU)")
    ap.add_argument("--vmap", type=int, default=4, help="models for the torch.func (vmap) comparison, 0 to skip")
    ap.add_argument("--end-to-end", type=int, nargs="*", default=[1, 10],
                    help="epochs of the whole command-line runs to time (none to skip)")
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
    if args.vmap:
        m, steps = args.vmap, max(args.steps // args.vmap, 10)
        rows.append((f"vibtools sweep M={m} (hand-stacked)", m, vib_loop(data, dev, m, steps, args.warmup)))
        rows.append((f"torch.func stack_module_state + vmap, M={m}", m, vmap_loop(data, dev, m, steps, args.warmup)))
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
    runs = [end_to_end(root, dev, e) for e in args.end_to_end]
    if runs:
        print("\n| command-line run | start to exit [s] | training [s] | evaluation [s] | rest [s] "
              "| evaluation share | start-to-exit / training |")
        print("|---|---|---|---|---|---|---|")
        for r in runs:
            print(f"| {r['epochs']} epoch(s) | {r['start_to_exit_s']:.1f} | {r['training_s']:.1f} | "
                  f"{r['evaluation_s']:.1f} | {r['rest_s']:.1f} | {100 * r['evaluation_share']:.1f}% | "
                  f"{r['start_to_exit_over_training']:.2f}x |")
    if args.json:
        vt.store.save_json(args.json, {"device": name, "torch": torch.__version__, "rows": table,
                                            "end_to_end": runs})


if __name__ == "__main__":
    main()
