"""Evaluation: pass@k, maj@k and friends over sampled completions (``metrics``), and ``rlreason eval``
(``command``), which generates through the same vLLM rollout workers and scores through the same verifiers as
training."""
