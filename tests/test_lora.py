"""LoRA end to end with real PEFT and a real vLLM engine: the learner trains only the adapter, only the adapter
travels, vLLM serves each version under a new id with logprobs equal to the learner's, the saved adapter and the
merged model give the same logprobs, and engine memory stays flat over hundreds of pushes."""

import os

import psutil
import pytest
import torch

from rlreason.batching import build_train_batch
from rlreason.recipe import RecipeError, load_config
from rlreason.learner.learner import Learner
from rlreason.rollout.engine import RolloutEngine, SamplingSpec
from rlreason.scoring import Scorer
from rlreason.tasks import get_task
from rlreason.types import ScoredGroup

LORA = ["model.lora.rank=8", "train.lr=0.003", "train.kl_to_ref_every=1"]


@pytest.fixture(scope="module")
def lora_engine(tiny_model_path):
    return RolloutEngine(tiny_model_path, seed=0, lora_rank=16)  # rank-8 adapters, and two of them stacked


@pytest.fixture(scope="module")
def problems():
    return [p for p, _ in zip(get_task("arithmetic").train_problems(seed=5), range(12))]


def _train_once(engine, learner, problems, scorer):
    groups = engine.generate(problems, SamplingSpec(n=4, max_tokens=48))
    it = iter(scorer.score([(c.text, p) for p, g in zip(problems, groups) for c in g]))
    scored = [ScoredGroup(p, g, [next(it) for _ in g]) for p, g in zip(problems, groups)]
    return groups, learner.train_step(build_train_batch(scored, learner.algo))


def _gap(a_fn, b_fn, groups) -> float:
    gaps = []
    for group in groups[:4]:
        for c in group[:2]:
            a, b = a_fn(c.prompt_ids, c.completion_ids), b_fn(c.prompt_ids, c.completion_ids)
            gaps += [abs(x - y) for x, y in zip(a, b)]
    return max(gaps)


@pytest.mark.parametrize("override,message", [
    ("model.lora.rank=0", "model.lora.rank: Input should be greater than or equal to 1"),
    ("model.lora.rank=600", "model.lora.rank: vLLM serves LoRA ranks up to 512, not 600"),
    ("model.lora.target_modules=[q_proj,qkv]", "model.lora.target_modules: the model has no LoRA-servable layer "
                                              "'qkv' (allowed: all, q_proj, k_proj, v_proj, o_proj, gate_proj"),
    ("model.lora.rnak=8", "model.lora.rnak: unknown field; did you mean 'rank'?"),
])
def test_bad_lora_settings_name_the_field(override, message):
    with pytest.raises(RecipeError) as err:
        load_config(None, [override])
    assert str(err.value).startswith(message), str(err.value)


def test_the_learner_trains_only_the_adapter_and_its_reference_is_the_base_model():
    learner = Learner(load_config(None, [*LORA, "algorithm.kl_coef=0.05"]))
    total = sum(p.numel() for p in learner.model.parameters())
    trained = sum(p.numel() for p in learner.params)
    assert 0 < trained < total / 5
    assert not hasattr(learner.policy, "_reference")  # no second copy of the weights for the KL term
    full = Learner(load_config(None, ["algorithm.kl_coef=0.05"]))
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad(), learner.policy.reference() as base:
        with_adapter_off = learner._forward(ids, torch.ones_like(ids), False, base)[0].logprobs
    expected = full._forward(ids, torch.ones_like(ids), False)[0].logprobs
    assert torch.allclose(with_adapter_off, expected, atol=1e-6)


