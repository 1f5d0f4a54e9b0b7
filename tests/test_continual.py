"""Continual learning pieces: the accuracy-matrix metrics, replay's mix, the KL anchor, continual backprop's
reset, one adapter per phase, and the recipe rules that tie them to LoRA."""

import itertools
import random

import pytest
import torch

from rlreason.recipe import RecipeError, load_config
from rlreason.drivers.continual import TaskStream, phase_batch
from rlreason.report.continual_metrics import heatmap, summarize
from rlreason.learner.learner import Learner

LORA = ["model.lora.rank=8", "train.lr=0.003"]


def test_summary_metrics_by_hand(tmp_path):
    tasks, phases = ["a", "b", "c"], ["a", "b", "c"]
    base = [0.2, 0.1, 0.1]
    matrix = [[0.6, 0.2, 0.1],   # after a: b gained 0.1 before being trained (forward transfer)
              [0.4, 0.7, 0.1],   # after b: a lost 0.2
              [0.3, 0.6, 0.5]]   # after c: a lost 0.1 more, b lost 0.1
    r = summarize(tasks, phases, base, matrix)
    assert r["average_accuracy"] == pytest.approx((0.3 + 0.6 + 0.5) / 3)
    assert r["backward_transfer"] == pytest.approx(((0.3 - 0.6) + (0.6 - 0.7)) / 2)
    assert r["forgetting"] == pytest.approx(((0.6 - 0.3) + (0.7 - 0.6)) / 2)
    assert r["forward_transfer"] == pytest.approx(((0.2 - 0.1) + (0.1 - 0.1)) / 2)
    # a task that comes back: its backward transfer counts from its last phase
    again = summarize(["a", "b"], ["a", "b", "a"], [0.1, 0.1], [[0.5, 0.1], [0.3, 0.6], [0.7, 0.4]])
    assert again["backward_transfer"] == pytest.approx(0.4 - 0.6) and again["forgetting"] == pytest.approx(0.2)
    png = heatmap(r, tmp_path / "m.png")
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


def test_replay_mixes_the_stated_fraction_from_earlier_tasks_only():
    cfg = load_config(None)
    streams = {t: TaskStream(cfg, t) for t in ("addition", "subtraction", "programs")}
    rng = random.Random(0)
    for frac, expected in ((0.0, 0), (0.25, 8), (0.5, 16)):
        batch = phase_batch(streams, "programs", ["addition", "subtraction"], frac, rng, 32)
        assert len(batch) == 32 and sum(p.task != "programs" for p in batch) == expected
        assert {p.task for p in batch if p.task != "programs"} <= {"addition", "subtraction"}
    first = phase_batch(streams, "addition", [], 0.5, rng, 4)  # nothing earlier: all current, no replay
    assert [p.task for p in first] == ["addition"] * 4
    fresh = TaskStream(cfg, "addition")  # a stream continues where it stopped, across phases
    skipped = list(itertools.islice(fresh, 4 + 16 + 8 + 16 + 4))
    assert first[0].id in {p.id for p in skipped}
    again = TaskStream(cfg, "addition")  # a resumed run skips what was drawn: it is where the first one is
    again.skip(streams["addition"].drawn)
    assert next(again).id == next(streams["addition"]).id


def test_held_out_prompts_of_every_family_stay_out_of_training():
    from rlreason.tasks import get_task

    for name in ("addition", "subtraction"):
        held = get_task(name).held_out_prompts() | get_task("arithmetic").held_out_prompts()
        trained = {p.prompt for p in itertools.islice(get_task(name).train_problems(seed=0), 3000)}
        assert not trained & held, name


@pytest.mark.parametrize("overrides,message", [
    (["continual.anchor=true", "algorithm.kl_coef=0.05"], "continual.anchor: works on a LoRA adapter"),
    ([*LORA, "continual.anchor=true"], "continual.anchor: its weight is algorithm.kl_coef, which is 0"),
    (["continual.cbp_every=5"], "continual.cbp_every: works on a LoRA adapter"),
    (["continual.phases=[{task: additon, steps: 3}]"], "continual.phases.0.task: unknown task 'additon'"),
    (["continual.adapters=per_phase"], "continual.adapters: works on LoRA adapters; set model.lora"),
    (["continual.merge=true"], "continual.merge: works on LoRA adapters; set model.lora"),
    (["model.lora.rank=256", "continual.adapters=per_phase", "continual.phases=[{task: addition, steps: 1}, "
      "{task: subtraction, steps: 1}, {task: programs, steps: 1}]"],
     "continual.adapters: the phases' adapters are served as one; vLLM serves LoRA ranks up to 512, not 768"),
])
def test_continual_switches_are_checked_before_anything_starts(overrides, message):
    with pytest.raises(RecipeError) as err:
        load_config(None, overrides)
    assert str(err.value).startswith(message), str(err.value)


def _logprobs(learner, model=None):
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12]])
    with torch.no_grad():
        return learner._forward(ids, torch.ones_like(ids), False, model)[0].logprobs


def _nudge_adapter(learner, scale=0.05):
    with torch.no_grad():
        for p in learner.params:
            p.add_(scale * torch.randn_like(p))


