"""M VIB models with stacked weights, trained in one pass by batched matrix products (chapter 4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .bounds import class_loss_bits, info_loss_bits
from .model import VIB, posterior, prior, reparameterize

# The weights are stacked by hand rather than through torch.func.stack_module_state + vmap: with every
# model in one tensor per layer, torch.optim's fused Adam and one foreach EMA update serve all M models in
# single kernels, and each layer is one baddbmm. Names follow VIB.state_dict() with "." -> "_"; weights are
# stored as (M, in, out), the transpose of nn.Linear's layout, so that the weight gradient of baddbmm comes out
# contiguous (the other layout cost a full copy of every gradient per step, measured on CPU).


def flip(name: str, t: torch.Tensor) -> torch.Tensor:
    """Convert a weight between nn.Linear's (out, in) layout and the stack's (in, out); biases pass through."""
    return t.transpose(-1, -2) if name.endswith("weight") else t


def vib_name(stack_name: str) -> str:
    """VIB.state_dict() key of a stack parameter name ("enc1_weight" -> "enc1.weight")."""
    return stack_name.replace("_", ".", 1)


class VIBStack(nn.Module):
    """M VIB models of the same shape whose parameters carry a leading model dimension."""

    def __init__(self, models: list[VIB]):
        super().__init__()
        if not models:
            raise ValueError("a stack needs at least one model")
        first = models[0]
        self.k, self.covariance, self.m = first.k, first.covariance, len(models)
        self._template = [first.k, first.covariance, first.enc1.out_features, first.dec.out_features]
        states = [m.state_dict() for m in models]
        for name in states[0]:
            stacked = torch.stack([flip(name, s[name].detach()) for s in states]).contiguous()
            self.register_parameter(name.replace(".", "_"), nn.Parameter(stacked))

    def layer(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"{name}_weight"), getattr(self, f"{name}_bias")

    def _linear(self, h: torch.Tensor, name: str) -> torch.Tensor:
        w, b = self.layer(name)
        if self.m == 1:  # one model: a plain addmm is faster than a batch-of-one bmm (measured on CPU)
            return torch.addmm(b.squeeze(0), h.squeeze(0), w.squeeze(0)).unsqueeze(0)
        return torch.baddbmm(b.unsqueeze(1), h, w)

    def encode_head(self, x: torch.Tensor) -> torch.Tensor:
        """(M, B, head) encoder outputs for shared images x of shape (B, 784)."""
        h = (2 * x - 1).expand(self.m, *x.shape)
        h = F.relu(self._linear(h, "enc1"))
        h = F.relu(self._linear(h, "enc2"))
        return self._linear(h, "enc3")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Logits (..., M, B, 10) for codes z of shape (..., M, B, K)."""
        w, b = self.layer("dec")
        return z @ w + b.unsqueeze(1)

    def latent(self, head: torch.Tensor, eps: torch.Tensor | None):
        """(z, q) for encoder outputs: z = mu + L eps (z = mu for the deterministic variant, q = None)."""
        if self.covariance == "none":
            mu = head[..., : self.k]
            return (mu if eps is None else mu.expand(*eps.shape)), None
        q = posterior(head, self.k, self.covariance)
        return (q.mean if eps is None else reparameterize(q, eps)), q

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor):
        """Per-model class loss and info loss in bits, and the count of misclassified examples, each (M,)."""
        z, q = self.latent(self.encode_head(x), eps)
        logits = self.decode(z)
        class_bits = class_loss_bits(logits, y)
        info_bits = self.info_bits(q) if q is not None else class_bits.new_zeros(self.m)
        wrong = (logits.argmax(-1) != y).sum(-1)
        return class_bits, info_bits, wrong

    def info_bits(self, q) -> torch.Tensor:
        return info_loss_bits(q, prior(self.k, self.covariance, q.mean.device))

    def unstack(self) -> list[VIB]:
        """The M models as separate VIB modules (copies, on the stack's device)."""
        k, cov, hidden, n_classes = self._template
        out = []
        for i in range(self.m):
            model = VIB(k, cov, hidden, n_classes).to(self.enc1_weight.device)
            model.load_state_dict(self.model_tensors(dict(self.named_parameters()), i))
            out.append(model)
        return out

    @staticmethod
    def model_tensors(tensors: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
        """Model i's slice of stack-keyed tensors (parameters, Adam moments, EMA) as a VIB.state_dict()."""
        return {vib_name(n): flip(n, t[i].detach()).contiguous().clone() for n, t in tensors.items()}

    @staticmethod
    def stack_tensors(per_model: list[dict[str, torch.Tensor]], names: list[str]) -> dict[str, torch.Tensor]:
        """Inverse of :meth:`model_tensors`: stack VIB-keyed tensors of M models under stack names."""
        return {n: torch.stack([flip(n, d[vib_name(n)]) for d in per_model]).contiguous() for n in names}
