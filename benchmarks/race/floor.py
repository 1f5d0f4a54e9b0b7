"""The floor: what a plain implementation costs per step on a race workload (run as its own process).

    python -m benchmarks.race.floor --workload 107m --steps 4 --out R.json

One process, no Ray, no scoring: a bare in-process ``vllm.LLM`` (fp32, both cores, as rlreason's engines are set
up) generates the step's completions (``n=group`` per prompt), then plain PyTorch runs one forward, backward and
AdamW step of a policy-gradient loss on exactly those sequences (one batch, no micro-batching), and the new weights
are not pushed back. Writes per-step generation and update times and generated tokens.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    from rlreason.rollout.engine import cpu_engine_env

    for key, value in cpu_engine_env(0, 1, 1).items():
        os.environ.setdefault(key, value)
    import torch
    import vllm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from benchmarks.race.workloads import WORKLOADS
    from rlreason.tasks import get_task

    w = WORKLOADS[args.workload]
    model_dir = w.model_dir()
    llm = vllm.LLM(model=model_dir, dtype="float32", max_model_len=256, enforce_eager=True,
                   distributed_executor_backend="uni", seed=0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=w.lr, betas=(0.9, 0.99), weight_decay=0.0)
    params = vllm.SamplingParams(n=w.group, max_tokens=w.max_tokens, temperature=1.0, ignore_eos=w.ignore_eos,
                                 logprobs=0)
    stream = get_task("arithmetic").train_problems(0, None)
    out = {"gen_s": [], "update_s": [], "gen_tokens": []}
    for _ in range(args.steps):
        prompts = [tokenizer.encode(p.prompt) for p in itertools.islice(stream, w.prompts)]
        start = time.perf_counter()
        results = llm.generate([{"prompt_token_ids": ids} for ids in prompts], params, use_tqdm=False)
        out["gen_s"].append(time.perf_counter() - start)
        rows = [(r.prompt_token_ids, list(o.token_ids)) for r in results for o in r.outputs]
        out["gen_tokens"].append(sum(len(c) for _, c in rows))
        start = time.perf_counter()
        update(model, optimizer, rows)
        out["update_s"].append(time.perf_counter() - start)
    with open(args.out, "w") as f:
        json.dump(out, f)


def update(model, optimizer, rows) -> None:
    """One REINFORCE-shaped step (random +-1 advantages: the cost, not the learning, is measured)."""
    import torch

    width = max(len(p) + len(c) for p, c in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width))
    for i, (p, c) in enumerate(rows):
        ids[i, : len(p) + len(c)] = torch.tensor(p + c)
        attention[i, : len(p) + len(c)] = 1
        mask[i, len(p): len(p) + len(c)] = 1.0
    advantages = torch.randint(0, 2, (len(rows), 1)).float() * 2 - 1
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1]
    logp = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
    loss = -(logp * advantages * mask[:, 1:]).sum() / mask.sum()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


if __name__ == "__main__":
    main()
