"""A learner's place in a data-parallel group (``train.learners``).

Every rank holds the whole batch (token ids and rewards: small next to the model) and trains its own share of each
optimizer step's rows. Every loss is normalised by the whole step's counts (tokens, sequences, groups), so it is a
sum over rows: the ranks' gradients, summed, are the gradient one learner computes, and N learners make the update
one learner makes. Frozen forward passes (old and reference logprobs, critic values) are split the same way and
summed, so every rank computes the advantages over the whole batch. Alone (``world == 1``) every method here does
nothing and touches no ``torch.distributed``.
"""

from __future__ import annotations

from datetime import timedelta

import torch


class DataParallel:
    def __init__(self, rank: int = 0, world: int = 1) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside a group of {world}")
        self.rank, self.world = rank, world
        self.joined = False

    @property
    def alone(self) -> bool:
        return self.world == 1

    def join(self, address: str, port: int, backend: str = "gloo", timeout_s: float = 600.0) -> None:
        """Join the group's process group (gloo, or NCCL between GPUs of their own). Every rank calls this at the
        same time."""
        import torch.distributed as dist

        if self.alone or self.joined:
            return
        dist.init_process_group(backend, init_method=f"tcp://{address}:{port}", rank=self.rank,
                                world_size=self.world, timeout=timedelta(seconds=timeout_s))
        self.joined = True

    def leave(self) -> None:
        import torch.distributed as dist

        if self.joined:
            dist.destroy_process_group()
            self.joined = False

    def share(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's rows of ``rows`` (every world-th, from its rank: rows sorted by length stay balanced)."""
        return rows if self.alone else rows[self.rank::self.world]

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks, in place."""
        if not self.alone:
            import torch.distributed as dist

            dist.all_reduce(tensor)
        return tensor

    def sum_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Every parameter's gradient summed over the ranks (one flat all-reduce). A parameter no rank computed a
        gradient for keeps none (the optimizer then skips it, as it does for one learner)."""
        if self.alone:
            return
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

        had = torch.tensor([float(p.grad is not None) for p in params], device=params[0].device)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = self.sum(_flatten_dense_tensors(grads))
        self.sum(had)
        for p, g, h in zip(params, _unflatten_dense_tensors(flat, grads), had.tolist()):
            p.grad = g if h > 0 else None

    def gather(self, items: list) -> list:
        """Every rank's ``items``, concatenated in rank order (small Python objects)."""
        if self.alone:
            return items
        import torch.distributed as dist

        parts: list = [None] * self.world
        dist.all_gather_object(parts, items)
        return [x for part in parts for x in part]

    def sum_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """Per-rank sums of metrics (each already weighted by its share of the step) added up over the ranks; a key
        a rank did not report (no rows) counts 0 there."""
        if self.alone:
            return sums
        total: dict[str, float] = {}
        for part in self.gather([sums]):
            for k, v in part.items():
                total[k] = total.get(k, 0.0) + v
        return total

    def broadcast(self, tensors: list[torch.Tensor]) -> None:
        """Rank 0's values of ``tensors`` on every rank (the same start, whatever each rank's initialisation)."""
        if self.alone:
            return
        import torch.distributed as dist

        for t in tensors:
            dist.broadcast(t.data, src=0)
