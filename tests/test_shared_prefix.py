"""The shared-prefix forward (a group's prompt through the model once) gives what the plain forward gives: the same
logprobs, entropies, hidden states and gradients, and the learner the same step; and the learner's attention
kernel choice computes the same numbers."""

import itertools

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlreason.batching import build_train_batch
from rlreason.recipe import load_config
from rlreason.learner.learner import Learner
from rlreason.learner.logprobs import policy_forward
from rlreason.learner.shared_prefix import Plan, prompt_lengths, shared_prefix_hidden, worth_it
from rlreason.tasks import get_task
from rlreason.types import Completion, ScoredGroup, VerifyResult


def _groups(tokenizer, n_groups: int = 4, size: int = 5) -> list[ScoredGroup]:
    """Groups of ``size`` completions of different lengths (one empty) per prompt; prompts of different lengths."""
    gen = torch.Generator().manual_seed(0)
    groups = []
    for problem, _ in itertools.islice(get_task("arithmetic").examples(seed=5), n_groups):
        prompt = tokenizer.encode(problem.prompt)
        comps, results = [], []
        for k in range(size):
            length = 0 if k == 0 else int(torch.randint(1, 20, (1,), generator=gen))
            ids = torch.randint(3, len(tokenizer), (length,), generator=gen).tolist()
            comps.append(Completion(problem.id, prompt, ids, [-1.0] * length, "stop", 0, ""))
            results.append(VerifyResult(float(k % 2)))
        groups.append(ScoredGroup(problem, comps, results))
    return groups


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path):
    return AutoTokenizer.from_pretrained(tiny_model_path)


def _shuffled_batch(tokenizer, algo):
    batch = build_train_batch(_groups(tokenizer), algo)
    order = torch.randperm(batch.size, generator=torch.Generator().manual_seed(1))
    return batch, order


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_shared_prefix_forward_equals_the_plain_forward(tiny_model_path, tokenizer, attention):
    cfg = load_config(None, [])
    batch, order = _shuffled_batch(tokenizer, cfg.algorithm)
    ids, attn, mask = batch.input_ids[order], batch.attention_mask[order], batch.loss_mask[order]
    plan = Plan(ids, attn, batch.group_ids[order], prompt_lengths(mask, attn))
    assert worth_it(plan) and plan.saved_share() > 0.3
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32, attn_implementation=attention)
    outs, grads = [], []
    for p in (None, plan):
        model.zero_grad()
        out = policy_forward(model, ids, attn, True, True, plan=p)
        (out.logprobs * mask).sum().backward()
        outs.append(out)
        grads.append([q.grad.clone() for q in model.parameters()])
    plain, shared = outs
    on = mask.bool()
    torch.testing.assert_close(shared.logprobs[on], plain.logprobs[on], rtol=0, atol=5e-5)
    torch.testing.assert_close(shared.entropy[on], plain.entropy[on], rtol=0, atol=5e-5)
    torch.testing.assert_close(shared.hidden[attn.bool()], plain.hidden[attn.bool()], rtol=0, atol=5e-5)
    assert (plain.logprobs[on] != 0).all()
    for a, b in zip(grads[0], grads[1]):  # (rotary cos/sin are float32 and their rounding depends on the shape)
        assert float((b - a).norm()) <= 1e-4 * float(a.norm())


def test_rows_whose_prompts_differ_take_the_plain_forward(tokenizer):
    cfg = load_config(None, [])
    batch = build_train_batch(_groups(tokenizer), cfg.algorithm)
    ids = batch.input_ids.clone()
    ids[1, 0] = (ids[1, 0] + 1) % len(tokenizer)  # row 1 (group 0) no longer begins with its group's prompt
    plan = Plan(ids, batch.attention_mask, batch.group_ids, prompt_lengths(batch.loss_mask, batch.attention_mask))
    assert not plan.prompts_agree() and not worth_it(plan)
    alone = torch.arange(batch.size)  # every row its own group: nothing to share
    plan = Plan(batch.input_ids, batch.attention_mask, alone, prompt_lengths(batch.loss_mask, batch.attention_mask))
    assert plan.saved_share() <= 0 and not worth_it(plan)


