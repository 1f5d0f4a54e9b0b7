"""rlreason: post-train language models to reason with reinforcement learning.

Kept light on purpose: importing the package imports neither torch, ray nor vllm. The heavy pieces live in
submodules (``rlreason.learner``, ``rlreason.rollout``) that the controller imports when a run starts.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``rlreason.connect`` and the primitive API's records, imported on first use (PEP 562): the package's one
    reference to a layer above it (``rlreason.api``), so ``import rlreason`` stays light."""
    if name in ("connect", "Datum", "Sample", "Result", "APIError"):
        import importlib

        return getattr(importlib.import_module("rlreason.api"), name)
    raise AttributeError(f"module 'rlreason' has no attribute {name!r}")
