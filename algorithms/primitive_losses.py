"""Losses of the primitive API (``rlreason.api``, ``rlreason serve-api``): Tinker's definitions, under its names, so
a loop written for Tinker means the same here. Each is a sum over the tokens of the call (not a mean): the caller
scales through its advantages or weights. ``AlgorithmLoss`` adapts any registered algorithm's loss.

A loss is called per micro-batch as ``loss(LossInputs) -> (loss, metrics)``; ``logprobs`` carries the gradient,
``rollout_logprobs`` holds the sampler's logprobs the caller sent, ``weights`` the cross-entropy weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rlreason.algorithms.base import AlgorithmConfig, LossInputs, get_algorithm
from rlreason.registry import Registry

LOSSES: Registry = Registry("loss")


def _ratio(inputs: LossInputs) -> torch.Tensor:
    return torch.exp(inputs.logprobs - inputs.rollout_logprobs)


def _clipped(inputs: LossInputs, config: dict) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    ratio, m = _ratio(inputs), inputs.loss_mask
    clipped = ratio.clamp(config.get("clip_low_threshold", 0.8), config.get("clip_high_threshold", 1.2))
    fraction = float(((ratio != clipped).float() * m).sum() / m.sum().clamp(min=1))
    return ratio, clipped, {"clip_frac": fraction}


@LOSSES.register("cross_entropy")
def cross_entropy(inputs: LossInputs, config: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """-sum(weights * logp): supervised learning (weights: 1 on the tokens to learn)."""
    weights = inputs.loss_mask if inputs.weights is None else inputs.weights * inputs.loss_mask
    return -(inputs.logprobs * weights).sum(), {}


@LOSSES.register("importance_sampling")
def importance_sampling(inputs: LossInputs, config: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """-sum(p / q * A), q the sampler's probability: the policy gradient, corrected for sampler mismatch."""
    return -(_ratio(inputs) * inputs.advantages * inputs.loss_mask).sum(), {}


@LOSSES.register("ppo")
def ppo(inputs: LossInputs, config: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """-sum(min(r A, clip(r) A)), r = p / q clipped to [clip_low_threshold, clip_high_threshold] (0.8, 1.2)."""
    ratio, clipped, metrics = _clipped(inputs, config)
    adv = inputs.advantages * inputs.loss_mask
    return -torch.minimum(ratio * adv, clipped * adv).sum(), metrics


@LOSSES.register("cispo")
def cispo(inputs: LossInputs, config: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """-sum(sg(clip(r)) logp A): the clipped ratio weighs the policy gradient, no token is dropped."""
    _, clipped, metrics = _clipped(inputs, config)
    return -(clipped.detach() * inputs.logprobs * inputs.advantages * inputs.loss_mask).sum(), metrics


# the targets each loss reads: a datum without them is refused (a missing one would silently be 0)
REQUIRES = {"cross_entropy": (), "importance_sampling": ("advantages", "logprobs"), "ppo": ("advantages", "logprobs"),
            "cispo": ("advantages", "logprobs")}


@dataclass(frozen=True)
class NamedLoss:
    """A loss of ``LOSSES`` by name (resolved in the learner's process), with its ``loss_fn_config``."""

    name: str
    config: dict = field(default_factory=dict)
    needs_reference = False

    @property
    def requires(self) -> tuple[str, ...]:
        return REQUIRES.get(self.name, ())

    def __call__(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, float]]:
        return LOSSES.get(self.name)(inputs, self.config)


@dataclass(frozen=True)
class AlgorithmLoss:
    """A registered algorithm's loss with its config (the recipe's, or the algorithm's paper defaults)."""

    config: AlgorithmConfig
    requires = ("advantages",)

    @property
    def needs_reference(self) -> bool:
        return self.config.needs_reference

    def __call__(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, float]]:
        return get_algorithm(self.config.name).loss(inputs, self.config)


def resolve_loss(loss, recipe_algorithm: AlgorithmConfig | None = None, config: dict | None = None):
    """What a primitive call runs: a callable as it is; a Tinker loss by name (``cross_entropy``,
    ``importance_sampling``, ``ppo``, ``cispo``: Tinker's names mean Tinker's losses); else a registered
    algorithm's loss, also as ``algorithm:NAME`` (``algorithm:cispo``: the algorithm, not Tinker's), with the
    recipe's own config when the names match. ValueError in one line for a bad name or config, or an algorithm
    that needs a critic or its own driver."""
    if callable(loss):
        return loss
    if not isinstance(loss, str):
        raise ValueError(f"loss: a name or a function of LossInputs, got {type(loss).__name__}")
    if loss in LOSSES.names():
        return NamedLoss(loss, dict(config or {}))
    from pydantic import ValidationError

    from rlreason.algorithms import ALGORITHMS
    from rlreason.registry import UnknownNameError

    name = loss.removeprefix("algorithm:")
    try:
        spec = ALGORITHMS.get(name)
    except UnknownNameError:
        raise ValueError(f"loss: unknown loss {loss!r} (allowed: {', '.join(LOSSES.names())}, any algorithm: "
                         f"{', '.join(ALGORITHMS.names())}, or a function of LossInputs)") from None
    try:
        cfg = recipe_algorithm if recipe_algorithm is not None and recipe_algorithm.name == name and not config \
            else spec.config(name=name, **(config or {}))
    except ValidationError as e:
        first = e.errors()[0]
        raise ValueError(f"loss_config.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if cfg.needs_value_model or spec.driver != "gradient":
        raise ValueError(f"loss: algorithm {name!r} needs a value model or its own driver: not a primitive loss "
                         "(use rlreason train)")
    return AlgorithmLoss(cfg)
