"""New policy weights for the engines (``WeightUpdate``), and how they travel through Ray's object store: each
tensor's bytes as a NumPy buffer, which Ray writes out of band (one copy into shared memory) and an engine reads in
place (no copy). Pickled as torch tensors
(each storage pickled into bytes, copied, unpickled), a 405 MiB push of the 107M model spent 0.3-3.7 s between the
learner's export and the engine's load on this machine; see benchmarks/race."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class WeightUpdate:
    """New policy weights for the rollout engines. ``payload``: for ``full`` a list of (HF parameter name, tensor);
    for ``lora`` ``{"config": PEFT adapter config (JSON data), "tensors": {PEFT name: tensor}}``."""

    version: int
    kind: Literal["full", "lora"]
    payload: Any
    nbytes: int = 0  # bytes of tensor data carried

    def __reduce__(self):
        """Pickled (by Ray, into its object store) as one flat buffer per dtype: ``pack`` below."""
        return pack(self)


def _pairs(kind: str, payload) -> list:
    return list(payload) if kind == "full" else list(payload["tensors"].items())


def pack(update) -> tuple:
    """(unpack, args) for ``WeightUpdate.__reduce__``: every tensor's bytes as a NumPy view (no copy here; Ray
    copies each once into its object store)."""
    import torch

    layout, arrays = [], []
    for name, tensor in _pairs(update.kind, update.payload):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        layout.append((name, str(flat.dtype).removeprefix("torch."), tuple(tensor.shape)))
        arrays.append(flat.view(torch.uint8).numpy())
    config = update.payload["config"] if update.kind == "lora" else None
    return unpack, (update.version, update.kind, config, layout, arrays, update.nbytes)


def unpack(version: int, kind: str, config, layout: list, arrays: list, nbytes: int):
    """The ``WeightUpdate`` again, its tensors views of the arrays (read-only when Ray maps them from shared
    memory: engines copy them into their own parameters)."""
    import torch

    with warnings.catch_warnings():  # "non-writable NumPy array": nothing writes into them
        warnings.simplefilter("ignore", UserWarning)
        pairs = [(name, torch.from_numpy(array).view(getattr(torch, dtype)).view(shape))
                 for (name, dtype, shape), array in zip(layout, arrays)]
    payload = pairs if kind == "full" else {"config": config, "tensors": dict(pairs)}
    return WeightUpdate(version=version, kind=kind, payload=payload, nbytes=nbytes)
