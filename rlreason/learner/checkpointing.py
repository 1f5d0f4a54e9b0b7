"""The learner's part of a checkpoint: the policy (weights or adapters, anchor, continual-backprop state), optimizer
and LR schedule, critic, counters and the torch RNG, in one ``learner.pt``. Loading rebuilds the same structure first
(one adapter per phase: the same phases, so the optimizer's parameter groups match), then restores every value, so
the next step computes exactly what the uninterrupted run would have."""

from __future__ import annotations

from pathlib import Path

import torch

FILE = "learner.pt"


def save_learner(learner, directory: Path) -> Path:
    state = {
        "version": learner.version, "nonfinite_steps": learner.nonfinite_steps,
        "policy": learner.policy.state(), "optimizer": learner.optimizer.state_dict(),
        "scheduler": learner.scheduler.state_dict(),
        "critic": None if learner.critic is None else learner.critic.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    path = Path(directory) / FILE
    torch.save(state, path)
    return path


def _apply_lr(learner, lr: float) -> None:
    """The recipe's ``train.lr`` wins over the checkpoint's (a resume may lower it); unchanged, nothing moves."""
    scheduler = learner.scheduler
    if all(base == lr for base in scheduler.base_lrs):
        return
    scheduler.base_lrs = [lr] * len(scheduler.base_lrs)
    values = [lr * f(scheduler.last_epoch) for f in scheduler.lr_lambdas]
    for group, value in zip(learner.optimizer.param_groups, values):
        group["initial_lr"], group["lr"] = lr, value
    scheduler._last_lr = values


def load_learner(learner, directory: Path) -> None:
    state = torch.load(Path(directory) / FILE, map_location=learner.device, weights_only=False)
    for _ in range(state["policy"].get("phases", 1) - 1):
        learner.new_phase()
    learner.policy.load_state(state["policy"])
    learner.optimizer.load_state_dict(state["optimizer"])
    for group in learner.optimizer.param_groups:  # a checkpoint from before fused AdamW would turn it off
        group["fused"] = True
    learner.scheduler.load_state_dict(state["scheduler"])
    _apply_lr(learner, learner.cfg.train.lr)
    if learner.critic is not None:
        learner.critic.load_state_dict(state["critic"])
    learner.version, learner.nonfinite_steps = state["version"], state["nonfinite_steps"]
    torch.set_rng_state(state["torch_rng"].cpu())
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])  # RNG states must be CPU tensors
