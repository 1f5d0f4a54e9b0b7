"""The trainable policy, in two kinds the learner cannot tell apart: full weights, or a PEFT LoRA adapter on frozen
weights. Each kind owns what differs between them (which parameters train, what the reference model is, what
travels to the engines, what is saved, which diagnostics it has), so the learner never branches on LoRA.

- ``FullPolicy``: every weight trains; the reference (for a KL term) is a frozen copy loaded only when the
  algorithm asks for one; a push sends every tensor under its Hugging Face name.
- ``LoraPolicy``: only the adapter trains; the reference is the same model with the adapter switched off (no
  second copy of the weights, so it is always available and the learner also logs the KL to the base model); a
  push sends only the adapter tensors and its PEFT config; ``save`` writes a normal PEFT adapter directory.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

from rlreason.recipe import RunConfig
from rlreason.learner import plasticity
from rlreason.learner.attention import load_choice
from rlreason.models.info import LORA_SERVABLE, lora_target_candidates
from rlreason.types import WeightUpdate


def _load(cfg: RunConfig, device: torch.device):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(cfg.model.resolved_path(), dtype=torch.float32,
                                                 attn_implementation=load_choice(cfg.model.attention, device.type))
    model = model.to(device)
    model.config.use_cache = False
    return model


class FullPolicy:
    free_reference = False  # a reference costs a second copy of the weights: only when the algorithm needs it

    def __init__(self, cfg: RunConfig, device: torch.device) -> None:
        self.path = cfg.model.resolved_path()
        self.model = _load(cfg, device)
        self._reference = None
        if cfg.algorithm.needs_reference:
            self._reference = _load(cfg, device).eval().requires_grad_(False)

    def trainable(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())

    @contextlib.contextmanager
    def reference(self):
        """The frozen reference model (None when the algorithm needs none)."""
        yield self._reference

    def export(self, version: int) -> WeightUpdate:
        """Every tensor under its Hugging Face name, on CPU. A tied LM head is sent too, though it repeats the
        embeddings: vLLM's CPU backend repacks the head into a copy of its own (skipping it broke the logprob
        parity test)."""
        payload = [(name, p.detach().to("cpu", copy=True)) for name, p in self.model.state_dict().items()]
        return WeightUpdate(version=version, kind="full", payload=payload,
                            nbytes=sum(t.numel() * t.element_size() for _, t in payload))

    def save(self, directory: Path) -> None:
        self.model.save_pretrained(directory, safe_serialization=True)

    def gradient_metrics(self) -> dict[str, float]:
        return {}

    def weight_metrics(self) -> dict[str, float]:
        return {}

    def after_step(self, optimizer) -> dict[str, float]:
        return {}

    def set_anchor(self) -> None:
        raise ValueError("a KL anchor to the previous phase needs a LoRA policy (model.lora)")

    def new_phase(self) -> list[torch.nn.Parameter]:
        """A continual run entered a new phase: parameters that start training now (none: the same ones train)."""
        return []

    def state(self) -> dict:
        """What a checkpoint needs to rebuild this policy exactly."""
        return {"model": self.model.state_dict()}

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])


def peft_lora_config(cfg: RunConfig):
    from peft import LoraConfig

    lora = cfg.model.lora
    targets = lora_target_candidates(Path(cfg.model.resolved_path())) if "all" in lora.target_modules else [
        m for m in LORA_SERVABLE if m in lora.target_modules]
    return LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                      init_lora_weights=True if lora.init == "default" else "gaussian", bias="none",
                      task_type="CAUSAL_LM")


class LoraPolicy:
    free_reference = True

    def __init__(self, cfg: RunConfig, device: torch.device) -> None:
        from peft import PeftModel, get_peft_model

        self.path = cfg.model.resolved_path()
        base = _load(cfg, device)
        if cfg.model.adapter is not None:
            self.peft = PeftModel.from_pretrained(base, cfg.model.adapter, is_trainable=True)
        else:
            self.peft = get_peft_model(base, peft_lora_config(cfg))
        self.adapter = "default"  # the adapter that trains
        self.peft.peft_config[self.adapter].base_model_name_or_path = self.path
        self.model = self.peft.get_base_model()  # the HF model with the adapter layers inside it
        self._anchor: dict[str, torch.Tensor] | None = None
        c = cfg.continual
        self._cbp = None
        if c.cbp_every:
            from rlreason.learner.continual_backprop import ContinualBackprop

            self._cbp = ContinualBackprop(self.peft, c.cbp_every, c.cbp_replace_frac, c.cbp_maturity, self.adapter)

    def trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.peft.parameters() if p.requires_grad]

    @contextlib.contextmanager
    def reference(self):
        """The base model (the same weights with the adapter switched off), or, once ``set_anchor`` was called, the
        adapter as it was then (swapped in for the forward, swapped back after)."""
        if self._anchor is None:
            with self.peft.disable_adapter():
                yield self.model
            return
        params = dict(self.peft.named_parameters())
        current = {name: params[name].detach().clone() for name in self._anchor}
        with torch.no_grad():
            for name, value in self._anchor.items():
                params[name].copy_(value)
        try:
            yield self.model
        finally:
            with torch.no_grad():
                for name, value in current.items():
                    params[name].copy_(value)

    def set_anchor(self) -> None:
        """Freeze a snapshot of the adapter as the reference from now on (continual learning's KL anchor)."""
        self._anchor = {n: p.detach().clone() for n, p in self.peft.named_parameters() if p.requires_grad}

    def after_step(self, optimizer) -> dict[str, float]:
        return {} if self._cbp is None else self._cbp.step(optimizer)

    def new_phase(self) -> list[torch.nn.Parameter]:
        return []

    def state(self) -> dict:
        """The adapters (every LoRA tensor), the anchor and continual backprop's bookkeeping."""
        return {"lora": {n: p.detach().clone() for n, p in self.peft.named_parameters() if ".lora_" in n},
                "anchor": self._anchor, "cbp": None if self._cbp is None else self._cbp.state()}

    def load_state(self, state: dict) -> None:
        params = dict(self.peft.named_parameters())
        with torch.no_grad():
            for name, value in state["lora"].items():
                params[name].copy_(value)
        self._anchor = state["anchor"]
        if self._cbp is not None and state["cbp"] is not None:
            self._cbp.load_state(state["cbp"])

    def export(self, version: int) -> WeightUpdate:
        """Only the adapter: its tensors under PEFT's names and its config (JSON-ready)."""
        from peft import get_peft_model_state_dict

        tensors = {k: v.detach().to("cpu", copy=True) for k, v in get_peft_model_state_dict(self.peft).items()}
        payload = {"config": adapter_config_dict(self.peft.peft_config["default"]), "tensors": tensors}
        return WeightUpdate(version=version, kind="lora", payload=payload,
                            nbytes=sum(t.numel() * t.element_size() for t in tensors.values()))

    def save(self, directory: Path) -> None:
        self.peft.save_pretrained(directory, safe_serialization=True)

    def gradient_metrics(self) -> dict[str, float]:
        return plasticity.gradient_metrics(plasticity.lora_factors(self.peft, self.adapter))

    def weight_metrics(self) -> dict[str, float]:
        return plasticity.weight_metrics(plasticity.lora_factors(self.peft, self.adapter))


def adapter_config_dict(peft_config) -> dict:
    """A PEFT config as plain JSON data (sets become sorted lists), as ``save_pretrained`` writes it."""
    def plain(value):
        if isinstance(value, (set, frozenset)):
            return sorted(value)
        return value

    return json.loads(json.dumps({k: plain(v) for k, v in peft_config.to_dict().items()}, default=str))
