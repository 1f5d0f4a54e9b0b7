"""rlreason: post-train language models to reason with reinforcement learning.

Kept light on purpose: importing the package imports neither torch, ray nor vllm. The heavy pieces live in
submodules (``rlreason.learner``, ``rlreason.rollout``) that the controller imports when a run starts.
"""

__version__ = "0.1.0"
