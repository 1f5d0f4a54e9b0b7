"""Continual backprop on a LoRA adapter (Dohare et al., "Loss of plasticity in deep continual learning", Nature
2024), with the adapter's rank components as the units.

Component k of a layer is (A[k, :], B[:, k]): its activation is h_k = A[k, :] x, its outgoing weights B[:, k].
Utility (the paper's contribution utility): a running mean of |h_k| (over tokens, decay 0.99) times ||B[:, k]||_1.
Every ``every`` steps, in each layer, the ``replace_frac`` lowest-utility components older than ``maturity``
steps (at least one when any is mature) are re-initialised: A[k, :] drawn afresh as PEFT draws it, B[:, k] = 0,
so the new component starts silent (the function moves only by the removed component's own output, the smallest
in its layer by construction), and their Adam moments are cleared so the new component starts like a fresh one.
Caveat from the literature: weaker with non-ReLU activations and LayerNorm
(arXiv 2508.00212); measure it rather than assume it helps.
"""

from __future__ import annotations

import math

import torch

DECAY = 0.99


class ContinualBackprop:
    def __init__(self, peft_model, every: int, replace_frac: float, maturity: int, adapter: str = "default",
                 replaced_total: int = 0) -> None:
        self.every, self.replace_frac, self.maturity, self.adapter = every, replace_frac, maturity, adapter
        self.layers = [m for m in peft_model.modules() if hasattr(m, "lora_A") and adapter in m.lora_A]
        self.utility_act = [torch.zeros(m.lora_A[adapter].weight.shape[0]) for m in self.layers]
        self.age = [torch.zeros(m.lora_A[adapter].weight.shape[0], dtype=torch.long) for m in self.layers]
        self.steps = 0
        self.replaced_total = replaced_total
        self._hooks = [layer.lora_A[adapter].register_forward_hook(self._recorder(i))
                       for i, layer in enumerate(self.layers)]

    def state(self) -> dict:
        return {"utility": self.utility_act, "age": self.age, "steps": self.steps, "replaced": self.replaced_total}

    def load_state(self, state: dict) -> None:
        self.utility_act = [u.detach().cpu().clone() for u in state["utility"]]  # kept on CPU, as the hooks do
        self.age = [a.detach().cpu().clone() for a in state["age"]]
        self.steps, self.replaced_total = state["steps"], state["replaced"]

    def close(self) -> None:
        """Stop recording activations (the adapter stopped training)."""
        for hook in self._hooks:
            hook.remove()

    def _recorder(self, i: int):
        def hook(module, inputs, output):
            if module.training:
                mean_abs = output.detach().abs().float().reshape(-1, output.shape[-1]).mean(0).cpu()
                self.utility_act[i].mul_(DECAY).add_((1 - DECAY) * mean_abs)
        return hook

    def utility(self, i: int) -> torch.Tensor:
        """[r] contribution utility of layer i's components."""
        b = self.layers[i].lora_B[self.adapter].weight.detach()
        return self.utility_act[i] * b.abs().sum(dim=0).cpu()

    @torch.no_grad()
    def step(self, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """Call after each optimizer step; every ``every`` steps replaces the weakest mature components."""
        self.steps += 1
        for age in self.age:
            age.add_(1)
        replaced = 0
        if self.every and self.steps % self.every == 0:
            for i in range(len(self.layers)):
                replaced += self._replace(i, optimizer)
        self.replaced_total += replaced
        return {"cbp/replaced": float(replaced), "cbp/replaced_total": float(self.replaced_total)}

    def _replace(self, i: int, optimizer: torch.optim.Optimizer) -> int:
        mature = (self.age[i] > self.maturity).nonzero().flatten()
        if mature.numel() == 0:
            return 0
        count = max(1, int(self.replace_frac * mature.numel()))
        weakest = mature[self.utility(i)[mature].argsort()[:count]]
        self.reinitialize(i, weakest, optimizer)
        return int(weakest.numel())

    @torch.no_grad()
    def reinitialize(self, i: int, components: torch.Tensor, optimizer: torch.optim.Optimizer | None) -> None:
        """Fresh A rows, zero B columns, cleared Adam moments, age and utility 0 for ``components`` of layer i."""
        a = self.layers[i].lora_A[self.adapter].weight
        b = self.layers[i].lora_B[self.adapter].weight
        fresh = torch.empty_like(a)
        torch.nn.init.kaiming_uniform_(fresh, a=math.sqrt(5))  # PEFT's default init of A
        idx = components.to(a.device)
        a[idx] = fresh[idx]
        b[:, idx] = 0.0
        for param, rows in ((a, (idx, slice(None))), (b, (slice(None), idx))):
            state = optimizer.state.get(param, {}) if optimizer is not None else {}
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][rows] = 0.0
        self.age[i][components] = 0
        self.utility_act[i][components] = 0.0
