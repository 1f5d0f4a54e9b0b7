"""One LoRA adapter per continual phase (``continual.adapters: per_phase``), with PEFT's multi-adapter support.

Phase 1 trains PEFT's ``default`` adapter; each later phase adds a fresh adapter (same rank, targets and init: B = 0,
so the function does not move when it is added), freezes every earlier one and trains only the new one. All of them
stay active: the policy is W + sum_i s_i B_i A_i. An earlier phase's adapter never changes again; what the model
forgets on earlier tasks comes only from the new adapters' interference.

To vLLM (and in the saved ``final/``) the stack is one ordinary adapter: A = [A_1; ...; A_k] (rows), B = [s_1 B_1,
..., s_k B_k] / s (columns), rank R = sum r_i, with alpha chosen so that its scale s is 1. Then s B A = sum_i s_i
B_i A_i exactly, so the engines serve the stack through the same single-adapter path as any LoRA run. The engine's
``max_lora_rank`` is sized for every phase at start (``RunConfig.served_lora_rank``).
Each phase's own adapter is also saved, under ``phases/phase<i>/``.
"""

from __future__ import annotations

import contextlib
import copy
import math
from pathlib import Path

import torch

from rlreason.learner.policy import LoraPolicy, adapter_config_dict
from rlreason.models.info import write_adapter
from rlreason.types import WeightUpdate


class PhasedLoraPolicy(LoraPolicy):
    def __init__(self, cfg, device: torch.device) -> None:
        super().__init__(cfg, device)
        first = self.peft.peft_config[self.adapter]
        if getattr(first, "rank_pattern", None) or getattr(first, "alpha_pattern", None):
            raise ValueError("continual.adapters: per_phase stacks adapters of one rank and scale; the starting "
                             "adapter has per-layer rank_pattern/alpha_pattern")
        self.phases = [self.adapter]  # adapter names, oldest first; the last one trains

    def new_phase(self) -> list[torch.nn.Parameter]:
        """Freeze the current adapter, add and activate a fresh one, and return its parameters."""
        name = f"phase{len(self.phases) + 1}"
        self.peft.add_adapter(name, copy.deepcopy(self.peft.peft_config[self.phases[0]]))
        self.phases.append(name)
        self.peft.base_model.set_adapter(self.phases)  # all active (summed); PEFT marks them all trainable...
        self.adapter, self._anchor = name, None
        self._freeze()  # ...so freeze all but the new one
        if self._cbp is not None:
            from rlreason.learner.continual_backprop import ContinualBackprop

            old = self._cbp
            old.close()
            self._cbp = ContinualBackprop(self.peft, old.every, old.replace_frac, old.maturity, name,
                                          old.replaced_total)
        return self.trainable()

    def state(self) -> dict:
        return {**super().state(), "phases": len(self.phases)}

    def _freeze(self) -> None:
        for param_name, param in self.peft.named_parameters():
            if ".lora_" in param_name:
                param.requires_grad = f".{self.adapter}." in param_name

    @contextlib.contextmanager
    def reference(self):
        """As ``LoraPolicy.reference``; PEFT's switching the adapters back on marks every active adapter trainable
        again, so the earlier phases' adapters are frozen again afterwards."""
        try:
            with super().reference() as model:
                yield model
        finally:
            self._freeze()

    def export(self, version: int) -> WeightUpdate:
        """Every phase's adapter as one adapter (see the module docstring)."""
        config, tensors = self.stacked()
        return WeightUpdate(version=version, kind="lora", payload={"config": config, "tensors": tensors},
                            nbytes=sum(t.numel() * t.element_size() for t in tensors.values()))

    def stacked(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """(PEFT config, tensors) of the single adapter equal to the sum of the phases' adapters."""
        from peft import get_peft_model_state_dict

        parts: dict[str, list[torch.Tensor]] = {}
        rank = 0
        for name in self.phases:
            config = self.peft.peft_config[name]
            scale = config.lora_alpha / (math.sqrt(config.r) if config.use_rslora else config.r)
            rank += config.r
            for key, value in get_peft_model_state_dict(self.peft, adapter_name=name).items():
                value = value.detach().to("cpu", dtype=torch.float32, copy=True)
                if ".lora_B." in key:
                    value = value * scale
                elif ".lora_A." not in key:
                    raise ValueError(f"cannot stack adapter tensor {key!r} (only lora_A / lora_B)")
                parts.setdefault(key, []).append(value)
        tensors = {k: torch.cat(v, dim=1 if ".lora_B." in k else 0) for k, v in parts.items()}
        config = adapter_config_dict(self.peft.peft_config[self.phases[0]])
        config.update(r=rank, lora_alpha=float(rank), use_rslora=False, rank_pattern={}, alpha_pattern={})
        return config, tensors

    def save(self, directory: Path) -> None:
        """The stack as one adapter in ``directory``, and each phase's adapter under ``phases/phase<i>/``."""
        from peft import get_peft_model_state_dict

        write_adapter(Path(directory), *self.stacked())
        for i, name in enumerate(self.phases, 1):
            state = {k: v.detach().cpu().contiguous()
                     for k, v in get_peft_model_state_dict(self.peft, adapter_name=name).items()}
            write_adapter(Path(directory) / "phases" / f"phase{i}",
                          adapter_config_dict(self.peft.peft_config[name]), state)
