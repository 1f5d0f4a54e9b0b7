"""An algorithm from the user's own module, named in the recipe, trains without touching the loop."""

import pytest
from batches import good_and_bad_groups

from rlreason.batching import build_train_batch
from rlreason.recipe import RecipeError, load_config
from rlreason.learner.learner import Learner


def test_plugin_algorithm_by_module_reference_trains_a_step(tiny_model_path):
    from transformers import AutoTokenizer

    cfg = load_config(None, ["algorithm.name=plugins.custom_algorithm:SPEC", "train.lr=1e-5"])
    assert type(cfg.algorithm).__name__ == "VanillaPGConfig"
    learner = Learner(cfg)
    batch = build_train_batch(good_and_bad_groups(AutoTokenizer.from_pretrained(tiny_model_path)), cfg.algorithm)
    before = learner.batch_loss(batch)
    stats = learner.train_step(batch)
    assert stats.version == 1 and stats.metrics["grad_norm"] > 0
    assert learner.batch_loss(batch) < before


def test_unknown_plugin_module_is_a_recipe_error():
    with pytest.raises(RecipeError, match="algorithm.name: cannot import algorithm module 'no_such_mod'"):
        load_config(None, ["algorithm.name=no_such_mod:SPEC"])


def test_algorithm_from_a_temporary_module_trains_a_step(tmp_path, monkeypatch, tiny_model_path):
    from transformers import AutoTokenizer

    (tmp_path / "my_tmp_algo.py").write_text(
        "from rlreason.algorithms import AlgorithmConfig, AlgorithmSpec, register_algorithm\n"
        "class SignConfig(AlgorithmConfig):\n"
        "    name: str = 'sign_pg'\n"
        "def advantage(inputs, cfg):\n"
        "    return (inputs.rewards - 0.5).sign()[:, None] * inputs.loss_mask\n"
        "def loss(inputs, cfg):\n"
        "    return -(inputs.advantages * inputs.logprobs * inputs.loss_mask).sum() / inputs.num_tokens, {'x': 1.0}\n"
        "SPEC = register_algorithm(AlgorithmSpec('sign_pg', 'sign(r - 0.5)', '-', SignConfig, advantage, loss))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = load_config(None, ["algorithm.name=my_tmp_algo:SPEC", "train.lr=1e-5"])
    learner = Learner(cfg)
    batch = build_train_batch(good_and_bad_groups(AutoTokenizer.from_pretrained(tiny_model_path)), cfg.algorithm)
    before = learner.batch_loss(batch)
    stats = learner.train_step(batch)
    assert stats.metrics["x"] == 1.0 and learner.batch_loss(batch) < before