def test_a_sliding_window_model_falls_back_to_the_plain_forward(tokenizer):
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             sliding_window=4))
    cfg = load_config(None, [])
    batch = build_train_batch(_groups(tokenizer), cfg.algorithm)
    plan = Plan(batch.input_ids, batch.attention_mask, batch.group_ids,
                prompt_lengths(batch.loss_mask, batch.attention_mask))
    assert shared_prefix_hidden(model.base_model, model.config, batch.input_ids, batch.attention_mask, plan) is None
    plain = policy_forward(model, batch.input_ids, batch.attention_mask)
    shared = policy_forward(model, batch.input_ids, batch.attention_mask, plan=plan)
    torch.testing.assert_close(shared.logprobs, plain.logprobs)


@pytest.mark.parametrize("algorithm,extra", [("grpo", []), ("ppo", ["train.epochs=2"]),
                                             ("grpo", ["model.lora.rank=4"])])
def test_the_learner_takes_the_same_step_with_shared_prefixes(tokenizer, algorithm, extra):
    """Whole groups and groups split over micro-batches (3 rows each), frozen logprobs and a critic (PPO), LoRA."""
    results = {}
    for shared, micro in ((False, 64), (True, 64), (True, 3)):
        cfg = load_config(None, [f"algorithm.name={algorithm}", f"train.shared_prefix={str(shared).lower()}",
                                 f"train.micro_batch_size={micro}", *extra])
        learner = Learner(cfg)
        stats = learner.train_step(build_train_batch(_groups(tokenizer), cfg.algorithm))
        results[shared, micro] = (stats.metrics, [p.detach().clone() for p in learner.params])
    metrics, params = results[False, 64]
    for key in [(True, 64), (True, 3)]:
        for name in ("loss", "entropy", "logprob_mismatch"):
            assert results[key][0][name] == pytest.approx(metrics[name], rel=1e-4, abs=1e-6), name
        for a, b in zip(params, results[key][1]):  # AdamW's first step is ~lr * sign(grad): a gradient within
            off = ((b - a).abs() > 2e-5).float().mean()  # rounding of 0 may flip a few elements, a wrong one many
            assert off < 1e-3, float(off)


def test_attention_auto_is_eager_on_cpu_for_short_rows_and_both_kernels_agree(tiny_model_path, tokenizer):
    from rlreason.learner.attention import eager_fits, fit_attention, load_choice

    assert load_choice("auto", "cpu") == "eager" and load_choice("auto", "cuda") == "sdpa"
    assert load_choice("sdpa", "cpu") == "sdpa"
    cfg = load_config(None, [])
    learner = Learner(cfg)
    model = learner.model
    assert model.config._attn_implementation == "eager"
    assert eager_fits(model.config, 64, 256) and not eager_fits(model.config, 1, 768)  # long rows: flash wins
    assert not eager_fits(model.config, 64, 256, budget=2**20)  # attention matrices over the budget
    batch = build_train_batch(_groups(tokenizer), cfg.algorithm)
    on = batch.loss_mask.bool()
    with torch.no_grad():
        eager = policy_forward(model, batch.input_ids, batch.attention_mask).logprobs
        fit_attention(model, *batch.input_ids.shape, budget=2**10)
        assert model.config._attn_implementation == "sdpa"
        sdpa = policy_forward(model, batch.input_ids, batch.attention_mask).logprobs
        fit_attention(model, *batch.input_ids.shape)
        assert model.config._attn_implementation == "eager"
    torch.testing.assert_close(eager[on], sdpa[on], rtol=0, atol=2e-5)


def test_a_row_whose_loss_starts_later_shares_only_the_common_prompt(tiny_model_path, tokenizer):
    """Rows of one group with different prompt lengths (here: a row whose first completion tokens are not
    trained on): the group shares the shortest prompt, the rest of the longer row runs in its suffix."""
    cfg = load_config(None, [])
    batch = build_train_batch(_groups(tokenizer), cfg.algorithm)
    row = int(torch.nonzero(batch.loss_mask.sum(1) > 4)[0])
    first = int(torch.argmax(batch.loss_mask[row]))
    batch.loss_mask[row, first:first + 3] = 0
    lens = prompt_lengths(batch.loss_mask, batch.attention_mask)
    plan = Plan(batch.input_ids, batch.attention_mask, batch.group_ids, lens)
    group = batch.group_ids == batch.group_ids[row]
    assert int(lens[row]) == first + 3 and int(plan.row_prefix[row]) == int(lens[group].min()) == first
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    with torch.no_grad():
        plain = policy_forward(model, batch.input_ids, batch.attention_mask)
        shared = policy_forward(model, batch.input_ids, batch.attention_mask, plan=plan)
    real = batch.attention_mask.bool()
    torch.testing.assert_close(shared.logprobs[real], plain.logprobs[real], rtol=0, atol=5e-5)
