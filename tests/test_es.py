"""Evolution strategies over a LoRA adapter: the pure parts (noise from seeds, normalisation, the update) against
their definitions, then a population served at once by a real vLLM engine."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from rlreason.algorithms.es import member_seeds, noise, normalized, perturbed, update

SHAPES = {"a.lora_A.weight": (4, 16), "a.lora_B.weight": (16, 4), "b.lora_A.weight": (4, 32)}


def _digest(seed: int, rank: int) -> list[float]:
    return [float(noise(seed, name, shape, rank).double().sum()) + float(noise(seed, name, shape, rank)[0, 0])
            for name, shape in SHAPES.items()]


@pytest.mark.parametrize("rank", [0, 1])
def test_noise_regenerates_exactly_from_its_seed_in_another_process(rank):
    code = ("from tests.test_es import _digest; print(repr(_digest(12345, %d)))" % rank)
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert eval(other.stdout.strip()) == _digest(12345, rank)  # bit for bit
    assert _digest(12345, rank) != _digest(12346, rank)
    a, b = noise(1, "a.lora_A.weight", (4, 16)), noise(1, "b.lora_A.weight", (4, 16))
    assert not torch.equal(a, b)  # each tensor its own stream


def test_low_rank_noise_has_that_rank_and_unit_scale():
    eps = noise(7, "w", (64, 48), rank=2)
    assert torch.linalg.matrix_rank(eps) == 2
    assert 0.7 < float(eps.std()) < 1.3  # U V^T / sqrt(k): entries of variance 1


def test_antithetic_members_share_seeds_with_opposite_signs():
    members = member_seeds(0, 3, 6, antithetic=True)
    assert [s for s, _ in members[::2]] == [s for s, _ in members[1::2]]
    assert [g for _, g in members] == [1, -1] * 3
    assert len({s for s, _ in member_seeds(0, 3, 6, antithetic=False)}) == 6
    assert member_seeds(0, 3, 6, True) != member_seeds(0, 4, 6, True)  # a new generation, new members


def test_antithetic_pairs_cancel_on_a_constant_reward():
    mean = {n: torch.randn(s) for n, s in SHAPES.items()}
    members = member_seeds(0, 1, 8, antithetic=True)
    for how in ("none", "zscore", "rank"):
        new, norm = update(mean, members, normalized([0.7] * 8, how), lr=0.5)
        assert norm < 1e-5, how
        for name in mean:
            torch.testing.assert_close(new[name], mean[name], rtol=0, atol=1e-6)


def test_the_update_is_the_closed_form_and_climbs_a_toy_objective():
    """f(theta) = -|theta - target|^2: the ES step is (lr / N) sum w_i sign_i eps_i, which (in expectation) follows
    the gradient; a few generations move theta towards the target."""
    target = {n: torch.ones(s) for n, s in SHAPES.items()}
    theta = {n: torch.zeros(s) for n, s in SHAPES.items()}

    def f(params):
        return -sum(float((params[n] - target[n]).pow(2).sum()) for n in params)

    members = member_seeds(0, 1, 4, antithetic=True)
    rewards = [f(perturbed(theta, s, g, 0.1)) for s, g in members]
    weights = normalized(rewards, "zscore")
    new, norm = update(theta, members, weights, lr=0.05)
    by_hand = {n: theta[n] + 0.05 / 4 * sum(float(w) * g * noise(s, n, SHAPES[n]) for (s, g), w in
                                             zip(members, weights)) for n in theta}
    for n in theta:
        torch.testing.assert_close(new[n], by_hand[n], rtol=1e-5, atol=1e-7)
    assert norm == pytest.approx(float(torch.cat([(by_hand[n] - theta[n]).flatten() for n in theta]).norm()), rel=1e-5)
    start = f(theta)
    for generation in range(1, 61):
        members = member_seeds(0, generation, 16, antithetic=True)
        rewards = [f(perturbed(theta, s, g, 0.1)) for s, g in members]
        theta, _ = update(theta, members, normalized(rewards, "rank"), lr=1.0)
    assert f(theta) > 0.4 * start  # (from -256: more than 60% of the squared distance gone; measured -55)


def test_rank_and_zscore_normalisation():
    torch.testing.assert_close(normalized([3.0, 1.0, 2.0], "rank"), torch.tensor([0.5, -0.5, 0.0], dtype=torch.float64))
    torch.testing.assert_close(normalized([1.0, 1.0, 3.0], "rank"), torch.tensor([-0.25, -0.25, 0.5],
                                                                                 dtype=torch.float64))
    z = normalized([1.0, 2.0, 3.0, 6.0], "zscore")
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-12) and float(z.std(unbiased=False)) == pytest.approx(1.0)


ES = ["algorithm.name=es", "model.lora.rank=8", "algorithm.population=4", "algorithm.sigma=0.3"]  # (0.3: members
# far apart, for the engine test; a run uses the default sigma)


@pytest.fixture(scope="module")
def population_engine(tiny_model_path):
    from rlreason.rollout.engine import RolloutEngine

    return RolloutEngine(tiny_model_path, seed=0, lora_rank=8, max_loras=6)


def test_an_engine_serves_every_member_at_once_as_the_learner_builds_it(population_engine):
    """Members built in the engine from seeds equal the learner's members: the logprobs vLLM sampled each member's
    tokens with are the learner's under that member's adapter; the members differ; they are gone afterwards."""
    from peft import set_peft_model_state_dict

    from rlreason.recipe import load_config
    from rlreason.learner.learner import Learner
    from rlreason.rollout.engine import SamplingSpec
    from rlreason.tasks import get_task

    learner = Learner(load_config(None, ES))
    engine = population_engine
    engine.load_weights(learner.export_weights())
    mean = learner.export_weights().payload["tensors"]
    problems = [p for p, _ in zip(get_task("arithmetic").train_problems(seed=3), range(3))]
    members = member_seeds(0, 1, 4, antithetic=True)
    out = engine.generate_population(problems, SamplingSpec(n=2, max_tokens=24), members, 0.3)
    assert [len(groups) for groups in out] == [3] * 4 and all(len(g) == 2 for groups in out for g in groups)
    gaps, firsts = [], []
    for (seed, sign), groups in zip(members, out):
        set_peft_model_state_dict(learner.policy.peft, perturbed(mean, seed, sign, 0.3))
        for c in groups[0]:
            mine = learner.sequence_logprobs(c.prompt_ids, c.completion_ids)
            gaps += [abs(a - b) for a, b in zip(mine, c.logprobs)]
        c = groups[0][0]
        firsts.append(learner.sequence_logprobs(c.prompt_ids, c.completion_ids))
    assert max(gaps) < 2e-3
    assert engine.adapters.loaded() == {engine.adapters.current.lora_int_id}  # members dropped
    set_peft_model_state_dict(learner.policy.peft, perturbed(mean, *members[1], 0.3))
    c = out[0][0][0]
    other = learner.sequence_logprobs(c.prompt_ids, c.completion_ids)
    assert max(abs(a - b) for a, b in zip(other, firsts[0])) > 1e-2  # member 1 is not member 0


def test_an_engine_serves_a_saved_member_for_evaluation(population_engine, tmp_path):
    """A member the archive keeps (its tensors, as ``es_save_member`` returns them) is served by
    ``generate(adapter=)``: the sampled tokens' logprobs are the learner's under that member, not the policy's; it
    is unloaded afterwards; the member's directory holds the same tensors."""
    from safetensors.torch import load_file

    from peft import set_peft_model_state_dict

    from rlreason.recipe import load_config
    from rlreason.learner.learner import Learner
    from rlreason.rollout.engine import SamplingSpec
    from rlreason.tasks import get_task

    learner = Learner(load_config(None, ES))
    learner.version = 10  # (the engine is shared by this module's tests: each pushes a version of its own)
    engine = population_engine
    engine.load_weights(learner.export_weights())
    mean = learner.export_weights().payload["tensors"]
    seed, sign = member_seeds(0, 2, 2, antithetic=True)[0]
    tensors = learner.es_save_member(seed, sign, 0.3, 0, str(tmp_path / "elite"))
    on_disk = load_file(str(tmp_path / "elite" / "adapter_model.safetensors"))
    assert on_disk.keys() == tensors.keys() and all(torch.equal(on_disk[k], tensors[k]) for k in tensors)
    problems = [p for p, _ in zip(get_task("arithmetic").train_problems(seed=4), range(2))]
    groups = engine.generate(problems, SamplingSpec(n=2, max_tokens=24), adapter=tensors)
    assert engine.adapters.loaded() == {engine.adapters.current.lora_int_id}  # the member is gone again
    member, policy = [], []
    for group in groups:
        for c in group:
            set_peft_model_state_dict(learner.policy.peft, perturbed(mean, seed, sign, 0.3))
            member += [abs(a - b) for a, b in zip(learner.sequence_logprobs(c.prompt_ids, c.completion_ids),
                                                  c.logprobs)]
            set_peft_model_state_dict(learner.policy.peft, mean)
            policy += [abs(a - b) for a, b in zip(learner.sequence_logprobs(c.prompt_ids, c.completion_ids),
                                                  c.logprobs)]
    assert max(member) < 2e-3 and max(policy) > 1e-2


