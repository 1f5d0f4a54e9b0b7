"""The primitive API's records: what ``sample`` returns, what ``forward_backward`` takes and returns, and the one
error every call raises for bad input (the run stays usable)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

TARGETS = ("mask", "advantages", "logprobs", "weights", "old_logprobs")


class APIError(ValueError):
    """A call was refused or failed; the message is one line that names what to change. The run is unchanged and
    the next call works."""


@dataclass(frozen=True)
class Sample:
    """One completion: its tokens and the sampler's logprobs of them, the text, and the policy version that
    sampled it (``finish_reason``: "stop", or "length" when cut at ``max_tokens``)."""

    prompt_tokens: list[int]
    tokens: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str
    version: int


@dataclass(frozen=True)
class Datum:
    """One sequence to train on. ``tokens``: the whole sequence (prompt and completion). ``targets``: per-token
    lists as long as ``tokens``, position t describing token t (predicted from the tokens before it; position 0 is
    never trained): ``mask`` (1 where the loss applies; default every position but the first), ``advantages``,
    ``logprobs`` (the sampler's), ``weights`` (cross-entropy), ``old_logprobs`` (the policy the advantages refer
    to; default the current one, detached). ``group``: the prompt it answers (losses that normalise per prompt)."""

    tokens: list[int]
    targets: dict[str, list[float]] = field(default_factory=dict)
    group: int | None = None

    @classmethod
    def from_sample(cls, sample: Sample, advantage: float, group: int | None = None) -> "Datum":
        """A sampled completion with one advantage on each of its tokens (the prompt is context)."""
        p, n = len(sample.prompt_tokens), len(sample.tokens)
        return cls(list(sample.prompt_tokens) + list(sample.tokens),
                   {"mask": [0.0] * p + [1.0] * n, "advantages": [0.0] * p + [float(advantage)] * n,
                    "logprobs": [0.0] * p + [float(x) for x in sample.logprobs]}, group)


@dataclass(frozen=True)
class Result:
    """What ``forward_backward`` / ``forward`` return: the loss (summed over the call's micro-batches, as the loss
    function normalises it), each datum's per-token logprobs under the current weights (aligned with its tokens,
    0 at position 0) and the loss function's metrics."""

    loss: float
    logprobs: list[list[float]]
    metrics: dict[str, float]


def check_datum(i: int, datum, vocab: int, max_len: int, requires: tuple[str, ...] = ()) -> None:
    """APIError naming ``batch[i]``'s first problem: not a Datum, no tokens, a token outside the vocabulary, too
    long for the model, an unknown target, one the loss ``requires`` missing, a target of the wrong length or
    with a non-finite value, a group that is not an integer."""
    if not isinstance(datum, Datum):
        raise APIError(f"batch[{i}]: expected rlreason.api.Datum, got {type(datum).__name__}")
    tokens = datum.tokens
    if len(tokens) < 2:
        raise APIError(f"batch[{i}].tokens: at least 2 tokens (position 0 is never trained), got {len(tokens)}")
    bad = next((t for t in tokens if not isinstance(t, numbers.Integral) or not 0 <= t < vocab), None)
    if bad is not None:
        raise APIError(f"batch[{i}].tokens: token id {bad!r} is outside the model's vocabulary (0..{vocab - 1})")
    if len(tokens) > max_len:
        raise APIError(f"batch[{i}].tokens: {len(tokens)} tokens, over model.max_model_len {max_len}")
    if datum.group is not None and not isinstance(datum.group, numbers.Integral):
        raise APIError(f"batch[{i}].group: an integer (the prompt it answers), got {datum.group!r}")
    missing = [key for key in requires if key not in datum.targets]
    if missing:
        raise APIError(f"batch[{i}].targets: the loss needs {', '.join(repr(k) for k in missing)} (have: "
                       f"{', '.join(datum.targets) or 'none'})")
    for key, values in datum.targets.items():
        if key not in TARGETS:
            raise APIError(f"batch[{i}].targets: unknown key {key!r} (allowed: {', '.join(TARGETS)})")
        if len(values) != len(tokens):
            raise APIError(f"batch[{i}].targets[{key!r}]: {len(values)} values for {len(tokens)} tokens (one per "
                           "token, position t for token t)")
        if not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in values):
            raise APIError(f"batch[{i}].targets[{key!r}]: every value is a finite number (found NaN, inf or "
                           "something else)")
