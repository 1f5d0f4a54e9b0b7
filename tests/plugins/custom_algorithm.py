"""A user's own algorithm in their own module: plain REINFORCE with a group-mean baseline."""


from rlreason.algorithms import AlgorithmConfig, AlgorithmSpec, register_algorithm
from rlreason.algorithms.common import group_normalized_advantage


class VanillaPGConfig(AlgorithmConfig):
    name: str = "vanilla_pg"


def advantage(inputs, cfg):
    return group_normalized_advantage(inputs.rewards, inputs.group_ids, scale=False)[:, None] * inputs.loss_mask


def loss(inputs, cfg):
    per_token = -(inputs.advantages * inputs.logprobs) * inputs.loss_mask
    return per_token.sum() / max(inputs.num_tokens, 1.0), {}


SPEC = register_algorithm(AlgorithmSpec("vanilla_pg", "REINFORCE, group-mean baseline", "-", VanillaPGConfig,
                                        advantage, loss))