def test_the_common_seed_is_one_per_generation_and_the_same_on_a_rerun():
    from rlreason.recipe import load_config
    from rlreason.drivers.es import common_seed

    cfg, other = load_config("es", []), load_config("es", ["seed=1"])
    seeds = [common_seed(cfg, step) for step in range(1, 6)]
    assert seeds == [common_seed(load_config("es", []), step) for step in range(1, 6)]  # a resumed run's
    assert len(set(seeds)) == 5 and common_seed(other, 1) != seeds[0] and all(0 <= s < 2**31 for s in seeds)
    assert common_seed(load_config("es", ["algorithm.common_noise=false"]), 1) is None


def _serving_a_fresh_mean(engine, version: int, seed: int):
    """The shared engine serving a new learner's mean (under a version of its own), 4 problems, 4 members."""
    from rlreason.recipe import load_config
    from rlreason.learner.learner import Learner
    from rlreason.tasks import get_task

    learner = Learner(load_config(None, ES))
    learner.version = version
    engine.load_weights(learner.export_weights())
    problems = [p for p, _ in zip(get_task("arithmetic").train_problems(seed=seed), range(4))]
    return engine, problems, member_seeds(0, seed - 2, 4, antithetic=True)


def test_greedy_members_answer_the_same_way_every_time(population_engine):
    """algorithm.greedy: a member's reward depends on its perturbation only (the same completions on a second
    evaluation), while members still answer differently."""
    from rlreason.rollout.engine import SamplingSpec

    engine, problems, members = _serving_a_fresh_mean(population_engine, version=20, seed=5)
    spec = SamplingSpec(n=1, max_tokens=24, temperature=0.0)
    runs = [[[c.completion_ids for g in groups for c in g] for groups in
             engine.generate_population(problems, spec, members, 0.3)] for _ in range(2)]
    assert runs[0] == runs[1]
    assert len({str(member) for member in runs[0]}) > 1


