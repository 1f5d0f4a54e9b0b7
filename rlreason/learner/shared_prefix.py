"""A group's prompt through the model once: the shared-prefix forward.

The rows of a group (the ``group_size`` completions of one prompt) begin with the same prompt tokens. The plain
forward runs that prompt through every layer once per row; here it runs once per group, its keys and values are
handed to each of the group's rows as a KV cache (indexing, so gradients from every row flow back into the one
prompt pass), and each row's completion runs on top of it at its true positions. The hidden states are put back
in the row layout of ``TrainBatch`` ([B, T, H], right-padded), so everything downstream (LM head, logprobs,
entropy, a value head) sees what the plain forward gives, up to float rounding.

What it saves is ``(rows - groups) x prompt length`` tokens of the body, ~15-20% of a race step's learner
tokens with 15-token prompts and far more with chat prompts of a few hundred tokens. It is used when the two passes
compute enough fewer positions than the plain one (``worth_it``, padding counted) and the model's cache is plain
full attention (a sliding-window layer would drop prompt keys); otherwise the plain forward runs. With LoRA
dropout, a group's rows share one dropout mask over the prompt instead of one each.
"""

from __future__ import annotations

import torch

# The share of the plain forward's positions the two passes must save; below it one plain forward is cheaper (the
# second pass costs a pass over every layer).
MIN_SAVED_SHARE = 0.08


def prompt_lengths(loss_mask: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B] tokens before each row's first loss position (the whole row when it has none)."""
    length = attention_mask.sum(1)
    has = loss_mask.any(1)
    first = torch.argmax((loss_mask > 0).int(), dim=1)
    return torch.where(has, first, length)


class Plan:
    """How the rows of one micro-batch share prompts: ``groups`` [G] first row of each group, ``inverse`` [B] each
    row's group, ``prefix`` [G] shared prompt length of each group (the shortest of its rows', at least 1)."""

    def __init__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, group_ids: torch.Tensor,
                 prompt_lens: torch.Tensor) -> None:
        _, self.inverse = torch.unique(group_ids, return_inverse=True)
        n = int(self.inverse.max()) + 1
        big = torch.iinfo(torch.long).max
        self.prefix = torch.full((n,), big, dtype=torch.long, device=input_ids.device).scatter_reduce(
            0, self.inverse, prompt_lens.clamp(min=1), "amin")
        rows = torch.arange(len(group_ids), device=input_ids.device)
        self.groups = torch.full((n,), len(group_ids), dtype=torch.long, device=input_ids.device).scatter_reduce(
            0, self.inverse, rows, "amin")
        self.lengths = attention_mask.sum(1)
        self.row_prefix = self.prefix[self.inverse]
        self.width = int(self.prefix.max())
        self.input_ids = input_ids

    @property
    def suffix(self) -> int:
        """Width of the suffix pass: the longest row after its group's prompt (at least 1)."""
        return max(int((self.lengths - self.row_prefix).clamp(min=0).max()), 1)

    def saved_share(self) -> float:
        """Token positions (padding included: it is computed too) the two passes skip, as a share of the plain
        forward's rows x width."""
        plain = self.input_ids.shape[0] * self.input_ids.shape[1]
        shared = len(self.prefix) * self.width + self.input_ids.shape[0] * self.suffix
        return (plain - shared) / plain

    def prompts_agree(self) -> bool:
        """Every row really begins with its group's prompt (rows of one group with different prompts, as a
        hand-built batch may have, take the plain forward)."""
        cols = torch.arange(self.width, device=self.input_ids.device)
        inside = cols[None, :] < self.row_prefix[:, None]
        mine = self.input_ids[:, : self.width]
        theirs = self.input_ids[self.groups][self.inverse, : self.width]
        return bool(((mine == theirs) | ~inside).all())


def worth_it(plan: Plan) -> bool:
    return plan.saved_share() >= MIN_SAVED_SHARE and plan.prompts_agree()


def shared_prefix_hidden(body, config, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                         plan: Plan) -> torch.Tensor | None:
    """Last hidden states [B, T, H] of ``body`` (the model without its LM head) with each group's prompt run once;
    None when the model's cache is not plain full attention (the caller then runs the plain forward)."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    cache = DynamicCache(config=config)
    if not all(type(layer) is DynamicLayer for layer in cache.layers):
        return None
    device = input_ids.device
    p = plan.width
    cols = torch.arange(p, device=device)
    prefix_attn = (cols[None, :] < plan.prefix[:, None]).long()
    prefix_ids = input_ids[plan.groups, :p] * prefix_attn
    before = body(input_ids=prefix_ids, attention_mask=prefix_attn, past_key_values=cache,
                  use_cache=True).last_hidden_state  # [G, p, H]
    cache.batch_select_indices(plan.inverse)  # each row gets its group's keys and values (differentiable)
    s = plan.suffix
    offsets = torch.arange(s, device=device)
    where = plan.row_prefix[:, None] + offsets[None, :]  # [B, s] each suffix token's position in the row
    inside = where < plan.lengths[:, None]
    width = input_ids.shape[1]
    suffix_ids = input_ids.gather(1, where.clamp(max=width - 1)) * inside
    attn = torch.cat([prefix_attn[plan.inverse], inside.long()], dim=1)
    after = body(input_ids=suffix_ids, attention_mask=attn, position_ids=where, past_key_values=cache,
                 use_cache=True).last_hidden_state  # [B, s, H]
    both = torch.cat([before[plan.inverse], after], dim=1)  # [B, p + s, H]
    t = torch.arange(width, device=device)[None, :]
    index = torch.where(t < plan.row_prefix[:, None], t, p + t - plan.row_prefix[:, None]).clamp(max=p + s - 1)
    return both.gather(1, index[:, :, None].expand(-1, -1, both.shape[-1]))
