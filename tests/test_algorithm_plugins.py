"""An algorithm from the user's own module, named in the recipe, trains without touching the loop."""

import pytest
from batches import good_and_bad_groups

from rlreason.batching import build_train_batch
from rlreason.config import RecipeError, load_config
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