def test_common_noise_members_sample_alike_where_their_perturbations_agree(population_engine):
    """algorithm.common_noise: members sample problem i with the same random numbers. Members that are (almost) the
    same adapter then give the same completions (sampled independently they seldom do), a second call gives the
    same completions again, and members far apart still answer differently."""
    from rlreason.rollout.engine import SamplingSpec

    engine, problems, members = _serving_a_fresh_mean(population_engine, version=30, seed=6)
    spec = SamplingSpec(n=2, max_tokens=24)

    def completions(sigma, common):
        out = engine.generate_population(problems, spec, members, sigma, 0, "c", common)
        return [[c.completion_ids for g in groups for c in g] for groups in out]

    alike = completions(1e-9, 1234)
    assert all(member == alike[0] for member in alike)
    assert any(alike[0][2 * i] != alike[0][2 * i + 1] for i in range(len(problems)))  # a group's samples: own seeds
    assert completions(1e-9, 1234) == alike
    apart = completions(1e-9, None)
    assert sum(a == b for a, b in zip(apart[0], apart[1])) < len(apart[0]) // 2
    far = completions(0.3, 1234)
    assert len({str(member) for member in far}) == len(members)


def test_seeded_batches_larger_than_a_step_sample_on_cpu(population_engine):
    """Common random numbers at scale: 2048 seeded requests overflow a step's 4096 tokens. With chunked prefill a
    prompt split over two steps made vLLM rewind its seeded generator, which CPU generators cannot do ("CPU
    Generator does not use offset": the engine crashed); the same seeds give the same completions again."""
    from rlreason.rollout.engine import SamplingSpec
    from rlreason.tasks import get_task

    problems = [p for p, _ in zip(get_task("programs").train_problems(seed=1), range(512))]
    spec = SamplingSpec(n=4, max_tokens=8)
    first = population_engine._generate(problems, spec, None, list(range(512)))
    again = population_engine._generate(problems[:8], spec, None, list(range(8)))
    assert [[c.completion_ids for c in g] for g in first[:8]] == [[c.completion_ids for c in g] for g in again]


