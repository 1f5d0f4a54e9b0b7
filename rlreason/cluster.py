"""Start (or join) Ray and place the actors: N rollout workers, each owning a vLLM engine, and one learner."""

from __future__ import annotations

import os
from dataclasses import dataclass

from rlreason.config import RunConfig
from rlreason.rollout.engine import cpu_engine_env


@dataclass
class Cluster:
    workers: list  # Ray actor handles of RolloutEngine
    learner: object | None  # Ray actor handle of Learner (None: an evaluation, nothing trains)
    started_ray: bool
    is_ready: bool = False  # every actor has started (``ready``)

    def shutdown(self) -> None:
        import ray

        try:  # let started engines clean up (adapter files on tmpfs) before they are killed (a close would queue
            # behind an engine still starting: a Ctrl-C during start-up would wait for it)
            if self.is_ready:
                ray.get([w.close.remote() for w in self.workers], timeout=30)
        except Exception:  # noqa: BLE001 - a dead or stuck engine must not stop the shutdown
            pass
        for actor in [*self.workers, *([self.learner] if self.learner is not None else [])]:
            ray.kill(actor)
        if self.started_ray:
            ray.shutdown()

    def ready(self) -> "Cluster":
        """Wait until every actor has started (their start-up errors surface here)."""
        import ray

        ray.get([w.get_version.remote() for w in self.workers]
                + ([self.learner.get_version.remote()] if self.learner is not None else []))
        self.is_ready = True
        return self


def start_cluster(cfg: RunConfig, learner: bool = True) -> Cluster:
    return launch_cluster(cfg, learner).ready()


def launch_cluster(cfg: RunConfig, learner: bool = True) -> Cluster:
    """Start Ray and create the actors without waiting for them (their imports and engine start-up take seconds:
    the caller does its own start-up meanwhile, then calls ``ready``)."""
    import ray

    from rlreason.learner.learner import Learner
    from rlreason.rollout.engine import RolloutEngine

    started = not ray.is_initialized()
    if started:
        cores = os.cpu_count() or 1
        ray.init(address=cfg.ray.address, num_cpus=None if cfg.ray.address else (cfg.ray.num_cpus or max(
            cores, cfg.rollout.workers + 1)), include_dashboard=False, log_to_driver=False,
            configure_logging=True, logging_level="WARNING")
    path, n = cfg.model.resolved_path(), cfg.rollout.workers
    # Synchronous (generate, then train): the engines and then the learner use every core. Asynchronous: both work
    # at once, so the learner takes half the cores and the engines the other half (sharing all of them, 3 threads
    # on 2 cores, made async slower than sync).
    cores = os.cpu_count() or 1
    threads = cores if cfg.rollout.mode == "sync" else max(1, cores // 2)
    reserved = 0 if cfg.rollout.mode == "sync" or not learner else threads
    workers = [
        ray.remote(RolloutEngine).options(
            num_cpus=1, runtime_env={"env_vars": cpu_engine_env(rank, n, cfg.rollout.kv_cache_gib, reserved)},
            max_restarts=cfg.rollout.max_restarts, max_task_retries=0,  # recovery re-issues with current weights
        ).remote(path, seed=cfg.seed, max_model_len=cfg.model.max_model_len, dtype=cfg.engine_dtype,
                 rank=rank, world=n, kv_cache_gib=cfg.rollout.kv_cache_gib, lora_rank=cfg.served_lora_rank,
                 adapter=cfg.model.adapter)
        for rank in range(n)
    ]
    actor = ray.remote(Learner).options(num_cpus=1).remote(cfg, threads=threads) if learner else None
    return Cluster(workers=workers, learner=actor, started_ray=started)
