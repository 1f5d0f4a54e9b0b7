"""The driver's handle on the learners: ``train.learners`` Learner actors that train as one.

``LearnerGroup`` answers the calls the driver makes of a learner (``group.train_step.remote(batch)``), so the stages
do not know how many learners there are. Calls that change the learners' state or take part in their collectives
(``ALL_RANKS``) go to every rank with the same arguments, put once in the object store; the result is rank 0's,
once every rank has finished (an error on any rank surfaces). Everything else (exporting weights, saving, logprobs
for checks) is rank 0's alone: after every step all ranks hold the same weights.
"""

from __future__ import annotations

import socket

ALL_RANKS = frozenset({"train_step", "load_checkpoint", "set_anchor", "new_phase", "batch_loss"})


def _first(*results):
    return results[0]


_remote_first = None


def _gather_first():
    """A zero-CPU Ray task returning rank 0's result once every rank's is there (built once per process)."""
    global _remote_first
    if _remote_first is None:
        import ray

        _remote_first = ray.remote(num_cpus=0)(_first)
    return _remote_first


class _Call:
    def __init__(self, group: "LearnerGroup", name: str) -> None:
        self.group, self.name = group, name

    def remote(self, *args, **kwargs):
        import ray

        actors = self.group.actors
        if len(actors) == 1 or self.name not in ALL_RANKS:
            return getattr(actors[0], self.name).remote(*args, **kwargs)
        args = [a if isinstance(a, ray.ObjectRef) else ray.put(a) for a in args]
        kwargs = {k: v if isinstance(v, ray.ObjectRef) else ray.put(v) for k, v in kwargs.items()}
        refs = [getattr(a, self.name).remote(*args, **kwargs) for a in actors]
        return _gather_first().remote(*refs)


class LearnerGroup:
    def __init__(self, actors: list) -> None:
        if not actors:
            raise ValueError("a learner group needs at least one learner")
        self.actors = list(actors)

    def __getattr__(self, name: str) -> _Call:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Call(self, name)

    def __len__(self) -> int:
        return len(self.actors)

    def owns(self, actor_id: str | None) -> bool:
        """Whether ``actor_id`` (hex, as Ray's errors carry it) is one of the learners."""
        return actor_id is not None and any(a._actor_id.hex() == actor_id for a in self.actors)

    def connect(self) -> None:
        """Form the group's process group (rank 0's node hosts the rendezvous) and start every rank from rank 0's
        weights. Nothing to do for one learner."""
        import ray

        if len(self.actors) == 1:
            return
        address, port = ray.get(self.actors[0].rendezvous.remote())
        ray.get([a.join.remote(address, port) for a in self.actors])


def free_port() -> int:
    """A TCP port free on this node now (for the group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]