def test_vllm_serves_each_pushed_adapter_with_the_learners_logprobs(lora_engine, problems, tmp_path):
    learner = Learner(load_config(None, LORA))
    full_bytes = sum(t.numel() * t.element_size() for t in learner.model.state_dict().values())
    with Scorer(workers=1) as scorer:
        for push in range(1, 4):
            groups, stats = _train_once(lora_engine, learner, problems, scorer)
            assert stats.metrics["lora/component_grad_norm_mean"] > 0 and "kl_to_ref" in stats.metrics
            update = learner.export_weights()
            assert update.kind == "lora" and 0 < update.nbytes < full_bytes / 5
            assert lora_engine.load_weights(update) < 5 and lora_engine.version == push
            assert len(lora_engine.adapters.loaded()) == 1
            assert _gap(lora_engine.sequence_logprobs, learner.sequence_logprobs, groups) < 1e-3
    assert stats.metrics["kl_to_ref"] > 0 and stats.metrics["lora/effective_rank"] > 1

    # the saved adapter is a normal PEFT directory: PEFT loads it with the same logprobs, and so does a run
    # that starts from it (model.adapter)
    learner.save(str(tmp_path / "adapter"))
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    resumed = Learner(load_config(None, [f"model.adapter={tmp_path / 'adapter'}"]))
    assert _gap(resumed.sequence_logprobs, learner.sequence_logprobs, groups) < 1e-5
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(learner.policy.path, dtype=torch.float32)
    peft = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    c = groups[0][0]
    ids = torch.tensor([c.prompt_ids + c.completion_ids])
    with torch.no_grad():
        logp = torch.log_softmax(peft(input_ids=ids).logits[0, :-1], -1).gather(-1, ids[0, 1:, None])[:, 0]
    ours = learner.sequence_logprobs(c.prompt_ids, c.completion_ids)
    assert max(abs(a - b) for a, b in zip(logp[len(c.prompt_ids) - 1:].tolist(), ours)) < 1e-5

    # merged into the base: a plain model directory that vLLM serves with the same logprobs
    from rlreason.models.merge import merge_adapter

    merged = merge_adapter(tmp_path / "adapter", tmp_path / "merged")
    merged_engine = RolloutEngine(str(merged), seed=0)
    assert _gap(merged_engine.sequence_logprobs, learner.sequence_logprobs, groups) < 1e-3
    del merged_engine


def test_vllm_serves_one_adapter_per_phase_stacked_with_the_learners_logprobs(lora_engine, problems):
    cfg = load_config(None, [*LORA, "continual.adapters=per_phase",
                             "continual.phases=[{task: addition, steps: 1}, {task: subtraction, steps: 1}]"])
    learner = Learner(cfg)
    with Scorer(workers=1) as scorer:
        _train_once(lora_engine, learner, problems, scorer)
        learner.new_phase()
        groups, _ = _train_once(lora_engine, learner, problems, scorer)
    update = learner.export_weights()
    assert update.payload["config"]["r"] == 16
    lora_engine.load_weights(type(update)(lora_engine.version + 1, "lora", update.payload))
    assert _gap(lora_engine.sequence_logprobs, learner.sequence_logprobs, groups) < 1e-3


def test_engine_memory_stays_flat_over_200_adapter_pushes(lora_engine, problems):
    learner = Learner(load_config(None, LORA))
    update = learner.export_weights()
    process = psutil.Process(os.getpid())
    start_version = lora_engine.version
    rss = []
    for i in range(1, 201):
        tensors = {k: v + 1e-4 * i for k, v in update.payload["tensors"].items()}  # a new version each time
        lora_engine.load_weights(type(update)(start_version + i, "lora", {**update.payload, "tensors": tensors}))
        if i % 20 == 0:
            lora_engine.generate(problems[:2], SamplingSpec(n=2, max_tokens=8))
            rss.append(process.memory_info().rss)
            assert len(lora_engine.adapters.loaded()) == 1
            assert len(list(lora_engine.adapters.root.iterdir())) == 1  # old versions' files are gone
    growth_mib = (rss[-1] - rss[1]) / 2**20
    assert growth_mib < 64, f"engine memory grew {growth_mib:.0f} MiB over 180 pushes"


def test_one_adapter_version_pushed_twice_is_served_again(lora_engine, problems):
    """The primitive API may push a version twice (a sync at version 0, before any step): each push is new to
    vLLM (its own id and directory), never a clash with the files of the push before."""
    update = Learner(load_config(None, LORA)).export_weights()
    adapters = lora_engine.adapters
    for _ in range(2):
        adapters.push(lora_engine.version, update.payload["config"], update.payload["tensors"])
        assert len(adapters.loaded()) == 1 and len(list(adapters.root.iterdir())) == 1
    assert len(lora_engine.generate(problems[:1], SamplingSpec(n=1, max_tokens=4))[0]) == 1


def test_an_engine_starts_serving_a_saved_adapter(tiny_model_path, lora_engine, problems, tmp_path):
    learner = Learner(load_config(None, LORA))
    with Scorer(workers=1) as scorer:
        groups, _ = _train_once(lora_engine, learner, problems, scorer)
    learner.save(str(tmp_path / "adapter"))
    cfg = load_config(None, [f"model.adapter={tmp_path / 'adapter'}"])
    assert cfg.model.lora_rank == 8 and cfg.model.uses_lora
    fresh = RolloutEngine(tiny_model_path, seed=0, lora_rank=cfg.model.lora_rank, adapter=cfg.model.adapter)
    assert _gap(fresh.sequence_logprobs, learner.sequence_logprobs, groups) < 1e-3
    del fresh
