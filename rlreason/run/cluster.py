"""Start (or join) Ray and place the actors: N rollout workers, each owning a vLLM engine, and the learners."""

from __future__ import annotations

import os
from dataclasses import dataclass

from rlreason.recipe import RunConfig
from rlreason.rollout.engine import cpu_engine_env


@dataclass
class Cluster:
    workers: list  # Ray actor handles of RolloutEngine
    learner: object | None  # LearnerGroup (None: an evaluation, nothing trains)
    started_ray: bool  # this process connected to Ray (and disconnects at the end)
    is_ready: bool = False  # every actor has started (``ready``)
    placement: object | None = None  # rlreason.run.placement.Placement
    local: bool = True  # a private instance: its processes (actors too) descend from this one


    @property
    def actors(self) -> list:
        return [*self.workers, *(self.learner.actors if self.learner is not None else [])]

    def shutdown(self) -> None:
        import ray

        try:  # let started engines clean up (adapter files on tmpfs) before they are killed (a close would queue
            # behind an engine still starting: a Ctrl-C during start-up would wait for it)
            if self.is_ready:
                ray.get([w.close.remote() for w in self.workers], timeout=30)
        except Exception:  # noqa: BLE001 - a dead or stuck engine must not stop the shutdown
            pass
        for actor in self.actors:
            ray.kill(actor)
        if self.placement is not None:
            self.placement.remove()
        if self.started_ray:
            ray.shutdown()

    def where(self) -> dict[str, dict]:
        """Each actor's node, pid and GPUs, by role and rank (``placement.json`` of a run)."""
        import ray

        names = [f"rollout-{i}" for i in range(len(self.workers))]
        names += [f"learner-{i}" for i in range(len(self.learner.actors) if self.learner is not None else 0)]
        return dict(zip(names, ray.get([a.where.remote() for a in self.actors])))

    def ready(self) -> "Cluster":
        """Wait until every actor has started (their start-up errors surface here) and the learners are
        connected."""
        import ray

        ray.get([w.get_version.remote() for w in self.workers]
                + ([a.get_version.remote() for a in self.learner.actors] if self.learner is not None else []))
        if self.learner is not None:
            self.learner.connect()
        self.is_ready = True
        return self


def start_cluster(cfg: RunConfig, learner: bool = True) -> Cluster:
    return launch_cluster(cfg, learner).ready()


def launch_cluster(cfg: RunConfig, learner: bool = True) -> Cluster:
    """Start Ray and create the actors without waiting for them (their imports and engine start-up take seconds:
    the caller does its own start-up meanwhile, then calls ``ready``). PlacementError/ClusterError (one line)
    before any actor starts when the cluster cannot hold the run."""
    import ray

    from rlreason.learner.group import LearnerGroup
    from rlreason.learner.learner import Learner
    from rlreason.run.placement import place
    from rlreason.run.ray_connect import connect
    from rlreason.rollout.engine import RolloutEngine

    started = connect(cfg)
    try:
        placement = place(cfg, learners=learner)
    except Exception:
        if started:
            ray.shutdown()
        raise
    path, n, m = cfg.model.resolved_path(), cfg.rollout.workers, cfg.train.learners
    # Synchronous (generate, then train): the engines and then the learners use every core. Asynchronous: both work
    # at once, so the learners take half the cores and the engines the other half (sharing all of them, 3 threads
    # on 2 cores, made async slower than sync).
    cores = os.cpu_count() or 1
    threads = cores if cfg.rollout.mode == "sync" else max(1, cores // 2)
    reserved = 0 if cfg.rollout.mode == "sync" or not learner else threads
    workers = [
        ray.remote(RolloutEngine).options(
            **placement.workers[rank],
            runtime_env={"env_vars": cpu_engine_env(rank, n, cfg.rollout.kv_cache_gib, reserved)},
            max_restarts=cfg.rollout.max_restarts, max_task_retries=0,  # recovery re-issues with current weights
        ).remote(path, seed=cfg.seed, max_model_len=cfg.model.max_model_len, dtype=cfg.engine_dtype,
                 rank=rank, world=n, kv_cache_gib=cfg.rollout.kv_cache_gib, lora_rank=cfg.served_lora_rank,
                 adapter=cfg.model.adapter, tensor_parallel=cfg.rollout.tensor_parallel,
                 gpus=cfg.rollout.gpus_per_worker,
                 max_loras=2 + -(-cfg.algorithm.served_members // n) + len(cfg.team.members))
        for rank in range(n)
    ]
    group = None
    if learner:
        per = max(1, threads // m)  # the learners share the cores a single learner would have
        group = LearnerGroup([ray.remote(Learner).options(**placement.learners[rank]).remote(
            cfg, threads=per, rank=rank, world=m) for rank in range(m)])
    return Cluster(workers=workers, learner=group, started_ray=started, placement=placement,
                   local=cfg.ray.address is None)
