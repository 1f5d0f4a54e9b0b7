"""The engine's part of ES: serve a whole population of adapters at once, each built here from its seed around
the adapter the engine serves (only seeds travel), and sample every member on the same problems in one batch."""

from __future__ import annotations

from rlreason.types import Completion, Problem


class PopulationServer:
    """Mixed into ``RolloutEngine`` (needs its ``adapters``, ``_generate`` and ``restarted``)."""

    def generate_population(self, problems: list[Problem], sampling, members: list[tuple[int, int]], sigma: float,
                            rank: int = 0, tag: str = "m", common_seed: int | None = None
                            ) -> list[list[list[Completion]]]:
        """For every member (seed, sign): its groups, one per problem, in order. The members are served as
        adapters beside the policy for this call only. ``common_seed``: every member samples problem i with the
        same random numbers (seeds from common_seed + i * n): where members' next-token distributions agree they
        pick the same tokens, so their rewards differ by what their perturbations change, not by sampling luck."""
        from rlreason.algorithms.es import perturbed
        from rlreason.rollout.recovery import EngineRestarted

        if self.restarted:
            raise EngineRestarted(f"rollout worker {self.rank} was restarted and has not been given weights yet")
        versions = self.adapters
        if versions is None or versions.tensors is None:
            raise RuntimeError("a population needs a LoRA policy pushed into this engine first (model.lora)")
        requests = []
        try:
            for k, (seed, sign) in enumerate(members):
                tensors = perturbed(versions.tensors, seed, sign, sigma, rank)
                requests.append(versions.add_member(f"{tag}-{k}", tensors))
            seeds = None if common_seed is None else \
                [common_seed + i * sampling.n for i in range(len(problems))] * len(members)
            flat = self._generate(problems * len(members), sampling,  # one batch: every member at once
                                  [r for r in requests for _ in problems], seeds)
        finally:
            versions.drop_members(requests)
        n = len(problems)
        return [flat[k * n:(k + 1) * n] for k in range(len(members))]
