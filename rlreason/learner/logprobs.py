"""Token log-probabilities and entropies from a causal LM, aligned with ``TrainBatch`` positions."""

from __future__ import annotations

import torch


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return ``logp[b, t] = log p(input_ids[b, t] | input_ids[b, :t])`` ([B, T], 0 at t=0) and the entropy of
    the predictive distribution at each position ([B, T] or None). Computed in fp32."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    zeros = logp.new_zeros(logp.shape[0], 1)
    logp = torch.cat([zeros, logp], dim=1)
    entropy = None
    if with_entropy:
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        entropy = torch.cat([zeros, entropy], dim=1)
    return logp, entropy
