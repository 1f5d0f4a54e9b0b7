"""What a recipe asks of a cluster: Ray resources per role, the rules between the placement fields, and the check
of a cluster's resources against them (pure functions; ``rlreason.run.placement`` creates the placement groups).

Roles: rollout workers (``rollout.gpus_per_worker``, ``rollout.tensor_parallel``, ``rollout.resources``) and
learners (``train.learners``, ``train.gpus_per_learner``, ``train.resources``); one CPU each. Layouts
(``ray.layout``): ``split`` puts the workers in one placement group and the learners in another (each packed onto
as few nodes as fit); ``colocated`` gives rollout worker i and learner i one bundle, so they share a node and, by
fractions, a GPU. On a CPU machine the same code runs with CPUs only.
"""

from __future__ import annotations

from rlreason.recipe.sections import RecipeError, RunConfig


class PlacementError(RecipeError):
    """The recipe asks for what the cluster cannot give (one line: the field, what it needs, what there is)."""


def check_recipe(cfg: RunConfig) -> None:
    """Rules between the placement fields themselves (no cluster needed)."""
    r, t = cfg.rollout, cfg.train
    if r.tensor_parallel > 1 and r.gpus_per_worker != r.tensor_parallel:
        raise RecipeError(f"rollout.tensor_parallel: {r.tensor_parallel} shards need rollout.gpus_per_worker "
                          f"{r.tensor_parallel} (one GPU each), not {r.gpus_per_worker:g}")
    if r.gpus_per_worker > 1 and r.gpus_per_worker != int(r.gpus_per_worker):
        raise RecipeError(f"rollout.gpus_per_worker: {r.gpus_per_worker:g}; above 1, whole GPUs only")
    if t.gpus_per_learner > 1:
        raise RecipeError(f"train.gpus_per_learner: {t.gpus_per_learner:g}; a learner uses one GPU (more learners: "
                          "train.learners)")
    if r.push == "collective" and r.mode == "async":
        raise RecipeError("rollout.push: 'collective' is for rollout.mode sync (an engine still generating would "
                          "hold the learner in the broadcast); allowed here: auto, object_store")
    if cfg.algorithm.served_members and not cfg.model.uses_lora:
        raise RecipeError(f"algorithm.name: {cfg.algorithm.name!r} evolves a population of LoRA adapters; set "
                          "model.lora (e.g. model.lora.rank=8)")
    if cfg.algorithm.served_members and (r.mode != "sync" or cfg.continual.phases or cfg.tasks.stream
                                         or cfg.continual.adapters != "shared"):
        raise RecipeError(f"algorithm.name: {cfg.algorithm.name!r} runs its own generations in rlreason train "
                          "(rollout.mode sync, no continual phases, adapters or stream)")
    if t.learners > 1 and cfg.continual.cbp_every:
        raise RecipeError("continual.cbp_every: continual backprop runs on one learner (its utilities are per rank); "
                          "set train.learners=1 or continual.cbp_every=0")
    if r.tensor_parallel > 1 and not cfg.model.uses_lora:
        raise RecipeError(f"rollout.tensor_parallel: {r.tensor_parallel} shards serve LoRA policies only (full-weight "
                          "pushes into a sharded engine are not built); set model.lora or rollout.tensor_parallel=1")
    if cfg.ray.layout == "colocated":
        if r.workers != t.learners:
            raise RecipeError(f"ray.layout: 'colocated' pairs rollout worker i with learner i; rollout.workers "
                              f"({r.workers}) must equal train.learners ({t.learners})")
        if r.gpus_per_worker + t.gpus_per_learner > 1:
            raise RecipeError(f"ray.layout: 'colocated' shares one GPU per pair; rollout.gpus_per_worker + "
                              f"train.gpus_per_learner is {r.gpus_per_worker + t.gpus_per_learner:g} (at most 1, "
                              "e.g. 0.5 each)")


def _merge(*parts: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in parts:
        for k, v in part.items():
            if v:
                out[k] = out.get(k, 0.0) + v
    return out


def worker_bundle(cfg: RunConfig) -> dict[str, float]:
    return _merge({"CPU": 1.0, "GPU": cfg.rollout.gpus_per_worker}, cfg.rollout.resources)


def learner_bundle(cfg: RunConfig) -> dict[str, float]:
    return _merge({"CPU": 1.0, "GPU": cfg.train.gpus_per_learner}, cfg.train.resources)


def demand(cfg: RunConfig) -> dict[str, float]:
    """What the run reserves in all, per resource."""
    n, m = cfg.rollout.workers, cfg.train.learners
    return _merge({k: v * n for k, v in worker_bundle(cfg).items()}, {k: v * m for k, v in learner_bundle(cfg).items()})


_WHO = {"GPU": "rollout.gpus_per_worker / train.gpus_per_learner", "CPU": "rollout.workers + train.learners"}


def check_cluster(cfg: RunConfig, total: dict[str, float], nodes: list[dict[str, float]]) -> None:
    """PlacementError unless the cluster (``total``: ``ray.cluster_resources()``, ``nodes``: each alive node's
    resources) can hold the run's bundles."""
    for name, need in sorted(demand(cfg).items()):
        have = total.get(name, 0.0)
        if need > have + 1e-9:
            who = _WHO.get(name, "rollout.resources / train.resources")
            raise PlacementError(f"{who}: the run needs {need:g} {name} ({describe(cfg)}); the cluster has {have:g}")
    tp = cfg.rollout.tensor_parallel
    largest = max((node.get("GPU", 0.0) for node in nodes), default=0.0)
    if tp > 1 and largest < tp:
        raise PlacementError(f"rollout.tensor_parallel: {tp} GPUs on one node; the largest node has {largest:g}")
    roles = [("rollout", worker_bundle(cfg), cfg.rollout.workers), ("train", learner_bundle(cfg), cfg.train.learners)]
    if cfg.ray.layout == "colocated" and cfg.train.learners:
        roles = [("ray.layout", _merge(worker_bundle(cfg), learner_bundle(cfg)), 1)]
    for role, bundle, count in roles:
        if count and not any(all(node.get(k, 0.0) >= v for k, v in bundle.items()) for node in nodes):
            raise PlacementError(f"{role}: no node can hold one {'pair' if role == 'ray.layout' else role + ' actor'} "
                                 f"({_show(bundle)})")


def describe(cfg: RunConfig) -> str:
    roles = f"{cfg.rollout.workers} rollout worker(s) x {_show(worker_bundle(cfg))}"
    if cfg.train.learners:  # (none: an evaluation)
        roles += f" + {cfg.train.learners} learner(s) x {_show(learner_bundle(cfg))}"
    return roles


def _show(bundle: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in bundle.items()) + "}"
