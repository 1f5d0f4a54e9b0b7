"""The value model for algorithms whose config says ``needs_value_model`` (PPO).

``values[b, t]`` is V of the state before ``input_ids[b, t]``, the same alignment as the token logprobs, so GAE
and the loss index both with the completion mask. Two layouts: ``separate`` (a copy of the policy's trunk
without its LM head, plus a linear value head; the usual choice for LLM PPO) or ``head`` (a linear head on the
policy's own last hidden states; the value loss then also trains the shared trunk).
"""

from __future__ import annotations

import torch


class Critic(torch.nn.Module):
    def __init__(self, policy, layout: str, path: str) -> None:
        super().__init__()
        self.trunk = None
        if layout == "separate":
            from transformers import AutoModel

            self.trunk = AutoModel.from_pretrained(path, dtype=torch.float32,
                                                   attn_implementation=policy.config._attn_implementation)
        elif layout != "head":
            raise ValueError(f"critic layout {layout!r} (allowed: separate, head)")
        self.head = torch.nn.Linear(policy.config.hidden_size, 1)
        torch.nn.init.zeros_(self.head.weight)  # start at V = 0: the first advantages are the plain returns
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                policy_hidden: torch.Tensor | None = None) -> torch.Tensor:
        if self.trunk is None:
            if policy_hidden is None:
                raise ValueError("a value head on the policy needs the policy's hidden states")
            hidden = policy_hidden
        else:
            hidden = self.trunk(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        values = self.head(hidden[:, :-1].float()).squeeze(-1)
        return torch.cat([values.new_zeros(values.shape[0], 1), values], dim=1)
