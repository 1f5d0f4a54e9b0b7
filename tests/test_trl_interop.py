"""TRL interop with the real TRL: our verifier as a reward function inside a short GRPOTrainer run, and a
TRL-style reward function named in a recipe (``trl:module:function``) scoring as a verifier."""

import json
import subprocess
import sys
import textwrap

import pytest

from rlreason.integrations.trl import reward_function
from rlreason.tasks import get_task


def test_our_verifier_scores_trl_batches_through_the_runner():
    reward = reward_function("exact_answer", reference="answer")
    try:
        scores = reward(prompts=["1+1=?\n"] * 3 + [[{"role": "user", "content": "2+2=?"}]],
                        completions=["#### 2", "#### 3", "no anchor", [{"role": "assistant", "content": "#### 4"}]],
                        answer=["2", "2", "2", "4"], trainer_state=None)
        assert scores == [1.0, 0.0, 0.0, 1.0] and reward.__name__ == "exact_answer"
        with pytest.raises(ValueError, match="no 'answer' column"):
            reward(prompts=["x"], completions=["y"], solution=["z"])
    finally:
        reward.close()


def test_a_short_grpo_trainer_run_uses_our_reward_function(tmp_path, tiny_model_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    problems = [p for p, _ in zip(get_task("arithmetic").train_problems(seed=1), range(8))]
    data = Dataset.from_list([{"prompt": p.prompt, "answer": p.reference} for p in problems])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    reward = reward_function("exact_answer", reference="answer")
    calls = []

    def counted(prompts, completions, **kw):
        scores = reward(prompts, completions, **kw)
        calls.append(scores)
        return scores

    counted.__name__ = "exact_answer"
    args = GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=40, max_steps=2, learning_rate=1e-5, use_cpu=True, report_to="none",
                      logging_steps=1, save_strategy="no", temperature=1.0, seed=0)
    try:
        trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_path), args=args,
                              reward_funcs=[counted], train_dataset=data, processing_class=tokenizer)
        trainer.train()
    finally:
        reward.close()
    logged = [h for h in trainer.state.log_history if "rewards/exact_answer/mean" in h]
    assert len(calls) >= 2 and all(s in (0.0, 1.0) for batch in calls for s in batch)
    assert logged and any(sum(batch) > 0 for batch in calls)  # the tiny model solves some sums: real scores


def test_a_trl_style_reward_function_named_in_a_recipe_is_a_verifier(tmp_path):
    (tmp_path / "myrewards.py").write_text(textwrap.dedent('''
        def length_ok(prompts, completions, reference, **kwargs):
            return [1.0 if str(r) in c else (None if not c else 0.25) for c, r in zip(completions, reference)]
    '''))
    from rlreason.recipe import load_config

    sys.path.insert(0, str(tmp_path))
    try:
        cfg = load_config(None, ["tasks.verifier=trl:myrewards:length_ok"])
        assert cfg.tasks.verifier == "trl:myrewards:length_ok"
    finally:
        sys.path.remove(str(tmp_path))
    records = [{"id": "a", "prompt": "p", "reference": "42", "verifier": "x", "completion": "the answer is 42"},
               {"id": "b", "prompt": "p", "reference": "42", "verifier": "x", "completion": "no idea"},
               {"id": "c", "prompt": "p", "reference": "42", "verifier": "x", "completion": ""}]
    proc = subprocess.run([sys.executable, "-m", "rlreason.cli", "verify", "trl:myrewards:length_ok"],
                          input="\n".join(json.dumps(r) for r in records), cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["score"] for r in results] == [1.0, 0.25, 0.0]


def test_trls_own_reward_function_is_a_verifier():
    """trl.rewards.accuracy_reward reads conversational completions and a `solution` column."""
    from rlreason.types import Problem
    from rlreason.verifiers import get_verifier

    verify = get_verifier("trl:trl.rewards:accuracy_reward")
    problem = Problem("p", "What is 1/2 + 1/2?", "$1$", "trl:trl.rewards:accuracy_reward")
    assert verify(r"so the answer is $\boxed{1}$", problem).score == 1.0
    assert verify(r"so the answer is $\boxed{2}$", problem).score == 0.0
