"""The VIB network: an MLP encoder to q(z|x) and a linear decoder, written once for one model and for a stack of M.

`VIBStack` holds M models of one shape with every layer's weights stacked along a leading model dimension and
defines the forward pass; `VIB` is its one-model case with per-model shapes. Training always runs the stacked
code, a single model included. One model's layers are plain matrix products (addmm), a stack's are batched ones
(baddbmm), which round differently in the last bits: a model trained alone and the same model trained in a sweep
agree to float rounding (about 1e-4 relative after training; tests/test_training.py), not bit for bit,
and the run cache serves whichever of the two was stored first.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
    kl_divergence,
)

from .bounds import LN2, class_loss_bits, info_loss_bits
from .config import COVARIANCES

N_PIXELS = 784

# The weights are stacked by hand rather than through torch.func.stack_module_state + vmap: with every model in
# one tensor per layer, torch.optim's fused Adam and one foreach EMA update serve all M models in single kernels,
# and each layer is one baddbmm (benchmarks/bench_train.py measures both layouts side by side). Weights are
# stored as (M, in, out), the transpose of nn.Linear's layout, so that the weight gradient of baddbmm comes out
# contiguous (the other layout cost a full copy of every gradient per step, measured on CPU).


def head_dim(k: int, covariance: str) -> int:
    """Width of the encoder's last layer: mean plus scale parameters of q(z|x)."""
    widths = {"diag": 2 * k, "full": k + k * (k + 1) // 2, "unit": k, "none": k}
    if covariance not in widths:
        raise ValueError(f"unknown covariance {covariance!r}: use one of {', '.join(COVARIANCES)}")
    return widths[covariance]


# ----- the encoder's extension point -----
# The MLP encoder (784-hidden-hidden-head, stacked weights, Glorot init) is the paper's and is built in. Any other
# encoder is a factory registered here by name and chosen with ``TrainConfig(encoder=name)``: it gets the width of
# the encoder's output (``head_dim``: the mean and scale parameters of q(z|x)) and the config's ``hidden``, and
# returns an ``nn.Module`` that maps images in [0, 1] of shape (B, 784) to (B, head_dim). Its M copies are built
# under each model's seed and their parameters stacked along a leading model dimension, so the training loop,
# Adam, the EMA, the run store and resuming handle them unchanged; the forward pass maps the copies over the stack
# with ``torch.func.functional_call`` and ``torch.vmap``. The decoder, q(z|x), the marginal and every loss and
# bound are the same for every encoder.
EncoderFactory = Callable[[int, int], nn.Module]
ENCODERS: dict[str, EncoderFactory] = {}
BUILT_IN = "mlp"


def register_encoder(name: str, factory: EncoderFactory) -> None:
    """Make ``TrainConfig(encoder=name)`` build its encoder with ``factory(head_dim, hidden)`` (see above).

    Raises:
        ValueError: the name is the built-in MLP's or not a plain identifier-like string.
    """
    if not isinstance(name, str) or not name or name == BUILT_IN or not name.replace("-", "_").isidentifier():
        raise ValueError(f"an encoder's name must be a word such as 'small-conv', other than {BUILT_IN!r}; "
                         f"got {name!r}")
    ENCODERS[name] = factory


def _encoder_module(name: str, k: int, covariance: str, hidden: int, seed: int | None = None) -> nn.Module:
    """One copy of a registered encoder, its initial weights drawn under ``seed`` (PyTorch's global state is left
    as it was)."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}: register it first with vibtools.model.register_encoder "
                         f"(known: {', '.join([BUILT_IN, *ENCODERS])})")
    with torch.random.fork_rng(devices=[]):  # saves and restores the CPU generator, which alone is seeded here
        if seed is not None:
            torch.random.default_generator.manual_seed(int(seed))
        module = ENCODERS[name](head_dim(k, covariance), hidden)
    if any(True for _ in module.buffers()):
        raise ValueError(f"the encoder {name!r} has buffers (batch norm?): a registered encoder must keep its state "
                         f"in parameters, which the stack stacks per model")
    if any(isinstance(m, nn.modules.dropout._DropoutNd) for m in module.modules()):
        raise ValueError(f"the encoder {name!r} has dropout: a registered encoder must be deterministic (the stack "
                         f"maps it over the models with vmap, and its copies never switch to eval mode)")
    return module


def _param_name(name: str) -> str:
    """An encoder parameter's name in the stack ("conv.weight" -> "encoder__conv__weight")."""
    return "encoder__" + name.replace(".", "__")


def _skeleton(name: str, k: int, covariance: str, hidden: int) -> nn.Module:
    """The registered encoder's module structure without weights (on the meta device), for functional calls."""
    with torch.device("meta"):
        return _encoder_module(name, k, covariance, hidden)


def layer_shapes(k: int, covariance: str, hidden: int, n_classes: int = 10) -> dict[str, tuple[int, int]]:
    """(in, out) of each layer: encoder 784-hidden-hidden-head, decoder K-classes."""
    return {"enc1": (N_PIXELS, hidden), "enc2": (hidden, hidden), "enc3": (hidden, head_dim(k, covariance)),
            "dec": (k, n_classes)}


def parameter_shapes(k: int, covariance: str, hidden: int, n_classes: int = 10,
                     mixture: int = 0, encoder: str = BUILT_IN, bottleneck: str = "vib") -> dict[str, tuple[int, ...]]:
    """Shape of each parameter of one model, by name ("enc1_weight": (784, hidden), "enc1_bias": (hidden,), ...).

    A learned marginal of ``mixture`` components adds its mixing logits (C,), means (C, K) and raw scales (C, K).
    The Conditional Entropy Bottleneck (``bottleneck="ceb"``) adds the backward encoder's class means (classes, K).
    A registered ``encoder`` replaces the three encoder layers by its own parameters (``encoder__...``).
    """
    shapes = {f"{name}_{part}": shape for name, (n_in, n_out) in layer_shapes(k, covariance, hidden, n_classes).items()
              for part, shape in (("weight", (n_in, n_out)), ("bias", (n_out,)))}  # weight, then bias, per layer
    if encoder != BUILT_IN:
        with torch.device("meta"):
            module = _encoder_module(encoder, k, covariance, hidden)
        shapes = {**{_param_name(n): tuple(p.shape) for n, p in module.named_parameters()},
                  "dec_weight": shapes["dec_weight"], "dec_bias": shapes["dec_bias"]}
    if mixture:
        shapes.update(marginal_logits=(mixture,), marginal_means=(mixture, k), marginal_scales=(mixture, k))
    if bottleneck == "ceb":
        shapes["backward_means"] = (n_classes, k)
    return shapes


SCALE_AT_ONE = math.log(math.e - 1)  # softplus(SCALE_AT_ONE) = 1: a learned marginal's components start at unit sd


def glorot_init(k: int, covariance: str, hidden: int, n_classes: int = 10,
                generator: torch.Generator | None = None, mixture: int = 0,
                bottleneck: str = "vib") -> dict[str, torch.Tensor]:
    """One model's initial weights: TensorFlow's default (Glorot-uniform weights, zero biases), as in the reference.

    A learned marginal (``mixture`` components) starts with equal weights, unit scales and means drawn from
    N(0, I), after every layer's draws, so that the layers of a model with and without it start alike. CEB's
    backward encoder starts with every class mean at 0 (no draw), so that b(z|y) = N(0, I) = VIB's r(z) at the
    start: a CEB model and a VIB model of one seed start from the same network and the same objective.

    Args:
        k, covariance, hidden, n_classes, mixture: the network's shape.
        generator: a CPU generator to draw from; None draws from PyTorch's global generator.
    Returns:
        The parameters by name in the (in, out) weight layout, on the CPU.
    """
    out = {}
    for name, (n_in, n_out) in layer_shapes(k, covariance, hidden, n_classes).items():
        w = torch.empty(n_out, n_in)
        # vibtools 0.1 built nn.Linear layers, whose own default init (a uniform weight, then a uniform bias) drew
        # from the stream before the Glorot draw. Drawing and discarding the same numbers keeps every run of that
        # version reproducible bit for bit; the golden test in tests/test_results_version.py guards it.
        w.uniform_(generator=generator)
        torch.empty(n_out).uniform_(generator=generator)
        nn.init.xavier_uniform_(w, generator=generator)  # fans are symmetric, so (out, in) draws then transpose
        out[f"{name}_weight"], out[f"{name}_bias"] = w.t().contiguous(), torch.zeros(n_out)
    if mixture:
        out["marginal_logits"] = torch.zeros(mixture)
        out["marginal_means"] = torch.randn(mixture, k, generator=generator)
        out["marginal_scales"] = torch.full((mixture, k), SCALE_AT_ONE)
    if bottleneck == "ceb":
        out["backward_means"] = torch.zeros(n_classes, k)
    return out


def posterior(head: torch.Tensor, k: int, covariance: str = "diag") -> Distribution:
    """Turn the encoder's output into q(z|x): Normal(mu, softplus(rho - 5)) as in the reference, or full covariance.

    Args:
        head: (..., head_dim(k, covariance)) encoder outputs.
        k: latent size K.
        covariance: "diag" (the reference), "full" (the paper's K=2 encoder: mean plus Cholesky factor
            with softplus(. - 5) on its diagonal), "unit" (N(mu, I): the head is the mean alone).
    Returns:
        A distribution with batch shape ``head.shape[:-1]`` and event shape (K,).
    """
    mu = head[..., :k]
    # validate_args=False: the parameters are valid by construction, and validating them checks a tensor on the
    # host, which would force a GPU synchronisation at every step.
    if covariance == "diag":
        return Independent(Normal(mu, F.softplus(head[..., k:] - 5.0), validate_args=False), 1, validate_args=False)
    if covariance == "unit":
        return Independent(Normal(mu, torch.ones_like(mu), validate_args=False), 1, validate_args=False)
    if covariance == "full":
        rows, cols = torch.tril_indices(k, k, device=head.device)
        tril = head.new_zeros(*head.shape[:-1], k, k)
        tril[..., rows, cols] = head[..., k:]
        diag = F.softplus(tril.diagonal(dim1=-2, dim2=-1) - 5.0)
        tril = tril.tril(-1) + torch.diag_embed(diag)
        return MultivariateNormal(mu, scale_tril=tril, validate_args=False)
    raise ValueError(f"covariance {covariance!r} has no posterior distribution")


def prior(k: int, covariance: str = "diag", device: torch.device | str = "cpu") -> Distribution:
    """The prior r(z) = N(0, I) in the same family as the posterior, so KL has a closed form (built once)."""
    return _prior(k, covariance, torch.device(device))


@functools.lru_cache(maxsize=32)
def _prior(k: int, covariance: str, device: torch.device) -> Distribution:
    """:func:`prior`, cached per device. Built outside inference mode even when first asked for inside it, so the
    cached tensors can later take part in training (inference tensors cannot be saved for backward)."""
    with torch.inference_mode(False):
        zeros = torch.zeros(k, device=device)
        if covariance == "full":
            return MultivariateNormal(zeros, scale_tril=torch.eye(k, device=device), validate_args=False)
        return Independent(Normal(zeros, torch.ones(k, device=device), validate_args=False), 1, validate_args=False)


def reparameterize(q: Distribution, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + L eps for a given standard-normal ``eps`` of shape (S?, ..., K).

    ``Distribution.rsample`` takes no generator; drawing ``eps`` ourselves from a per-run generator is what
    lets a vectorized sweep reproduce each single run exactly.
    """
    if isinstance(q, MultivariateNormal):
        return q.loc + (q.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)
    return q.mean + q.stddev * eps


class VIBStack(nn.Module):
    """M VIB models of one shape, each parameter stacked along a leading model dimension (the forward pass).

    Args:
        k: latent size K (256 in the reference, 2 for embeddings).
        covariance: "diag" (reference), "full" (paper's K=2 encoder) or "none" (deterministic baseline, z = mu).
        hidden: width of the two hidden layers.
        n_classes: number of classes.
        seeds: one initialisation seed per model (None: PyTorch's global generator); their number is M.
        init: False leaves the weights uninitialised (for loading stored weights).
        mixture: 0 for the fixed marginal r(z) = N(0, I) (the paper's); C > 0 learns r(z) as a mixture of C
            diagonal Gaussians (trainable weights, means and scales), diagonal encoders only.
        encoder: "mlp", or the name of a registered encoder (:func:`register_encoder`).
        bottleneck: "vib", or "ceb" for the Conditional Entropy Bottleneck: a learned backward encoder
            b(z|y) = N(mu_y, I) replaces r(z) in the information term (:meth:`info_bits`).
    """

    def __init__(self, k: int = 256, covariance: str = "diag", hidden: int = 1024, n_classes: int = 10,
                 seeds: Sequence[int | None] = (None,), init: bool = True, mixture: int = 0,
                 encoder: str = BUILT_IN, bottleneck: str = "vib"):
        super().__init__()
        if len(seeds) < 1:
            raise ValueError("a stack needs at least one model")
        if mixture and covariance != "diag":
            raise ValueError(f"a learned mixture marginal needs the diagonal encoder (covariance='diag'), "
                             f"not {covariance!r}")
        self.k, self.covariance, self.hidden, self.n_classes, self.m = k, covariance, hidden, n_classes, len(seeds)
        if bottleneck not in ("vib", "ceb") or (bottleneck == "ceb" and (covariance != "unit" or mixture)):
            raise ValueError(f"bottleneck {bottleneck!r} with covariance {covariance!r} and mixture {mixture}: "
                             f"use 'vib', or 'ceb' with covariance 'unit' and no learned marginal")
        self.mixture, self.encoder, self.bottleneck = int(mixture), encoder, bottleneck
        shapes = parameter_shapes(k, covariance, hidden, n_classes, mixture, encoder, bottleneck)
        if init:
            gens = [None if s is None else torch.Generator().manual_seed(int(s)) for s in seeds]
            per_model = [glorot_init(k, covariance, hidden, n_classes, g, mixture, bottleneck) for g in gens]
            if encoder != BUILT_IN:  # the registered encoder's own init, one copy per model under its seed
                for w, seed in zip(per_model, seeds):
                    copy = _encoder_module(encoder, k, covariance, hidden, seed)
                    w.update({_param_name(n): p.detach() for n, p in copy.named_parameters()})
            tensors = {n: torch.stack([w[n] for w in per_model]) for n in shapes}
        else:
            tensors = {n: torch.empty(self.m, *shape) for n, shape in shapes.items()}
        for name, t in tensors.items():
            self.register_parameter(name, nn.Parameter(t))
        # the encoder's skeleton (no weights: they are the stacked parameters above), kept out of the module tree
        self._skeleton = None if encoder == BUILT_IN else (_skeleton(encoder, k, covariance, hidden),)

    @property
    def shape(self) -> dict:
        """k, covariance, hidden, n_classes, mixture (and a registered encoder, and CEB's bottleneck): what a model
        of the same shape is built from."""
        shape = {"k": self.k, "covariance": self.covariance, "hidden": self.hidden, "n_classes": self.n_classes,
                 "mixture": self.mixture}
        if self.encoder != BUILT_IN:
            shape["encoder"] = self.encoder
        return shape if not self.ceb else {**shape, "bottleneck": self.bottleneck}

    # ----- the forward pass, for all M models at once -----
    def _linear(self, h: torch.Tensor, name: str) -> torch.Tensor:
        """One layer of every model: (M, B, in) -> (M, B, out)."""
        w, b = getattr(self, f"{name}_weight"), getattr(self, f"{name}_bias")
        if self.m == 1:  # one model: a plain addmm is faster than a batch-of-one bmm (measured on CPU)
            return torch.addmm(b[0], h[0], w[0]).unsqueeze(0)
        return torch.baddbmm(b.unsqueeze(1), h, w)

    def stacked_head(self, x: torch.Tensor, keep: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """(M, B, head) encoder outputs for shared images x in [0, 1] of shape (B, 784), rescaled to 2x - 1.

        Args:
            x: the images.
            keep: dropout while training: two (M, B, hidden) masks, already scaled by 1 / (1 - rate), that
                multiply the two hidden layers; None (evaluation, or no dropout) uses every unit.
        """
        if self._skeleton is not None:
            if keep is not None:
                raise ValueError("dropout masks the MLP encoder's hidden layers; a registered encoder has none")
            return self._registered_head(x)
        return self.head_from_first(self.first_hidden(x), keep)

    def _registered_head(self, x: torch.Tensor) -> torch.Tensor:
        """(M, B, head) from the registered encoder: its M copies' stacked weights mapped over with vmap."""
        from torch.func import functional_call

        skeleton = self._skeleton[0]
        names = [n for n, _ in skeleton.named_parameters()]
        params = {n: getattr(self, _param_name(n)) for n in names}
        return torch.vmap(lambda p, images: functional_call(skeleton, p, (images,)), in_dims=(0, None))(params, x)

    def first_hidden(self, x: torch.Tensor) -> torch.Tensor:
        """(M, B, hidden) activations of the first hidden layer for shared images x (see :meth:`stacked_head`)."""
        if self._skeleton is not None:
            raise ValueError(f"the MLP's hidden layers (MC-dropout reuses them) do not exist in the registered "
                             f"encoder {self.encoder!r}")
        return F.relu(self._linear((2 * x - 1).expand(self.m, *x.shape), "enc1"))

    def head_from_first(self, h: torch.Tensor, keep: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """The rest of the encoder, from the first hidden layer's activations (MC-dropout reuses them per draw)."""
        if keep is not None:
            h = h * keep[0]
        h = F.relu(self._linear(h, "enc2"))
        if keep is not None:
            h = h * keep[1]
        return self._linear(h, "enc3")

    def stacked_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Logits (..., M, B, classes) of the decoder q(y|z) for codes z of shape (..., M, B, K)."""
        return z @ self.dec_weight + self.dec_bias.unsqueeze(1)

    @property
    def deterministic(self) -> bool:
        """True for the deterministic baseline (z = mu, no info loss, no noise to draw)."""
        return self.covariance == "none"

    @property
    def ceb(self) -> bool:
        """True for the Conditional Entropy Bottleneck (the information term is KL to b(z|y), not to r(z))."""
        return self.bottleneck == "ceb"

    def latent(self, head: torch.Tensor, eps: torch.Tensor | None, n_samples: int | None = None):
        """(z, q) for encoder outputs (..., head): z = mu + L eps, of the shape of ``eps``; the mean if ``eps`` is None.

        The deterministic variant has z = mu and q = None: it takes no noise, and ``n_samples`` (with ``eps`` None)
        repeats mu along a new leading dimension, as the draws of a stochastic encoder would be.
        """
        if self.deterministic:
            mu = head[..., : self.k]
            if eps is not None:
                return mu.expand(*eps.shape), None
            return (mu if n_samples is None else mu.expand(n_samples, *mu.shape)), None
        q = posterior(head, self.k, self.covariance)
        return (q.mean if eps is None else reparameterize(q, eps)), q

    def marginal(self) -> Distribution:
        """r(z): N(0, I) (shared, not trained), or each model's learned mixture with batch shape (M, 1)."""
        if not self.mixture:
            return prior(self.k, self.covariance, self.dec_weight.device)
        components = Independent(Normal(self.marginal_means.unsqueeze(1), F.softplus(self.marginal_scales.unsqueeze(1)),
                                        validate_args=False), 1, validate_args=False)
        return MixtureSameFamily(Categorical(logits=self.marginal_logits.unsqueeze(1), validate_args=False),
                                 components, validate_args=False)

    # ----- CEB's backward encoder b(z|y) = N(mu_y, I) -----
    def backward(self, y: torch.Tensor) -> Distribution:
        """b(z|y) of every model for labels y of shape (B,): N(mu_y, I), batch shape (M, B), event shape (K,)."""
        means = self.backward_means[:, y]  # (M, B, K): row y of each model's class means (the linear map of one-hot y)
        return Independent(Normal(means, torch.ones_like(means), validate_args=False), 1, validate_args=False)

    def residual_bits(self, q: Distribution, y: torch.Tensor) -> torch.Tensor:
        """Per-example KL(q(z|x) || b(z|y)) in bits, of shape (M, B): CEB's bound on the residual information
        I(X;Z|Y). For q = N(mu(x), I) it is ||mu(x) - mu_y||^2 / (2 ln 2)."""
        return kl_divergence(q, self.backward(y)) / LN2

    def ceb_marginal_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log m(z) (nats) of the uniform mixture m(z) = 1/C sum_y b(z|y), for codes z of shape (..., M, B, K).

        Written as matrix products (the mixture's components share the unit covariance), in float64, whose
        expanded squares lose nothing to cancellation where codes sit on a class mean: equal to
        ``MixtureSameFamily`` of the same components (tests/test_ceb.py) without its (..., C, K) intermediate.
        """
        means, zz = self.backward_means.double(), z.double()  # (M, C, K), (..., M, B, K)
        sq = (zz.square().sum(-1, keepdim=True) - 2 * zz @ means.transpose(-1, -2)
              + means.square().sum(-1).unsqueeze(-2))  # (..., M, B, C): ||z - mu_y||^2
        return (torch.logsumexp(-0.5 * sq, -1) - math.log(means.shape[-2])
                - 0.5 * self.k * math.log(2 * math.pi)).to(z.dtype)

    def izx_bits(self, q: Distribution, z: torch.Tensor) -> torch.Tensor:
        """Batch-mean upper bound on I(Z;X) in bits of each model, (M,): the info loss for VIB; for CEB the Monte
        Carlo estimate of KL(q(z|x) || m(z)) with m the uniform mixture of the backward encoders (any marginal
        gives an upper bound), averaged over the draws z of shape (S?, M, B, K)."""
        if not self.ceb:
            return self.info_bits(q, z)
        log_ratio = q.log_prob(z) - self.ceb_marginal_log_prob(z)
        return (log_ratio if z.dim() == 3 else log_ratio.mean(0)).mean(-1) / LN2

    def rate_bits(self, q: Distribution, z: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """Per-example rate R(x) = KL(q(z|x) || r(z)) in bits, of shape (M, B).

        Exact for r(z) = N(0, I); for a learned mixture, which has no closed-form KL, the Monte Carlo estimate
        log q(z|x) - log r(z) averaged over the draws ``z`` of shape (S?, M, B, K) (needed then). For CEB the
        rate is the residual information KL(q(z|x) || b(z|y)) at the labels ``y`` (needed then; for a score on
        unlabelled inputs, the predicted labels).
        """
        if self.ceb:
            if y is None:
                raise ValueError("CEB's rate is KL(q(z|x) || b(z|y)) at a label: pass y (the predicted labels for "
                                 "unlabelled inputs)")
            return self.residual_bits(q, y)
        if not self.mixture:
            return kl_divergence(q, prior(self.k, self.covariance, q.mean.device)) / LN2
        if z is None:
            raise ValueError("the rate under a learned mixture marginal is a Monte Carlo estimate: pass draws z")
        log_ratio = q.log_prob(z) - self.marginal().log_prob(z)
        return (log_ratio if z.dim() == 3 else log_ratio.mean(0)) / LN2

    def info_bits(self, q: Distribution, z: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """The objective's information term of each model, (M,) in bits: the batch-mean KL(q(z|x) || r(z)) for
        VIB (the I(Z;X) bound; see :meth:`rate_bits`), KL(q(z|x) || b(z|y)) for CEB (the I(X;Z|Y) bound; needs
        the labels ``y``)."""
        if self.ceb:
            return self.rate_bits(q, z, y).mean(-1)
        if not self.mixture:  # the paper's closed form, unchanged (the golden trajectory depends on it)
            return info_loss_bits(q, prior(self.k, self.covariance, q.mean.device))
        return self.rate_bits(q, z).mean(-1)

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
                   keep: Sequence[torch.Tensor] | None = None):
        """Per-model class loss and info loss in bits, the count of misclassified examples (each (M,)), and logits.

        Args:
            x: (B, 784) images shared by the models; y: (B,) labels; eps: (M, B, K) standard-normal noise;
            keep: dropout masks of the hidden layers (see :meth:`stacked_head`), or None.
        Returns:
            class_bits, info_bits, wrong, and the (M, B, classes) logits.
        """
        z, q = self.latent(self.stacked_head(x, keep), eps)
        logits = self.stacked_logits(z)
        class_bits = class_loss_bits(logits, y)
        info_bits = self.info_bits(q, z, y) if q is not None else class_bits.new_zeros(self.m)
        wrong = (logits.argmax(-1) != y).sum(-1)
        return class_bits, info_bits, wrong, logits

    # ----- one model's weights in and out -----
    def model_state(self, i: int) -> dict[str, torch.Tensor]:
        """Model i's parameters by name, without the model dimension (copies, on the stack's device)."""
        return {n: p[i].detach().clone() for n, p in self.named_parameters()}

    @torch.no_grad()
    def load_model_states(self, states: Sequence[dict[str, torch.Tensor]]) -> None:
        """Copy M per-model parameter dicts (as from :meth:`model_state`) into the stack."""
        if len(states) != self.m:
            raise ValueError(f"expected {self.m} model states, got {len(states)}")
        for n, p in self.named_parameters():
            p.copy_(torch.stack([s[n].to(p.device) for s in states]))

    def model(self, i: int) -> VIB:
        """Model i as a separate :class:`VIB` (a copy, on the stack's device, in eval mode)."""
        one = VIB(**self.shape, init=False).to(self.dec_weight.device)
        one.load_model_states([self.model_state(i)])
        return one.eval()

    @classmethod
    def of(cls, models: Sequence[VIBStack]) -> VIBStack:
        """Stack single models (or stacks) of one shape into one stack (copies)."""
        if not models:
            raise ValueError("a stack needs at least one model")
        states = [m.model_state(i) for m in models for i in range(m.m)]
        if any(m.shape != models[0].shape for m in models):
            raise ValueError("models in one stack must share K, covariance, hidden width, classes, marginal and "
                             "bottleneck")
        stack = cls(**models[0].shape, seeds=[None] * len(states), init=False).to(models[0].dec_weight.device)
        stack.load_model_states(states)
        return stack


class VIB(VIBStack):
    """One deep VIB classifier (the reference's model): the M = 1 case of :class:`VIBStack`, per-model shapes.

    Args:
        k: latent size K (256 in the reference, 2 for embeddings).
        covariance: "diag" (reference), "full" (paper's K=2 encoder) or "none" (deterministic baseline, z = mu).
        hidden: width of the two hidden layers.
        n_classes: number of classes.
        seed: initialisation seed (None: PyTorch's global generator).
        init: False leaves the weights uninitialised (for loading stored weights).
        mixture: components of a learned marginal r(z) (0: the fixed N(0, I)); see :class:`VIBStack`.
        encoder, bottleneck: see :class:`VIBStack`.
    """

    def __init__(self, k: int = 256, covariance: str = "diag", hidden: int = 1024, n_classes: int = 10,
                 seed: int | None = None, init: bool = True, mixture: int = 0, encoder: str = BUILT_IN,
                 bottleneck: str = "vib"):
        super().__init__(k, covariance, hidden, n_classes, seeds=(seed,), init=init, mixture=mixture,
                         encoder=encoder, bottleneck=bottleneck)

    def encode_head(self, x: torch.Tensor) -> torch.Tensor:
        """Raw encoder output (B, head) for images x in [0, 1] of shape (B, 784)."""
        return self.stacked_head(x)[0]

    def encode(self, x: torch.Tensor) -> Distribution:
        """q(z|x) for a batch of images (batch shape (B,), event shape (K,))."""
        return posterior(self.encode_head(x), self.k, self.covariance)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Class logits q(y|z) for latent codes of shape (..., K), a single code of shape (K,) included."""
        if z.dim() == 1:
            return self.decode(z.unsqueeze(0)).squeeze(0)
        return self.stacked_logits(z.unsqueeze(-3)).squeeze(-3)

    def forward(self, x: torch.Tensor, n_samples: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """Logits of shape (n_samples, B, classes) from z drawn from q(z|x) (z = mu for the deterministic variant).

        The noise comes from ``generator`` (PyTorch's global one if None); the arithmetic is the stack's.
        """
        head = self.stacked_head(x)
        eps = None if self.deterministic else torch.randn(n_samples, 1, len(x), self.k, generator=generator,
                                                          device=x.device, dtype=head.dtype)
        return self.stacked_logits(self.latent(head, eps, n_samples)[0])[:, 0]
