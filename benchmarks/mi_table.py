"""The (n, N) table log q(z_i | x_j) behind ``encoder_mi_bounds``: two matrix products against ``log_prob``.

Times both ways of building the table for diagonal Gaussian posteriors at K=256 side by side in one process, and
checks that they agree:

    python benchmarks/mi_table.py [--n 2000] [--k 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from torch.distributions import Independent, Normal

from vibtools.infotheory import _pairwise_log_density


def by_log_prob(z: torch.Tensor, q: Independent, chunk: int = 50) -> torch.Tensor:
    """The same table by broadcasting ``log_prob`` over (chunk, N, K) blocks."""
    return torch.cat([q.log_prob(z[s:s + chunk, None, :]) for s in range(0, len(z), chunk)])


def best_of(fn, repeats: int) -> float:
    """The fastest of ``repeats`` wall-clock timings of fn(), in seconds."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    """Build both tables, check them equal, print the times and their ratio."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="inputs N (the table is N x N)")
    ap.add_argument("--k", type=int, default=256, help="latent size K")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(args.n, args.k, generator=g, dtype=torch.float64)
    q = Independent(Normal(mu, 0.05 + torch.rand(args.n, args.k, generator=g, dtype=torch.float64)), 1)
    z = mu + 0.1 * torch.randn(args.n, args.k, generator=g, dtype=torch.float64)
    fast, slow = _pairwise_log_density(z, q), by_log_prob(z, q)
    err = float(((fast - slow).abs() / slow.abs().clamp_min(1.0)).max())
    t_fast = best_of(lambda: _pairwise_log_density(z, q), args.repeats)
    t_slow = best_of(lambda: by_log_prob(z, q), args.repeats)
    print(f"device: cpu ({platform.machine()}, {torch.get_num_threads()} threads), torch {torch.__version__}")
    print(f"N={args.n}, K={args.k}, float64: max relative difference {err:.1e}")
    print(f"matrix products {t_fast:.3f} s, log_prob broadcast {t_slow:.3f} s: {t_slow / t_fast:.0f}x")


if __name__ == "__main__":
    main()
