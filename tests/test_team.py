"""Teams (rlreason team): the coordinator's choice reaches the engine and the chosen member's adapter writes the turn
(its logprobs are the learner's under that adapter); ES heads regenerate bit for bit from their seeds in another
process and the engine plays the choice the driver computes; an invalid choice is an error in the transcript, not a
failed episode; the GRPO gradient is the autograd one; a member's adapter that is missing or made for another model
is refused in one line before anything starts; and the command runs end to end, specialists trained first."""

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from rlreason.envs.coordinator import Encoder, decide, member_head, policy_gradient, probabilities
from rlreason.recipe import RecipeError, load_config
from rlreason.rollout.engine import RolloutEngine, SamplingSpec
from rlreason.rollout.episodes import EpisodeSpec
from rlreason.tasks import get_task

WORKER = [{"name": "worker", "prompt": "", "answers": True}]


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """Two rank-8 adapters of the embedded model, each its own random nudge of B (so they disagree)."""
    from rlreason.learner.learner import Learner

    root, out = tmp_path_factory.mktemp("members"), {}
    for k, name in enumerate(("a", "b")):
        learner = Learner(load_config(None, ["model.lora.rank=8"]))
        generator = torch.Generator().manual_seed(k)
        with torch.no_grad():
            for n, p in learner.model.named_parameters():
                if "lora_B" in n:
                    p.add_(torch.randn(p.shape, generator=generator) * 0.05)
        learner.save(str(root / name))
        out[name] = str(root / name)
    return out


@pytest.fixture(scope="module")
def team_engine(tiny_model_path, adapters):
    engine = RolloutEngine(tiny_model_path, seed=0, lora_rank=8, max_loras=4)
    assert engine.serve_team({**adapters, "base": None}) == ["a", "b", "base"]
    return engine


def _play(engine, path, problems, config, n=1, max_tokens=48, roles=WORKER, max_turns=2):
    played = [replace(p, meta={**p.meta, "env": {"name": "team", "config": {
        "members": ["a", "b", "base"], "roles": roles, "max_turns": max_turns, "encoder": path, **config}}})
        for p in problems]
    return engine.generate(played, SamplingSpec(n=n, max_tokens=max_tokens, episode=EpisodeSpec(max_turns + 1)))


def _problems(n=4):
    return [p for p, _ in zip(get_task("addition").train_problems(seed=2), range(n))]


def test_each_turn_is_sampled_under_the_chosen_members_adapter(team_engine, tiny_model_path, adapters):
    from rlreason.learner.learner import Learner

    groups = _play(team_engine, tiny_model_path, _problems(3), {"fixed": [["a", "worker"], ["b", "worker"]]},
                   max_tokens=8)  # (turns cut at 8 tokens: the second turn continues the first, not after EOS)
    learners = {m: Learner(load_config(None, [f"model.adapter={p}"])) for m, p in adapters.items()}
    for group in groups:
        c = group[0]
        assert c.episode.info["choices"] == [["a", "worker"], ["b", "worker"]] and not c.episode.failed
        first = c.episode.turns[0].tokens
        turns = {"a": (c.prompt_ids, c.completion_ids[:first], c.logprobs[:first]),
                 "b": (c.prompt_ids + c.completion_ids[:first], c.completion_ids[first:],
                       c.logprobs[first:])}
        for member, (prompt, ids, engine_logprobs) in turns.items():
            assert len(ids) > 1
            other = "b" if member == "a" else "a"
            right = max(abs(x - y) for x, y in zip(learners[member].sequence_logprobs(prompt, ids), engine_logprobs))
            wrong = max(abs(x - y) for x, y in zip(learners[other].sequence_logprobs(prompt, ids), engine_logprobs))
            assert right < 1e-3 < wrong, (member, right, wrong)


