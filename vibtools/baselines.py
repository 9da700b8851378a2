"""The models of the paper's Table 1 as named presets: VIB and the four regularized deterministic baselines.

Alemi et al. (2017, Table 1) compare VIB with a fully connected network with two hidden layers of 1024 units and
no regularizer, and with that network regularized by dropout, label smoothing or the confidence penalty of
Pereyra et al. (2017). Here every baseline uses the VIB network itself with z = mu (``covariance="none"``: the
same encoder, a linear K-dimensional layer, the same decoder) and VIB's recipe (Adam, schedule, EMA, batch 100),
so that the regularizer is the only difference. The regularizers' strengths are our choices, stated in
:data:`BASELINE_SETTINGS`: dropout 0.5 on the hidden units (Srivastava et al. 2014's default for hidden layers),
label smoothing 0.1 (Szegedy et al. 2016), confidence penalty 1.0 (the weight of -H(q(y|z)) in the loss).
"""

from __future__ import annotations

from .config import TrainConfig

# name -> the config fields the preset sets (beyond the reference recipe)
_OFF = {"dropout": 0.0, "label_smoothing": 0.0, "confidence_penalty": 0.0}
BASELINE_SETTINGS: dict[str, dict] = {  # every preset fixes every regularizer (the others at 0)
    "vib": {**_OFF, "covariance": "diag"},
    "deterministic": {**_OFF, "covariance": "none", "beta": 0.0},
    "dropout": {**_OFF, "covariance": "none", "beta": 0.0, "dropout": 0.5},
    "label-smoothing": {**_OFF, "covariance": "none", "beta": 0.0, "label_smoothing": 0.1},
    "confidence-penalty": {**_OFF, "covariance": "none", "beta": 0.0, "confidence_penalty": 1.0},
}
MODELS = tuple(BASELINE_SETTINGS)


def model_config(name: str, **fields) -> TrainConfig:
    """The config of a named Table 1 model; ``fields`` set the rest (epochs, seed, beta for VIB, ...).

    Args:
        name: one of :data:`MODELS`.
        **fields: other TrainConfig fields; they may not contradict the preset (a beta for a baseline, ...).
    Returns:
        The TrainConfig.
    Raises:
        ValueError: an unknown name, or a field that contradicts the preset.
    """
    if name not in BASELINE_SETTINGS:
        raise ValueError(f"unknown model {name!r}: use one of {', '.join(MODELS)}")
    preset = BASELINE_SETTINGS[name]
    for key, value in fields.items():
        if key in preset and value != preset[key]:
            raise ValueError(f"model {name!r} sets {key}={preset[key]!r}; it cannot be changed to {value!r}")
    return TrainConfig(**{**fields, **preset})


def model_name(config: TrainConfig) -> str:
    """The Table 1 name of a config ("vib" for any stochastic encoder without regularizers, "dropout", ...).

    Returns "ceb" for the Conditional Entropy Bottleneck (``bottleneck="ceb"``), and "custom" for a combination
    no preset makes (a regularizer on VIB, two regularizers, ...).
    """
    used = {k: getattr(config, k) for k in ("dropout", "label_smoothing", "confidence_penalty") if getattr(config, k)}
    if config.covariance != "none":
        return config.bottleneck if not used else "custom"
    for name, preset in BASELINE_SETTINGS.items():
        wanted = {k: v for k, v in preset.items() if k not in ("covariance", "beta") and v}
        if name != "vib" and used == wanted and config.beta == 0.0:
            return name
    return "custom"
