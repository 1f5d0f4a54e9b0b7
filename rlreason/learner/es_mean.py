"""The learner's part of ES: it holds the mean adapter theta, applies a generation's update from seeds and weights
(no gradient, no optimizer step), and writes chosen members as adapter directories (the elite archive)."""

from __future__ import annotations

from pathlib import Path


class ESMean:
    """Mixed into ``Learner`` (needs its ``policy``, ``version`` and ``export_weights``). LoRA policies only."""

    def _mean(self) -> dict:
        update = self.policy.export(self.version)
        if update.kind != "lora":
            raise ValueError("es evolves a LoRA adapter: set model.lora")
        return update.payload

    def es_step(self, members: list[tuple[int, int]], weights: list[float], lr: float, rank: int = 0) -> dict:
        """theta += (lr / N) sum w_i sign_i eps(seed_i); the next policy version. Returns the step's norm."""
        import torch
        from peft import set_peft_model_state_dict

        from rlreason.algorithms.es import update

        mean = self._mean()["tensors"]
        new, norm = update(mean, members, torch.tensor(weights, dtype=torch.float64), lr, rank)
        device = next(self.policy.peft.parameters()).device
        set_peft_model_state_dict(self.policy.peft, {k: v.to(device) for k, v in new.items()})
        self.version += 1
        return {"es_update_norm": norm, "policy_version": float(self.version)}

    def es_save_member(self, seed: int, sign: int, sigma: float, rank: int, directory: str) -> dict:
        """Write member (seed, sign) around the current mean as a PEFT adapter directory (servable, trainable);
        its tensors (CPU), so an engine on another node can serve it without reading that directory."""
        from rlreason.algorithms.es import perturbed
        from rlreason.models.info import write_adapter

        payload = self._mean()
        out = Path(directory)
        member = perturbed(payload["tensors"], seed, sign, sigma, rank)
        write_adapter(out, {**payload["config"], "base_model_name_or_path": self.policy.path}, member)
        return {name: t.detach().to("cpu") for name, t in member.items()}
