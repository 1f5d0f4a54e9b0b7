"""Rollout: vLLM engines that sample groups of completions and take new weights in place."""
