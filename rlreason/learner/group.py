"""The driver's handle on the learners: ``train.learners`` Learner actors that train as one.

``LearnerGroup`` answers the calls the driver makes of a learner (``group.train_step.remote(batch)``), so the stages
do not know how many learners there are. Calls that change the learners' state or take part in their collectives
(``ALL_RANKS``) go to every rank with the same arguments, put once in the object store; the driver gets rank 0's
result (the ranks finish together: each call ends in a collective). The other ranks' results are checked at the
next call, so an error that only they raised surfaces then. (A zero-CPU task that waited for every rank before
returning rank 0's result cost ~0.5 s a step.) Everything else (exporting weights, saving, logprobs for checks) is
rank 0's alone: after every step all ranks hold the same weights.
"""

from __future__ import annotations

import socket

ALL_RANKS = frozenset({"train_step", "load_checkpoint", "set_anchor", "new_phase", "batch_loss", "es_step",
                       "forward_backward", "optim_step", "advance_version",
                       "forget_optimizer"})  # (the primitive API's too)


class _Call:
    def __init__(self, group: "LearnerGroup", name: str) -> None:
        self.group, self.name = group, name

    def remote(self, *args, **kwargs):
        import ray

        actors = self.group.actors
        if len(actors) == 1 or self.name not in ALL_RANKS:
            return getattr(actors[0], self.name).remote(*args, **kwargs)
        self.group.check_others()
        args = [a if isinstance(a, ray.ObjectRef) else ray.put(a) for a in args]
        kwargs = {k: v if isinstance(v, ray.ObjectRef) else ray.put(v) for k, v in kwargs.items()}
        refs = [getattr(a, self.name).remote(*args, **kwargs) for a in actors]
        self.group.others.extend(refs[1:])
        self.group.watch(refs, self.name)
        return refs[0]


class LearnerGroup:
    def __init__(self, actors: list) -> None:
        if not actors:
            raise ValueError("a learner group needs at least one learner")
        self.actors = list(actors)
        self.others: list = []  # results of ranks 1.. not yet checked
        self.failure: str | None = None  # which rank failed, and how (the run's one line)

    def watch(self, refs: list, name: str) -> None:
        """In the background: when one rank's call fails, the others may be waiting for it in a collective (for
        gloo's whole timeout): stop every rank at once, so the driver's wait ends in seconds with ``failure``."""
        import threading

        threading.Thread(target=self._watch, args=(list(refs), name), daemon=True).start()

    def _watch(self, refs: list, name: str) -> None:
        import ray

        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(done[0])
            except Exception as e:  # noqa: BLE001 - any failure of one rank ends the group's call
                cause = (str(getattr(e, "cause", None) or e).strip().splitlines() or [type(e).__name__])[-1][:200]
                self.failure = self.failure or (f"learner rank {refs.index(done[0])} failed in {name} ({cause}); "
                                                "the other ranks were stopped rather than left waiting for it")
                for actor in self.actors:
                    ray.kill(actor, no_restart=True)
                return

    def check_others(self) -> None:
        """Raise the error of any finished call of ranks 1.. (their results are rank 0's)."""
        import ray

        done, self.others = ray.wait(self.others, num_returns=len(self.others), timeout=0) if self.others \
            else ([], [])
        ray.get(done)

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
