"""A multi-turn training step against TRL's ``environment_factory``, the same episodes on the same model, in one run.

    python -m benchmarks.env_race [--prompts 8] [--group 4] [--turns 3] [--tokens 24] [--steps 6] [--out F]

The model is the embedded one with TRL's own Qwen2.5 chat template (tool calling; read from TRL's package) and a
2048-token context (its rotary positions have no table to outgrow). Every episode is ``--turns`` model turns of
``--tokens`` tokens (EOS ignored), each but the last answered by the environment's tool: TRL's loop renders the
tool's reply through the template and appends its ids; ours appends the same text, so both sample and train on
the same token sequences. The model cannot write real tool calls, so TRL's response parser is replaced by one that
reads every turn as a call of the environment's ``reply`` tool (the loop then runs all its turns). Both: GRPO
without KL, fp32, lr 1e-4, generation in vLLM (TRL's colocated engine; ours in its rollout worker), one process
group on this machine's cores. Reported: the median step time after the first two steps, and their ratio.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rlreason.envs import Environment, StepResult

CACHE = Path.home() / ".cache" / "rlreason" / "race"


def model_dir() -> str:
    """The embedded model with TRL's Qwen2.5 tool-calling template and a 2048-token context (built once)."""
    out = CACHE / "tiny-tools"
    if (out / "config.json").is_file():
        return str(out)
    import trl
    from transformers import AutoTokenizer

    from rlreason.models.tiny import default_model_path

    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=CACHE))
    shutil.copytree(default_model_path(), tmp / "m")
    config = json.loads((tmp / "m" / "config.json").read_text())
    (tmp / "m" / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 2048}))
    tokenizer = AutoTokenizer.from_pretrained(tmp / "m")
    tokenizer.chat_template = (Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja").read_text()
    tokenizer.save_pretrained(tmp / "m")
    (tmp / "m").rename(out)
    tmp.rmdir()
    return str(out)


class Tools:
    """TRL's environment: one tool, called every turn."""

    def reset(self, **kwargs) -> None:
        self.said = 0

    def reply(self, text: str) -> str:
        """Answer the model's turn.

        Args:
            text: what the model said
        """
        self.said += sum(map(ord, text))
        return "ok"

    def get_reward(self) -> float:
        return float(self.said % 2)


@functools.lru_cache(maxsize=2)
def _rendering(path: str) -> tuple[str, str]:
    """(the text before a user message, the tool reply's text) as TRL renders them for this model."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    user = [{"role": "user", "content": "\x00"}]
    prompt = tok.apply_chat_template(user, tools=[Tools().reply], add_generation_prompt=True, tokenize=False)
    call = [{"role": "user", "content": "dummy"}, {"role": "assistant", "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "reply", "arguments": {}}}]}]
    before = tok.apply_chat_template(call, tokenize=False)
    after = tok.apply_chat_template([*call, {"role": "tool", "name": "reply", "content": "ok"}],
                                    add_generation_prompt=True, tokenize=False)
    assert after.startswith(before)
    return prompt, after[len(before):]


class Relay(Environment):
    """Ours: the same prompt (with the tool's schema) and the same reply text, ``turns`` model turns."""

    rewards = True

    def __init__(self, path: str, turns: int = 3) -> None:
        self.path, self.turns, self.seen, self.said = path, turns, 0, 0

    def reset(self, problem):
        prompt, _ = _rendering(self.path)
        return prompt.replace("\x00", problem.prompt)

    def step(self, action):
        self.seen += 1
        self.said += sum(map(ord, action))
        if self.seen >= self.turns:
            return StepResult(reward=float(self.said % 2), done=True)
        return StepResult(observation=_rendering(self.path)[1], tool_calls=1)


def run_trl(args) -> dict:
    import trl.trainer.grpo_trainer as gt
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from benchmarks.race.trl_grpo import StepClock, _patch_vllm_for_cpu
    from rlreason.tasks import get_task

    _patch_vllm_for_cpu()

    def every_turn_calls_reply(tokenizer, ids, prefix=None, tools=None):
        text = tokenizer.decode(ids, skip_special_tokens=True)
        return {"role": "assistant", "content": "",
                "tool_calls": [{"type": "function", "function": {"name": "reply", "arguments": {"text": text}}}]}

    gt.parse_response = every_turn_calls_reply
    import itertools

    problems = list(itertools.islice(get_task("arithmetic").train_problems(0, None), args.prompts * args.steps))
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": p.prompt}]} for p in problems])
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.prompts * args.group,
        num_generations=args.group, max_completion_length=2000, max_tool_calling_iterations=args.turns - 1,
        learning_rate=1e-4, lr_scheduler_type="constant", warmup_steps=0, adam_beta1=0.9, adam_beta2=0.99,
        weight_decay=0.0, max_grad_norm=1.0, max_steps=args.steps, beta=0.0, temperature=1.0, top_p=1.0,
        shuffle_dataset=False, seed=0, loss_type="grpo", logging_steps=1, report_to=[], save_strategy="no",
        use_cpu=True, dataloader_num_workers=0, use_vllm=True, vllm_mode="colocate", vllm_max_model_length=2048,
        generation_kwargs={"ignore_eos": True, "max_tokens": args.tokens})
    path = model_dir()
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(path), args=config, train_dataset=data,
                          processing_class=AutoTokenizer.from_pretrained(path), environment_factory=Tools)
    clock = StepClock()
    trainer.add_callback(clock.callback(TrainerCallback))
    real_generate = trainer._generate_single_turn

    def counted(*a, **kw):  # the tokens sampled, per generate call (a call per turn)
        completion_ids, logprobs = real_generate(*a, **kw)
        clock.generation.append((0.0, sum(len(c) for c in completion_ids)))
        return completion_ids, logprobs

    trainer._generate_single_turn = counted
    trainer.train()
    calls = [n for _, n in clock.generation]
    return {"step_s": clock.steps, "sampled_tokens": sum(calls) / args.steps, "generate_calls": len(calls) / args.steps}


