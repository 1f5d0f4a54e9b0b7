"""The primitive API's records: what ``sample`` returns, what ``forward_backward`` takes and returns, and the one
error every call raises for bad input (the run stays usable)."""

from __future__ import annotations

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


def check_datum(i: int, datum, max_len: int, requires: tuple[str, ...] = ()) -> None:
    """APIError naming ``batch[i]``'s first problem of form: not a Datum, too few or too many tokens, an unknown
    target, one the loss ``requires`` missing, a target of the wrong length, a group that is not an integer. (The
    values, token ids in the vocabulary and finite targets, are checked on the padded batch: ``check_values``.)"""
    if not isinstance(datum, Datum):
        raise APIError(f"batch[{i}]: expected rlreason.api.Datum, got {type(datum).__name__}")
    tokens = datum.tokens
    if len(tokens) < 2:
        raise APIError(f"batch[{i}].tokens: at least 2 tokens (position 0 is never trained), got {len(tokens)}")
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


def rows(batch: list[Datum], read, dtype, what: str):
    """[B, T] array of ``read(datum)`` per row (None: zeros), right-padded with 0; APIError naming the row whose
    values are not numbers of ``dtype``'s kind."""
    import numpy as np

    out = np.zeros((len(batch), max(len(d.tokens) for d in batch)), dtype=dtype)
    for i, d in enumerate(batch):
        values = read(d)
        if values is None:  # (this datum leaves it out: 0)
            continue
        try:
            row = np.asarray(values)
            if row.dtype.kind not in ("iu" if dtype == np.int64 else "iuf"):
                raise TypeError(row.dtype)
        except (TypeError, ValueError):
            raise APIError(f"batch[{i}].{what.format(i=i)}: numbers only"
                           f"{' (integer token ids)' if dtype == np.int64 else ''}") from None
        out[i, :len(values)] = row
    return out


def check_values(ids, lengths, vocab: int, grids: dict) -> None:
    """APIError naming the first row with a token id outside the vocabulary, or a target that is NaN or inf."""
    import numpy as np

    real = np.arange(ids.shape[1])[None, :] < np.asarray(lengths)[:, None]
    bad = np.flatnonzero(((ids < 0) | (ids >= vocab)).any(1) & real.any(1))
    if len(bad):
        i = int(bad[0])
        token = int(ids[i][(ids[i] < 0) | (ids[i] >= vocab)][0])
        raise APIError(f"batch[{i}].tokens: token id {token} is outside the model's vocabulary (0..{vocab - 1})")
    for key, grid in grids.items():
        bad = np.flatnonzero(~np.isfinite(grid).all(1))
        if len(bad):
            raise APIError(f"batch[{int(bad[0])}].targets[{key!r}]: a value is NaN or inf")
