"""Evolution strategies over a LoRA adapter (Qiu et al., "Evolution Strategies at Scale", arXiv 2509.24372;
low-rank perturbations: EGGROLL, arXiv 2511.16652).

No gradient and no optimizer state. Each generation draws a population of N members around the mean adapter
theta; member i is theta + sigma * sign_i * eps(seed_i), its noise regenerated anywhere from its integer seed (with
``antithetic``, members come in pairs (seed, +1), (seed, -1)). Every member answers the same problems; its reward is
the mean verifier score of its completions; rewards are normalised within the population (z-score, centered rank,
or none) into weights w_i, and

    theta <- theta + (lr / N) * sum_i w_i * sign_i * eps(seed_i)          (accumulated in float32)

is the update (the paper's form; sigma lives in the perturbation only). ``perturb_rank`` 0 draws full Gaussian noise
for every adapter tensor; k > 0 draws each matrix's noise as U V^T / sqrt(k) with U, V Gaussian of rank k.

These are pure functions of tensors and seeds; the ES driver (``rlreason.drivers.es``) runs generations through the
rollout engines (every member an adapter, all served at once) and the learner (which holds theta).
"""

from __future__ import annotations

import math
import zlib
from typing import Literal

import torch
from pydantic import Field, model_validator

from rlreason.algorithms.base import AlgorithmConfig, AlgorithmSpec, register_algorithm


class ESConfig(AlgorithmConfig):
    population: int = Field(16, ge=2, description="members per generation (even with antithetic)")
    sigma: float = Field(0.005, gt=0.0, description="perturbation scale (the paper's 0.001 is for full weights; on "
                                                    "the tiny model's rank-8 adapter 0.03 already zeroes accuracy)")
    lr: float = Field(0.005, gt=0.0, description="step size of the mean: theta += lr / N * sum w_i sign_i eps_i")
    antithetic: bool = Field(True, description="members in +/- pairs sharing a seed")
    perturb_rank: int = Field(0, ge=0, description="0: full Gaussian noise per tensor; k: rank-k noise per matrix")
    normalize: Literal["zscore", "rank", "none"] = Field("zscore", description="reward normalisation within the "
                                                         "population")
    sigma_decay: float = Field(1.0, gt=0.0, le=1.0, description="sigma *= this every generation")
    lr_decay: float = Field(1.0, gt=0.0, le=1.0, description="lr *= this every generation")
    elites: int = Field(4, ge=0, description="best members kept in the archive (saved as adapters)")
    common_noise: bool = Field(True, description="members sample each problem with the same random numbers "
                               "(common random numbers): their rewards differ by their perturbations, not by "
                               "sampling luck")
    greedy: bool = Field(False, description="members answer each problem once with greedy decoding (rollout."
                         "group_size does not apply): a member's reward depends on its perturbation only")

    @property
    def served_members(self) -> int:
        return self.population

    @model_validator(mode="after")
    def _pairs(self) -> "ESConfig":
        if self.antithetic and self.population % 2:
            raise ValueError(f"population: {self.population} with antithetic pairs must be even")
        return self


def member_seeds(run_seed: int, generation: int, population: int, antithetic: bool) -> list[tuple[int, int]]:
    """(seed, sign) of every member of a generation; antithetic pairs share a seed."""
    base = (run_seed * 1_000_003 + generation * 7_919) % 2**31
    if antithetic:
        return [(base + i // 2, 1 if i % 2 == 0 else -1) for i in range(population)]
    return [(base + i, 1) for i in range(population)]


def noise(seed: int, name: str, shape: tuple[int, ...], rank: int = 0) -> torch.Tensor:
    """The member noise of one tensor: the same in every process for (seed, name, shape, rank) (float32, CPU)."""
    generator = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63)
    if rank == 0 or len(shape) != 2:
        return torch.randn(shape, generator=generator)
    u = torch.randn(shape[0], rank, generator=generator)
    v = torch.randn(shape[1], rank, generator=generator)
    return u @ v.T / math.sqrt(rank)


def perturbed(mean: dict[str, torch.Tensor], seed: int, sign: int, sigma: float, rank: int = 0
              ) -> dict[str, torch.Tensor]:
    """A member: theta + sigma * sign * eps(seed), in each tensor's own dtype."""
    return {name: (t.float() + sigma * sign * noise(seed, name, tuple(t.shape), rank).to(t.device)).to(t.dtype)
            for name, t in mean.items()}


def normalized(rewards: list[float], how: str) -> torch.Tensor:
    """Population weights from rewards: z-scores (0 when all are equal), centered ranks in [-0.5, 0.5] (ties share
    their mean rank), or the rewards themselves."""
    r = torch.tensor(rewards, dtype=torch.float64)
    if how == "none":
        return r
    if how == "zscore":
        std = r.std(unbiased=False)
        return torch.zeros_like(r) if std < 1e-12 else (r - r.mean()) / std
    order = torch.argsort(torch.argsort(r)).double()
    ranks = torch.tensor([order[r == v].mean().item() for v in r], dtype=torch.float64)  # ties: mean rank
    return ranks / max(len(r) - 1, 1) - 0.5


def update(mean: dict[str, torch.Tensor], members: list[tuple[int, int]], weights: torch.Tensor, lr: float,
           rank: int = 0) -> tuple[dict[str, torch.Tensor], float]:
    """The new mean and the norm of the step: theta + (lr / N) * sum_i w_i sign_i eps(seed_i), in float32."""
    n = len(members)
    step = {name: torch.zeros(t.shape, dtype=torch.float32) for name, t in mean.items()}
    for (seed, sign), w in zip(members, weights.tolist()):
        if w == 0.0:
            continue
        for name, t in step.items():
            t.add_(noise(seed, name, tuple(t.shape), rank), alpha=lr / n * w * sign)
    norm = math.sqrt(sum(float(t.pow(2).sum()) for t in step.values()))
    return {name: (mean[name].float() + step[name].to(mean[name].device)).to(mean[name].dtype) for name in mean}, norm


def _no_loss(*_):
    raise TypeError("es has no gradient loss: its generations run in the ES driver (rlreason.drivers.es)")


register_algorithm(AlgorithmSpec(
    name="es", description="evolution strategies over the LoRA adapter: a population of perturbed adapters served at "
    "once, no gradients", paper="arXiv 2509.24372 (ES at scale); arXiv 2511.16652 (EGGROLL, low-rank noise)",
    config=ESConfig, advantage=_no_loss, loss=_no_loss, driver="es"))