def test_es_trains_through_rlreason_train_and_keeps_its_elites(tmp_path):
    import json
    from pathlib import Path

    run = subprocess.run([str(Path(sys.executable).parent / "rlreason"), "train", *ES[:3], "algorithm.elites=2",
                          "train.steps=3", "rollout.prompts_per_step=12", "rollout.group_size=2", "eval.before=false",
                          "eval.after=false", "eval.every=2", "tasks.eval=[arithmetic]", "tasks.eval_size=8",
                          "eval.samples=2", "output.tensorboard=false"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "runs" / "tiny-grpo"
    steps = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in steps if x["kind"] == "train"]
    assert [x["policy_version"] for x in steps] == [1.0, 2.0, 3.0]
    assert all(x["es_population"] == 4 and x["es_reward_max"] >= x["reward_mean"] >= x["es_reward_min"]
               for x in steps)
    assert any(x["es_update_norm"] > 0 for x in steps)  # (all members equal: z-scores 0, no step)
    # the best member's held-out accuracy beside the mean's, at the evaluation step only
    assert [("es_best/arithmetic/accuracy" in x) for x in steps] == [False, True, False]
    assert 0 <= steps[1]["es_best/arithmetic/accuracy"] <= 1
    evals = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in evals if x["kind"] == "eval"] == [2]
    archive = json.loads((out / "es_archive.json").read_text())
    assert len(archive) == 2 and archive[0]["reward"] >= archive[1]["reward"]
    assert any(e["heldout"].get("arithmetic/accuracy") == steps[1]["es_best/arithmetic/accuracy"] for e in archive) \
        or all(e["generation"] == 3 for e in archive)  # (unless generation 3 replaced both)
    for elite in archive:
        assert (Path(elite["path"]) / "adapter_model.safetensors").is_file()
    assert len(list((out / "elites").iterdir())) == 2  # the ones that fell out of the archive are deleted
    assert (out / "final" / "adapter_config.json").is_file()


@pytest.mark.slow  # (the ES driver itself runs in the fast suite: test_es_trains_through_rlreason_train...)
def test_greedy_es_runs_one_answer_per_problem(tmp_path):
    import json
    from pathlib import Path

    run = subprocess.run([str(Path(sys.executable).parent / "rlreason"), "train", *ES[:3], "algorithm.greedy=true",
                          "algorithm.elites=0", "train.steps=2", "rollout.prompts_per_step=6", "rollout.group_size=4",
                          "eval.before=false", "eval.after=false", "output.tensorboard=false",
                          "output.save_model=false"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    steps = [json.loads(x) for x in (tmp_path / "runs" / "tiny-grpo" / "metrics.jsonl").read_text().splitlines()]
    # 4 members x 6 problems x 1 greedy answer (rollout.group_size does not apply)
    assert [x["rollout_tokens"] / x["completion_len"] for x in steps if x["kind"] == "train"] == \
        pytest.approx([24.0, 24.0])


def test_the_archive_forgets_generations_a_resumed_run_replays_and_size_0_keeps_none(tmp_path):
    import json

    from rlreason.drivers.es import Archive, Elite

    elites = []
    for generation in (1, 2, 3):
        path = tmp_path / "elites" / f"g{generation}"
        path.mkdir(parents=True)
        elites.append(Elite(generation, 10 + generation, 1, 0.005, 0.5 - generation / 10, 0.4, str(path)))
    (tmp_path / "es_archive.json").write_text(json.dumps([e.__dict__ for e in elites]))
    archive = Archive(3, tmp_path)  # (a resumed run reads the archive back)
    assert [e.generation for e in archive.elites] == [1, 2, 3]
    archive.forget_from(2)  # resumed after generation 1: 2 and 3 come again
    assert [e.generation for e in archive.elites] == [1]
    assert sorted(p.name for p in (tmp_path / "elites").iterdir()) == ["g1"]
    Archive(0, tmp_path).consider(None, 4, [(1, 1)], [0.9], [0.9], 0.005, 0)  # no archive: nothing asked, no error
