"""How new weights reach the engines (``rollout.push``).

``object_store`` (the CPU default): learner rank 0 exports the weights (or the adapter) once into Ray's object
store and every engine loads them from there. ``collective`` (the GPU default): learner rank 0 and every engine form
one process group of their own (NCCL when both sides hold GPUs, else gloo) and the weights go out as one broadcast
per dtype of a flat buffer, GPU to GPU without the object store. The engines learn the tensors' names, shapes and
dtypes once, when the group forms (``WeightSpec``); each push then sends the version and the values only.

Each push starts with a header (version, and whether the weights still have the shapes the group formed with); when
they do not, nothing more is sent and the driver pushes through the object store from then on. A rollout worker
that Ray restarts is a new process outside the group: the object store from then on too (a group cannot take a
member back). Synchronous rollouts only: an engine still generating would hold the learner in the broadcast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

import torch

from rlreason.types import WeightUpdate

TIMEOUT_S = 120.0  # a push of a 1B model over gloo takes seconds; formation follows the actors' start


@dataclass(frozen=True)
class WeightSpec:
    """What a receiver needs to rebuild a ``WeightUpdate`` from flat buffers."""

    kind: str  # "full" | "lora"
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    config: dict | None = None  # the adapter's config (LoRA)

    @classmethod
    def of(cls, update: WeightUpdate) -> "WeightSpec":
        pairs = _pairs(update)
        return cls(update.kind, tuple(n for n, _ in pairs), tuple(tuple(t.shape) for _, t in pairs),
                   tuple(str(t.dtype).removeprefix("torch.") for _, t in pairs),
                   update.payload["config"] if update.kind == "lora" else None)

    def by_dtype(self) -> dict[str, list[int]]:
        """Tensor indices per dtype, in order: each dtype travels as one flat buffer."""
        out: dict[str, list[int]] = {}
        for i, d in enumerate(self.dtypes):
            out.setdefault(d, []).append(i)
        return out


def _pairs(update: WeightUpdate) -> list[tuple[str, torch.Tensor]]:
    return list(update.payload) if update.kind == "full" else list(update.payload["tensors"].items())


class Channel:
    """One member of the push group: rank 0 sends (learner rank 0), ranks 1.. receive (the engines)."""

    def __init__(self, address: str, port: int, rank: int, world: int, backend: str) -> None:
        import torch.distributed as dist

        timeout = timedelta(seconds=TIMEOUT_S)
        self.store = dist.TCPStore(address, port, world, rank == 0, timeout=timeout)
        store = dist.PrefixStore("rlreason-weights", self.store)
        if backend == "nccl":
            self.group, self.device = dist.ProcessGroupNCCL(store, rank, world), torch.device("cuda")
        else:
            self.group, self.device = dist.ProcessGroupGloo(store, rank, world, timeout), torch.device("cpu")
        self.rank = rank

    def _broadcast(self, tensor: torch.Tensor) -> None:
        self.group.broadcast(tensor, 0).wait()

    def send(self, update: WeightUpdate, spec: WeightSpec) -> bool:
        """Broadcast ``update``, laid out as ``spec`` (the group's); False, and nothing sent after the header, when
        the update no longer has that layout."""
        fits = WeightSpec.of(update) == spec
        self._broadcast(torch.tensor([update.version, int(fits)], dtype=torch.int64, device=self.device))
        if not fits:
            return False
        tensors = [t for _, t in _pairs(update)]
        for indices in spec.by_dtype().values():
            flat = torch.cat([tensors[i].reshape(-1) for i in indices]).to(self.device)
            self._broadcast(flat)
        return True

    def receive(self, spec: WeightSpec) -> WeightUpdate | None:
        """The broadcast update; None when the sender's no longer fits ``spec`` (nothing followed the header)."""
        header = torch.zeros(2, dtype=torch.int64, device=self.device)
        self._broadcast(header)
        if not header[1]:
            return None
        version = header[0]
        tensors: list[torch.Tensor | None] = [None] * len(spec.names)
        for dtype, indices in spec.by_dtype().items():
            sizes = [math.prod(spec.shapes[i]) for i in indices]
            flat = torch.empty(sum(sizes), dtype=getattr(torch, dtype), device=self.device)
            self._broadcast(flat)
            for i, part in zip(indices, flat.split(sizes)):
                tensors[i] = part.view(spec.shapes[i])
        pairs = list(zip(spec.names, tensors))
        payload = pairs if spec.kind == "full" else {"config": spec.config, "tensors": dict(pairs)}
        nbytes = sum(t.numel() * t.element_size() for _, t in pairs)
        return WeightUpdate(version=int(version.item()), kind=spec.kind, payload=payload, nbytes=nbytes)


# -- the driver's side ----------------------------------------------------------------------------------------
class ObjectStorePush:
    """Export once into the object store; every engine loads from it."""

    collective = False

    def start(self, ctx):
        update = ctx.learner.export_weights.remote()
        return {i: (lambda w: w.load_weights.remote(update)) for i in range(len(ctx.workers))}, None


class CollectivePush:
    """Learner rank 0 broadcasts; every engine receives and loads. ``start`` returns the engines' calls and the
    learner's (all must run at once)."""

    collective = True

    def start(self, ctx):
        sent = ctx.learner.broadcast_weights.remote()
        return {i: (lambda w: w.receive_weights.remote()) for i in range(len(ctx.workers))}, sent


def push_backend(cfg) -> str | None:
    """The collective's backend for ``rollout.push`` (None: the object store). NCCL between GPUs of their own
    (colocated, learner 0 and engine 0 share one: NCCL refuses that); auto: collective only then, in sync mode."""
    nccl = cfg.rollout.gpus_per_worker > 0 and cfg.train.gpus_per_learner > 0 and cfg.ray.layout == "split"
    push = cfg.rollout.push
    if push == "auto":
        push = "collective" if nccl and cfg.rollout.mode == "sync" else "object_store"
    if push == "object_store":
        return None
    return "nccl" if nccl else "gloo"


def open_pusher(cfg, cluster):
    """Form the push group when the recipe asks for a collective (every member at once); the driver's pusher."""
    import ray

    backend = push_backend(cfg)
    if backend is None or cluster.learner is None:
        return ObjectStorePush()
    learner, workers = cluster.learner, cluster.workers
    spec = ray.get(learner.weight_spec.remote())
    address, port = ray.get(learner.rendezvous.remote())
    world = 1 + len(workers)
    ray.get([learner.open_weight_channel.remote(address, port, world, backend, spec)]
            + [w.open_weight_channel.remote(address, port, 1 + i, world, backend, spec)
               for i, w in enumerate(workers)])
    return CollectivePush()


# -- the actors' side (mixed into Learner and RolloutEngine) ------------------------------------------------
class WeightSender:
    """Learner rank 0's end of the push group. Needs ``export_weights``."""

    _channel: Channel | None = None
    _sent_spec: WeightSpec | None = None

    def weight_spec(self) -> WeightSpec:
        return WeightSpec.of(self.export_weights())

    def open_weight_channel(self, address: str, port: int, world: int, backend: str, spec: WeightSpec) -> None:
        self._channel, self._sent_spec = Channel(address, port, 0, world, backend), spec

    def broadcast_weights(self) -> int:
        """Send the current weights to every engine of the group; the bytes sent, or -1 when they no longer have
        the group's layout (the driver then pushes through the object store)."""
        update = self.export_weights()
        return update.nbytes if self._channel.send(update, self._sent_spec) else -1


class WeightReceiver:
    """An engine's end of the push group. Needs ``load_weights``."""

    _channel: Channel | None = None
    _spec: WeightSpec | None = None

    def open_weight_channel(self, address: str, port: int, rank: int, world: int, backend: str,
                            spec: WeightSpec) -> None:
        self._channel, self._spec = Channel(address, port, rank, world, backend), spec

    def receive_weights(self) -> float:
        """Receive learner rank 0's broadcast and serve it; seconds spent (receiving and loading)."""
        import time

        if self._channel is None:
            raise RuntimeError("this engine is not in the weight push group (restarted since it formed?)")
        start = time.perf_counter()
        update = self._channel.receive(self._spec)
        if update is None:
            return -1.0
        self.load_weights(update)
        return time.perf_counter() - start
