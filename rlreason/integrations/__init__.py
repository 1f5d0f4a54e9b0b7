"""Bridges to other tools: ``trl`` (our verifiers as TRL reward functions, TRL reward functions as verifiers)."""
