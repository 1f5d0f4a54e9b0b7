"""Where each actor runs: placement groups for the recipe's bundles (``rlreason.recipe.resources``), checked against
the cluster before any actor starts. Layouts (``ray.layout``): ``split`` puts the workers in one placement group and
the learners in another (each packed onto as few nodes as fit); ``colocated`` gives rollout worker i and learner i
one bundle, so they share a node and, by fractions, a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rlreason.recipe import RunConfig
from rlreason.recipe.resources import PlacementError, _merge, check_cluster, describe, learner_bundle, worker_bundle


@dataclass
class Placement:
    """Ray ``.options`` for each worker and each learner, and the placement groups to remove at the end."""

    workers: list[dict] = field(default_factory=list)
    learners: list[dict] = field(default_factory=list)
    groups: list = field(default_factory=list)

    def remove(self) -> None:
        from ray.util import remove_placement_group

        for group in self.groups:
            try:
                remove_placement_group(group)
            except Exception:  # noqa: BLE001 - Ray already gone: its groups went with it
                pass


WAIT_S = 60.0  # for a placement group to be placed (resources in use by other jobs)


def place(cfg: RunConfig, learners: bool = True) -> Placement:
    """Check the cluster, create the placement groups and wait until they are placed (PlacementError after
    ``WAIT_S`` when the cluster's free resources cannot hold them)."""
    out = _create(cfg, learners)
    import ray

    try:
        ray.get([g.ready() for g in out.groups], timeout=WAIT_S)
    except ray.exceptions.GetTimeoutError:
        out.remove()
        raise PlacementError(f"ray: the cluster's free resources did not hold the run within {WAIT_S:.0f} s "
                             f"({describe(cfg)}); see what is in use with ray status") from None
    return out


def _create(cfg: RunConfig, learners: bool) -> Placement:
    import ray
    from ray.util import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    run = cfg if learners else cfg.model_copy(update={"train": cfg.train.model_copy(update={"learners": 0})})
    check_cluster(run, ray.cluster_resources(), nodes)

    def options(group, index: int, bundle: dict[str, float]) -> dict:
        custom = {k: v for k, v in bundle.items() if k not in ("CPU", "GPU")}
        return {"num_cpus": bundle["CPU"], "num_gpus": bundle.get("GPU", 0.0), "resources": custom,
                "scheduling_strategy": PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=index)}

    n, m, out = cfg.rollout.workers, (cfg.train.learners if learners else 0), Placement()
    w, lb = worker_bundle(cfg), learner_bundle(cfg)
    if cfg.ray.layout == "colocated" and m:
        group = placement_group([_merge(w, lb)] * n, strategy="PACK")
        out.groups.append(group)
        out.workers = [options(group, i, w) for i in range(n)]
        out.learners = [options(group, i, lb) for i in range(m)]
        return out
    workers = placement_group([w] * n, strategy="PACK")
    out.groups.append(workers)
    out.workers = [options(workers, i, w) for i in range(n)]
    if m:
        group = placement_group([lb] * m, strategy="PACK")
        out.groups.append(group)
        out.learners = [options(group, i, lb) for i in range(m)]
    return out
