"""Token log-probabilities, entropies and last hidden states from a causal LM, aligned with ``TrainBatch``
positions: index t refers to ``input_ids[:, t]`` predicted from positions < t (index 0 is 0)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PolicyOutput:
    logprobs: torch.Tensor  # [B, T] log p(input_ids[b, t] | input_ids[b, :t]), 0 at t = 0
    entropy: torch.Tensor | None  # [B, T] entropy of the predictive distribution at t, or None
    hidden: torch.Tensor  # [B, T, H] last hidden states (for a value head)


def _shift(values: torch.Tensor) -> torch.Tensor:
    return torch.cat([values.new_zeros(values.shape[0], 1), values], dim=1)


def autocast(device: torch.device, dtype: str):
    """bfloat16 autocast when the recipe's model dtype asks for it; the parameters stay float32."""
    if dtype == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def policy_forward(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, with_entropy: bool = False,
                   fp32_logits: bool = True, plan=None) -> PolicyOutput:
    """One forward pass. With ``fp32_logits`` the LM head and the softmax run in float32 even under autocast
    (the precision fix of ScaleRL, arXiv 2510.13786); otherwise in whatever dtype the forward runs in. With a
    ``plan`` (``shared_prefix.Plan``) each group's prompt runs through the body once."""
    hidden = None
    if plan is not None:
        from rlreason.learner.shared_prefix import shared_prefix_hidden

        hidden = shared_prefix_hidden(model.base_model, model.config, input_ids, attention_mask, plan)
    if hidden is None:
        hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    head = model.get_output_embeddings()
    h = hidden[:, :-1]
    if fp32_logits:
        with torch.autocast(device_type=h.device.type, enabled=False):
            bias = None if head.bias is None else head.bias.float()
            logits = F.linear(h.float(), head.weight.float(), bias)
    else:
        logits = head(h)
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = _shift(logp_all.gather(-1, input_ids[:, 1:, None]).squeeze(-1).float())
    entropy = _shift(-(logp_all.exp() * logp_all).sum(-1).float()) if with_entropy else None
    return PolicyOutput(logp, entropy, hidden)


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logprobs [B, T], entropy [B, T] or None), computed in float32."""
    out = policy_forward(model, input_ids, attention_mask, with_entropy)
    return out.logprobs, out.entropy
