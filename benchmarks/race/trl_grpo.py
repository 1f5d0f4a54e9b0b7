"""The peer: TRL's GRPOTrainer on a race workload, timed from outside its loop (run as its own process).

    python -m benchmarks.race.trl_grpo --workload tiny --steps 8 --t0 UNIX_TIME --out R.json --save DIR
                                       [--vllm] [--bf16]

Same model, prompts (the arithmetic task's training stream of the run's seed), group size, completion length,
learning rate (constant, AdamW betas 0.9/0.99 as rlreason's default), KL-free GRPO with the paper's per-sequence
token mean (``loss_type="grpo"``, rlreason's default aggregation; TRL's own default is DAPO's token mean), rewards
from the same verifier (through
``rlreason.integrations.trl.reward_function``). Generation: Hugging Face ``generate`` (default) or TRL's colocated
vLLM (``--vllm``), which on vLLM-CPU needs two fixes here: fp32 (vLLM would turn the fp32 checkpoint into bf16,
~2.5x slower on this CPU) and a weight sync through the worker's ``reload_weights`` (its ``load_weights`` fails
after the CPU backend repacks the parameters). Writes per-step wall times, the generation time and tokens of each
step, and start-up (from ``--t0``, the parent's clock when it launched this process, to the first step).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time


def _patch_vllm_for_cpu() -> None:
    import trl.generation.vllm_generation as vg

    real_llm = vg.LLM

    def llm(*args, **kwargs):
        kwargs.update(dtype="float32", enforce_eager=True)
        return real_llm(*args, **kwargs)

    def sync_weights(self):
        worker = self.llm.llm_engine.model_executor.driver_worker.worker
        worker.reload_weights(weights_iterator=((n, p.data) for n, p in self._iter_named_params()),
                              is_checkpoint_format=True)
        self.llm.reset_prefix_cache()

    vg.LLM = llm
    vg.VLLMGeneration.sync_weights = sync_weights


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--t0", type=float, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--save", required=True)
    parser.add_argument("--vllm", action="store_true")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast in training (weights stay fp32)")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (rlreason's with seed=N draws the same "
                        "prompts: the task's stream of that seed)")
    args = parser.parse_args()

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOTrainer

    from benchmarks.race.workloads import WORKLOADS
    from rlreason.integrations.trl import reward_function
    from rlreason.tasks import get_task

    w = WORKLOADS[args.workload]
    if args.vllm:
        _patch_vllm_for_cpu()
    model_dir = w.model_dir()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    problems = list(itertools.islice(get_task("arithmetic").train_problems(args.seed, None), w.prompts * args.steps))
    dataset = Dataset.from_list([{"prompt": p.prompt, "reference": p.reference} for p in problems])
    config = grpo_config(args, w)
    reward = reward_function(problems[0].verifier, workers=1)
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=config, train_dataset=dataset,
                          processing_class=tokenizer)
    clock = StepClock()
    trainer.add_callback(clock.callback(TrainerCallback))
    real_generate = trainer._generate_single_turn

    def timed_generate(*a, **kw):
        start = time.perf_counter()
        completion_ids, logprobs = real_generate(*a, **kw)
        clock.generation.append((time.perf_counter() - start, sum(len(c) for c in completion_ids)))
        return completion_ids, logprobs

    trainer._generate_single_turn = timed_generate
    trainer.train()
    trainer.save_model(args.save)
    tokenizer.save_pretrained(args.save)
    reward.close()
    result = {"step_s": clock.steps, "startup_s": clock.first_begin - args.t0,
              "gen_s": [g for g, _ in clock.generation], "gen_tokens": [n for _, n in clock.generation]}
    with open(args.out, "w") as f:
        json.dump(result, f)


def grpo_config(args, w):
    """TRL's GRPOConfig for the workload: the race's shared settings (see the module's docstring)."""
    from trl import GRPOConfig

    fixed = ({"ignore_eos": True} if args.vllm else {"min_new_tokens": w.max_tokens}) if w.ignore_eos else None
    return GRPOConfig(
        output_dir=f"{args.save}-trainer", per_device_train_batch_size=w.prompts * w.group, num_generations=w.group,
        max_completion_length=w.max_tokens, learning_rate=w.lr, lr_scheduler_type="constant", warmup_steps=0,
        adam_beta1=0.9, adam_beta2=0.99, weight_decay=0.0, max_grad_norm=1.0, max_steps=args.steps, beta=0.0,
        temperature=1.0, top_p=1.0, shuffle_dataset=False, seed=args.seed, loss_type="grpo", logging_steps=1,
        report_to=[], save_strategy="no", use_cpu=True, bf16=args.bf16, dataloader_num_workers=0,
        generation_kwargs=fixed, use_vllm=args.vllm, vllm_mode="colocate",
        vllm_max_model_length=256 if args.vllm else None)


class StepClock:
    """Wall time of each optimizer step (TrainerCallback's step begin/end) and of each generation call."""

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.generation: list[tuple[float, int]] = []
        self.first_begin = None
        self._begin = 0.0

    def callback(self, base):
        clock = self

        class Clock(base):
            def on_step_begin(self, args, state, control, **kw):
                clock._begin = time.perf_counter()
                if clock.first_begin is None:
                    clock.first_begin = time.time()

            def on_step_end(self, args, state, control, **kw):
                clock.steps.append(time.perf_counter() - clock._begin)

        return Clock()


if __name__ == "__main__":
    main()
