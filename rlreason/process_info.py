"""What every actor of a run (rollout worker, learner) answers about its own process: where it runs and its peak
memory. On a cluster the driver only joined, the actors are not the driver's descendants, and may be on other
nodes: they report these themselves."""

from __future__ import annotations

import os


class ActorInfo:
    def peak_rss_bytes(self) -> int:
        return own_peak_rss_bytes()

    def where(self) -> dict:
        """The Ray node this actor runs on (id and address), its pid and the GPUs it was given."""
        import ray

        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(), "node_ip": ray.util.get_node_ip_address(), "pid": os.getpid(),
                "gpus": [str(g) for g in context.get_accelerator_ids().get("GPU", [])]}


def own_peak_rss_bytes() -> int:
    """This process's peak resident memory plus the largest of its finished children's (an actor's own report: on a
    cluster the driver only joined, the actors are not its descendants and may live on other nodes)."""
    import resource

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return kib * 1024
