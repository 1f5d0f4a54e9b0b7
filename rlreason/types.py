"""Typed records that cross stage and process boundaries.

Plain dataclasses (picklable, Ray-friendly). Tensors appear only in ``TrainBatch``; every shape is written next to
its field. Nothing here imports torch at module import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rlreason.weights import WeightUpdate  # noqa: F401  (a record between the learner and the engines)

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class Problem:
    """One prompt with what a verifier needs to judge answers to it.

    ``verifier`` names a registered verifier, so a mixed dataset needs no branching on where a row came from.
    """

    id: str
    prompt: str
    reference: Any
    verifier: str
    task: str = ""
    meta: dict = field(default_factory=dict)


ENV_REWARD = "environment"  # a problem's verifier name meaning: the episode's reward comes from its environment


@dataclass(frozen=True)
class Turn:
    """One turn of an episode: the model's (``role`` assistant, sampled) or the environment's (its observation)."""

    role: str  # "assistant" (sampled tokens), or the environment's message role ("user", "tool")
    text: str
    tokens: int
    tool_calls: int = 0  # tool calls the environment read in this (assistant) turn
    tool_errors: int = 0  # of those, malformed, unknown, bad arguments, raised or timed out


@dataclass(frozen=True)
class Episode:
    """What happened in a multi-turn episode (``Completion.episode``), for rewards, metrics and people."""

    env: str
    turns: list[Turn]
    reason: str  # why it ended: "done" (the environment said so), "max_turns", "max_tokens", "context", "failed"
    reward: float | None = None  # the environment's, after the recipe's per-turn penalties and discount
    solved: bool | None = None  # the environment's verdict, when it gives one
    error: str | None = None  # an environment that raised: the episode failed (never trained as a 0-reward row)
    env_s: float = 0.0  # seconds spent in the environment (reset, steps, tools)
    gen_s: float = 0.0  # seconds spent generating its turns' batches (shared with the batch's other episodes)
    scored: bool = False  # its reward is final: no verifier judges it (an agent program that returned a number)
    info: dict = field(default_factory=dict)  # the environment's own record (its last non-empty StepResult.info)

    @property
    def failed(self) -> bool:
        return self.reason == "failed"


@dataclass(frozen=True)
class Completion:
    """One sampled answer, or one multi-turn episode. ``logprobs[i]`` is the rollout engine's log-probability of
    ``completion_ids[i]``. In an episode ``completion_ids`` holds every turn after the prompt: the model's sampled
    tokens and the environment's tokens, exactly as the engine saw them (nothing decoded and encoded again);
    ``mask[i]`` is 1 on sampled tokens, 0 on the environment's (their logprob is 0: context, never trained)."""

    problem_id: str
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]
    finish_reason: str  # "stop" (EOS) or "length"
    policy_version: int
    text: str  # the model's own text (an episode: its turns joined; the environment's never)
    mask: list[int] | None = None  # None: every completion token was sampled
    episode: Episode | None = None
    # more rows of the same sample (an agent's calls that do not extend this row): trained with its advantage
    extra_rows: tuple["Completion", ...] = ()

    @property
    def sampled(self) -> int:
        """Tokens the model sampled (an episode's context tokens excluded)."""
        return len(self.completion_ids) if self.mask is None else sum(self.mask)


@dataclass(frozen=True)
class VerifyResult:
    """What a verifier says of one completion: a score, details for debugging, and an error if it failed."""

    score: float
    details: dict = field(default_factory=dict)
    error: str | None = None
    passed: bool | None = None  # set by composite rewards: the task verifier's verdict, whatever the shaping
    # The same completion judged under other answer protocols, e.g. {"flexible": True} (the last number in the
    # text, as lm-eval's flexible-extract) beside the verifier's own strict verdict; reported, never trained on.
    protocols: dict[str, bool] = field(default_factory=dict)

    @property
    def correct(self) -> bool:
        if self.passed is not None:
            return self.passed
        return self.error is None and self.score >= 1.0


@dataclass(frozen=True)
class ScoredGroup:
    """All completions for one problem, with their verifier results (same order)."""

    problem: Problem
    completions: list[Completion]
    results: list[VerifyResult]
    baseline: VerifyResult | None = None  # the greedy completion's result, when the algorithm asks for one

    @property
    def rewards(self) -> list[float]:
        return [r.score for r in self.results]


@dataclass
class TrainBatch:
    """A padded batch for the learner. B sequences of T = prompt + completion tokens (right-padded).

    Position t of ``loss_mask``/``*_logprobs`` refers to the token at ``input_ids[:, t]``, predicted from
    positions < t; prompt and padding positions have ``loss_mask == 0``. Advantages are not here: the learner
    computes them, because some algorithms need its models first (reference logprobs, critic values).
    """

    input_ids: "torch.Tensor"  # [B, T] long
    attention_mask: "torch.Tensor"  # [B, T] long, 1 on real tokens
    loss_mask: "torch.Tensor"  # [B, T] float, 1 on completion tokens
    rollout_logprobs: "torch.Tensor"  # [B, T] float, the rollout engine's logprobs (0 off the mask)
    rewards: "torch.Tensor"  # [B] float, verifier score plus reward shaping (overlong penalty)
    group_ids: "torch.Tensor"  # [B] long
    policy_version: "torch.Tensor"  # [B] long, the weights version that sampled each row
    baseline_rewards: "torch.Tensor | None" = None  # [B] reward of the prompt's greedy completion (ReMax)
    sample_ids: "torch.Tensor | None" = None  # [B] long: rows of one sample share it (None: a row per sample)

    def __post_init__(self) -> None:
        b, t = self.input_ids.shape
        for name in ("attention_mask", "loss_mask", "rollout_logprobs"):
            shape = tuple(getattr(self, name).shape)
            assert shape == (b, t), f"TrainBatch.{name} has shape {shape}, expected {(b, t)}"
        for name in ("rewards", "group_ids", "policy_version", "baseline_rewards", "sample_ids"):
            value = getattr(self, name)
            shape = None if value is None and name in ("baseline_rewards", "sample_ids") else tuple(value.shape)
            assert shape in ((b,), None), f"TrainBatch.{name} has shape {shape}, expected {(b,)}"

    @property
    def size(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class DatumBatch:
    """What a primitive ``forward_backward`` call brings (``rlreason.api``): its rows as a ``TrainBatch`` (rewards 0,
    ``loss_mask`` where the loss applies, ``rollout_logprobs`` the sampler's logprobs) and, per token, the caller's
    advantages, weights (cross-entropy) and old logprobs (None: the current ones, detached)."""

    batch: TrainBatch
    advantages: "torch.Tensor"  # [B, T] float
    weights: "torch.Tensor | None" = None  # [B, T] float
    old_logprobs: "torch.Tensor | None" = None  # [B, T] float


@dataclass(frozen=True)
class PrimitiveResult:
    """What a learner's primitive call (``forward_backward``, ``optim_step``) answers: its numbers, or the one-line
    ``error`` that says why nothing changed."""

    loss: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    logprobs: "torch.Tensor | None" = None  # [B, T] the learner's logprobs of the call's rows (forward_backward)
    version: int = 0  # the policy version after the call
    error: str | None = None


@dataclass(frozen=True)
class TrainStats:
    """What one learner step reports: flat metric names to floats."""

    version: int
    metrics: dict[str, float]