def run_ours(args, work: Path) -> dict:
    entry = json.dumps({"env": "benchmarks.env_race:Relay", "data": "arithmetic",
                        "config": {"path": model_dir(), "turns": args.turns}})
    cmd = [sys.executable, "-m", "rlreason.cli", "train", f"model.path={model_dir()}", "model.dtype=float32",
           "model.max_model_len=2048", f"tasks.train=[{entry}]", "tasks.template=plain", "eval.before=false",
           "eval.after=false", "output.tensorboard=false", "output.save_model=false", f"train.steps={args.steps}",
           f"rollout.prompts_per_step={args.prompts}", f"rollout.group_size={args.group}", "train.lr=1e-4",
           f"rollout.max_tokens={args.tokens}", "rollout.ignore_eos=true", f"env.max_turns={args.turns}",
           "env.max_tokens=null", "algorithm.name=grpo", "name=ours", "tasks.eval=[arithmetic]"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode:
        raise SystemExit(proc.stdout[-2000:] + proc.stderr[-3000:])
    lines = [json.loads(x) for x in (work / "runs" / "ours" / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if x["kind"] == "train"]
    return {"step_s": [x["step_time_s"] for x in train],
            "episode_turns": statistics.fmean(x["episode_turns"] for x in train),
            "sampled_tokens": statistics.fmean(x["rollout_tokens"] for x in train)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("prompts", 8), ("group", 4), ("turns", 3), ("tokens", 24), ("steps", 6)):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--side", choices=["trl"], help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.side == "trl":
        print("RESULT " + json.dumps(run_trl(args)))
        return
    model_dir()
    work = Path(tempfile.mkdtemp())
    results = {"ours": run_ours(args, work)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.env_race", "--side", "trl", *sys.argv[1:]],
                          capture_output=True, text=True, timeout=3600)
    found = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not found:
        raise SystemExit(proc.stdout[-2000:] + proc.stderr[-4000:])
    results["trl"] = {**json.loads(found[-1][7:]), "wall_s": time.perf_counter() - start}
    medians = {k: statistics.median(v["step_s"][2:]) for k, v in results.items()}
    print("| episodes per step | turns x tokens | tokens sampled per step (rlreason / TRL) | rlreason step (s) | "
          "TRL step (s) | TRL / rlreason |\n|---|---|---|---|---|---|")
    print(f"| {args.prompts} x {args.group} | {args.turns} x {args.tokens} | {results['ours']['sampled_tokens']:.0f} / "
          f"{results['trl']['sampled_tokens']:.0f} | {medians['ours']:.2f} | {medians['trl']:.2f} | "
          f"**{medians['trl'] / medians['ours']:.2f}x** |")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "median_step_s": medians, **results}, indent=1))


if __name__ == "__main__":
    main()
