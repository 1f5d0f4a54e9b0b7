"""Algorithms as registered pure torch functions. Importing this package registers the built-ins."""

from rlreason.algorithms.base import (ALGORITHMS, AdvantageInputs, AlgorithmConfig, AlgorithmSpec,  # noqa: F401
                                      LossInputs, get_algorithm, register_algorithm)
from rlreason.algorithms import grpo  # noqa: F401,E402
from rlreason.algorithms import group_baselines, sequence_ratios, token_level  # noqa: F401,E402
from rlreason.algorithms import es  # noqa: F401,E402