def test_anchor_kl_is_zero_against_itself_and_grows_as_the_adapter_moves():
    from rlreason.algorithms.common import kl_penalty

    learner = Learner(load_config(None, [*LORA, "algorithm.kl_coef=0.05", "continual.anchor=true"]))
    _nudge_adapter(learner)
    learner.set_anchor()
    with learner.policy.reference() as anchor:
        at_anchor = _logprobs(learner, anchor)
    current = _logprobs(learner)
    assert torch.equal(at_anchor, current)
    assert float(kl_penalty(current, at_anchor, "k3").abs().max()) == 0.0
    _nudge_adapter(learner)
    moved = _logprobs(learner)
    with learner.policy.reference() as anchor:
        still = _logprobs(learner, anchor)
    assert torch.equal(still, at_anchor) and not torch.allclose(moved, at_anchor)  # the snapshot, not the base
    assert torch.equal(_logprobs(learner), moved)  # and the live adapter is back after the reference forward


PER_PHASE = [*LORA, "continual.adapters=per_phase", "continual.phases=[{task: addition, steps: 1}, "
             "{task: subtraction, steps: 1}, {task: programs, steps: 1}]"]


def _descend(learner, steps=1):
    """Real optimizer steps on some differentiable loss of the policy's logprobs."""
    learner.model.train()
    for _ in range(steps):
        _logprobs_grad = learner._forward(torch.tensor([[5, 6, 7, 8, 9, 10]]), torch.ones(1, 6, dtype=torch.long))
        (-_logprobs_grad[0].logprobs.sum()).backward()
        learner.optimizer.step()
        learner.optimizer.zero_grad(set_to_none=True)


def test_a_new_phase_adapter_starts_silent_trains_alone_and_the_stack_is_exact(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = load_config(None, PER_PHASE)
    assert cfg.served_lora_rank == 24
    learner = Learner(cfg)
    _descend(learner, 2)
    before = _logprobs(learner)
    learner.new_phase()
    assert torch.equal(_logprobs(learner), before)  # a fresh adapter (B = 0) does not move the function
    names = {n for n, p in learner.policy.peft.named_parameters() if p.requires_grad}
    assert names and all(".phase2." in n for n in names)
    assert {id(p) for p in learner.policy.trainable()} <= {id(p) for g in learner.optimizer.param_groups
                                                            for p in g["params"]}
    frozen = {n: p.detach().clone() for n, p in learner.policy.peft.named_parameters() if ".default." in n}
    with learner.policy.reference():  # PEFT re-enables (and so unfreezes) the adapters after a base forward
        pass
    assert all(".phase2." in n for n, p in learner.policy.peft.named_parameters() if p.requires_grad)
    _descend(learner, 2)
    assert all(torch.equal(p, frozen[n]) for n, p in learner.policy.peft.named_parameters() if n in frozen)
    assert not torch.allclose(_logprobs(learner), before)  # the new adapter did learn
    learner.new_phase()
    _descend(learner)
    update = learner.export_weights()
    assert update.payload["config"]["r"] == 24
    # the stack is one ordinary adapter: PEFT serves it with the phased policy's logprobs
    learner.save(str(tmp_path / "final"))
    base = AutoModelForCausalLM.from_pretrained(learner.policy.path, dtype=torch.float32)
    stacked = PeftModel.from_pretrained(base, str(tmp_path / "final")).eval()
    assert torch.allclose(_logprobs(learner, stacked.get_base_model()), _logprobs(learner), atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "final" / "phases").iterdir()) == ["phase1", "phase2", "phase3"]


def test_continual_backprop_reset_leaves_the_function_unchanged_and_clears_adam_state():
    learner = Learner(load_config(None, [*LORA, "continual.cbp_every=1", "continual.cbp_maturity=0"]))
    _nudge_adapter(learner, 0.2)
    cbp = learner.policy._cbp
    a, b = (cbp.layers[0].lora_A["default"].weight, cbp.layers[0].lora_B["default"].weight)
    learner.optimizer.state[a] = {"exp_avg": torch.ones_like(a), "exp_avg_sq": torch.ones_like(a)}
    with torch.no_grad():  # the replaced components' own output is what a reset removes: take it out first,
        b[:, [1, 3]] = 0.0  # then the reset itself must not move the function (the new components start silent)
    before = _logprobs(learner)
    old_rows = a.detach().clone()
    cbp.reinitialize(0, torch.tensor([1, 3]), learner.optimizer)
    assert torch.allclose(_logprobs(learner), before, atol=1e-6)
    assert not torch.equal(a[1], old_rows[1]) and torch.equal(a[0], old_rows[0])
    assert b[:, 1].abs().sum() == 0 and b[:, 3].abs().sum() == 0
    state = learner.optimizer.state[a]
    assert state["exp_avg"][1].abs().sum() == 0 and state["exp_avg"][0].abs().sum() > 0
    # the scheduled step replaces the lowest-utility mature component of every layer
    learner.model.train()
    learner._forward(torch.tensor([[5, 6, 7, 8]]), torch.ones(1, 4, dtype=torch.long))
    metrics = cbp.step(learner.optimizer)
    assert metrics["cbp/replaced"] == len(cbp.layers)