def test_es_heads_regenerate_bit_for_bit_and_the_engine_plays_the_drivers_choice(team_engine, tiny_model_path):
    encoder = Encoder.of(tiny_model_path)
    mean = torch.randn(encoder.dim, 4, generator=torch.Generator().manual_seed(7))  # (a, b, base) x worker + stop
    here = member_head(mean, 12345, -1, 0.8)
    code = ("import sys, hashlib, torch; from rlreason.envs.coordinator import member_head; "
            "mean = torch.load(sys.argv[1]); print(hashlib.sha256(member_head(mean, 12345, -1, 0.8).numpy()"
            ".tobytes()).hexdigest())")
    torch.save(mean, "/tmp/rlreason-team-mean.pt")
    there = subprocess.run([sys.executable, "-c", code, "/tmp/rlreason-team-mean.pt"], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert there == hashlib.sha256(here.numpy().tobytes()).hexdigest()
    problems = _problems(6)
    names = ["a", "b", "base"]
    center = encoder.center([p.prompt for p in _problems(16)])
    for seed, sign in ((11, 1), (11, -1), (12, 1)):
        head = member_head(mean, seed, sign, 0.8)
        groups = _play(team_engine, tiny_model_path, problems,
                       {"head": mean.tolist(), "seed": seed, "sign": sign, "sigma": 0.8, "center": center.tolist()})
        for p, g in zip(problems, groups):
            expected = names[decide(head, encoder.features(p.prompt, center), False, None)]
            assert g[0].episode.info["choices"][0] == [expected, "worker"]


def test_an_invalid_choice_is_an_error_in_the_transcript_not_a_failed_episode(team_engine, tiny_model_path):
    roles = [*WORKER, {"name": "thinker", "prompt": ""}]
    groups = _play(team_engine, tiny_model_path, _problems(2),
                   {"fixed": [["ghost", "worker"], ["a", "judge"], ["a", "worker"]]}, roles=roles, max_turns=3)
    for group in groups:
        c = group[0]
        assert not c.episode.failed and c.episode.reason == "done"
        assert c.episode.info == {"choices": [["a", "worker"]], "errors": 2}
        prompt = team_engine.tokenizer.decode(c.prompt_ids)
        assert "[coordinator error: no member 'ghost' (members: a, b, base)]" in prompt
        assert "[coordinator error: no role 'judge' (roles: worker, thinker)]" in prompt
        assert sum(t.role == "assistant" for t in c.episode.turns) == 1  # (a wrote the one turn left)


def test_a_script_that_stops_first_or_runs_out_still_has_a_member_answer(team_engine, tiny_model_path):
    for fixed in ([], [None]):
        c = _play(team_engine, tiny_model_path, _problems(1), {"fixed": fixed}, max_turns=1)[0][0]
        assert not c.episode.failed and c.episode.info["choices"] == [["a", "worker"]]
        assert c.episode.info["errors"] == 1  # (no choice before the first turn: an error, the first member answers)


def test_the_grpo_step_is_the_policy_gradient_of_the_choices():
    g = torch.Generator().manual_seed(0)
    head = torch.randn(5, 4, generator=g)
    decisions = [[torch.randn(5, generator=g).tolist(), k, k > 0] for k in (0, 3, 2)]
    ours = policy_gradient(head, decisions, 0.7)
    h = head.clone().requires_grad_(True)
    objective = sum(torch.log(probabilities(h, torch.tensor(f), stop)[k]) for f, k, stop in decisions) * 0.7
    objective.backward()
    assert torch.allclose(ours, h.grad, atol=1e-5)
    assert float(probabilities(head, torch.tensor(decisions[0][0]), False)[-1]) == 0.0  # no stop before a turn


def test_a_member_that_is_missing_or_made_for_another_model_is_refused_in_one_line(adapters, tmp_path):
    from safetensors.torch import load_file, save_file

    with pytest.raises(RecipeError, match=r"^team\.members\[x\]\.adapter: no PEFT adapter \(adapter_config.json\) "
                                          r"at '/nowhere'"):
        load_config("team", ["team.members=[{name: x, adapter: /nowhere}]"])
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(f"{adapters['a']}/adapter_config.json", other)
    tensors = load_file(f"{adapters['a']}/adapter_model.safetensors")
    save_file({k: torch.zeros(v.shape[0], 576) if "lora_A" in k else v for k, v in tensors.items()},
              str(other / "adapter_model.safetensors"))  # (SmolLM2's width: an adapter of another model)
    with pytest.raises(RecipeError, match=r"^team\.members\[y\]\.adapter: made for another model: .*lora_A.*576"):
        load_config("team", [f"team.members=[{{name: y, adapter: {other}}}]"])
    with pytest.raises(RecipeError, match=r"^team\.members\.0: Value error, z: give adapter or train, not both|"
                                          r"^team\.members\.0: z: give adapter or train"):
        load_config("team", [f"team.members=[{{name: z, adapter: {adapters['a']}, train: addition}}]"])
    with pytest.raises(RecipeError, match=r"^team\.members\[w\]\.train: .*addtion"):
        load_config("team", ["team.members=[{name: w, train: addtion}]"])
    with pytest.raises(RecipeError, match=r"^team\.coordinator\.encoder: no model directory .* at 'org/model'"):
        load_config("team", ["team.coordinator.encoder=org/model"])


def test_tasks_with_their_own_environment_are_refused_before_anything_trains(tmp_path):
    run = subprocess.run([sys.executable, "-m", "rlreason.cli", "team", "team", "tasks.eval=[addition,calculator]"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.strip().splitlines()[-1] == (
        "error: tasks.eval: 'calculator' is played in environment 'calculator'; a team answers plain tasks "
        "(allowed: tasks without an environment)")
    assert not (tmp_path / "runs" / "tiny-team" / "members").exists()


def test_rlreason_team_trains_a_specialist_then_evolves_and_reports(adapters, tmp_path):
    overrides = [f"team.members=[{{name: a, adapter: {adapters['a']}}}, {{name: fresh, train: subtraction}}, "
                 "{name: base}]", "team.specialist_steps=1", "rollout.prompts_per_step=4", "rollout.group_size=2",
                 "tasks.eval=[addition,subtraction]", "tasks.eval_size=6", "eval.samples=1",
                 "team.coordinator.generations=2", "team.coordinator.population=2", "team.coordinator.problems=4",
                 "team.coordinator.samples=1", "name=t"]
    run = subprocess.run([sys.executable, "-m", "rlreason.cli", "team", "team", *overrides], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "runs" / "t"
    report = json.loads((out / "team.json").read_text())
    assert set(report["alone"]) == {"a", "fresh", "base"}
    assert (out / "members" / "fresh" / "final" / "adapter_config.json").is_file()
    best = max(r["mixed"] for r in report["alone"].values())
    assert report["oracle"]["mixed"] >= best and report["best_member"]["mixed"] == best
    assert report["routing"]["tasks"] == ["addition", "subtraction"]
    assert all(abs(sum(row) - 1) < 1e-9 for row in report["routing"]["shares"])
    assert len(report["generations"]) == 2 and (out / "routing.png").stat().st_size > 1000
    saved = torch.load(out / "coordinator.pt")
    assert saved["head"].shape == (129, 4) and saved["center"].shape == (128,) and saved["members"] == ["a", "fresh",
                                                                                                         "base"]
    assert "team (es)" in run.stdout and "oracle" in run.stdout

    # the saved coordinator, evaluated again (paired seeds: the same answers, the same numbers)
    pool = (f"team.members=[{{name: a, adapter: {adapters['a']}}}, {{name: fresh, adapter: {out}/members/fresh}}, "
            "{name: base}]")
    again = subprocess.run([sys.executable, "-m", "rlreason.cli", "team", "team", *overrides[1:], pool, "name=u",
                            f"team.coordinator.init={out}/coordinator.pt", "team.coordinator.generations=0"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads((tmp_path / "runs" / "u" / "team.json").read_text())
    assert second["team"]["per_problem"] == report["team"]["per_problem"]
    assert second["alone"]["a"]["per_problem"] == report["alone"]["a"]["per_problem"]
