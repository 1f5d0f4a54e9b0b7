"""Supervised pre-training of the embedded tiny model on the synthetic tasks (``rlreason pretrain-tiny``).

A plain next-token loop on (prompt, worked solution) pairs, loss on the solution only. It is deliberately short:
the shipped model should solve some problems at temperature 1 (5-60%) and leave the rest to RL. The shipped
weights came from the defaults below; ``TRAINING.md`` beside them records the command.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rlreason.tasks import get_task
from rlreason.models.tiny.tokenizer import build_tokenizer



@dataclass(frozen=True)
class PretrainConfig:
    seed: int = 0
    steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 50
    # the environments' own tasks teach the embedded model their formats: a calculator it calls in some of its
    # worked examples (the rest answer directly), and the guessing game's binary search
    task_mix: tuple = (("arithmetic", 0.6), ("programs", 0.25), ("calculator", 0.1), ("guess", 0.05))
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 384
    # Label smoothing keeps some probability off the target token, so sampling at temperature 1 makes mistakes
    # that greedy decoding does not: headroom that RL can recover by sharpening, as it does on real models.
    label_smoothing: float = 0.05


def build_model(cfg: PretrainConfig, vocab_size: int, pad_id: int, eos_id: int):
    # Llama, not Qwen2: transformers 5 replaces the tokenizer of any "qwen2" checkpoint with Qwen2's byte-level
    # pre-tokenizer, which drops our newlines. Llama is also SmolLM2's architecture.
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=256, tie_word_embeddings=True, pad_token_id=pad_id, eos_token_id=eos_id,
        bos_token_id=eos_id, torch_dtype="float32",
    )
    return LlamaForCausalLM(config)


def _segments(tokenizer, solution) -> tuple[list[int], list[int]]:
    """A worked solution's ids and labels: a string is all the model's; an environment's transcript is (text, the
    model's?) segments, the environment's text context only (label -100)."""
    parts = [(solution, True)] if isinstance(solution, str) else solution
    ids, labels = [], []
    for text, model in parts:
        encoded = tokenizer.encode(text)
        ids += encoded
        labels += encoded if model else [-100] * len(encoded)
    return ids + [tokenizer.eos_token_id], labels + [tokenizer.eos_token_id]


def _batches(cfg: PretrainConfig, tokenizer):
    """Endless padded batches: input_ids [B, T], labels [B, T] (-100 on prompt, environment text and padding)."""
    import rlreason.envs  # noqa: F401  (the environments' own tasks: calculator, guess)

    streams, weights = [], []
    for name, weight in cfg.task_mix:
        task = get_task(name)
        streams.append(task.examples(cfg.seed))
        weights.append(weight)
    rng = random.Random(cfg.seed)
    while True:
        rows = []
        for _ in range(cfg.batch_size):
            problem, solution = next(rng.choices(streams, weights)[0])
            p = tokenizer.encode(problem.prompt)
            c, labels = _segments(tokenizer, solution)
            rows.append((p + c, [-100] * len(p) + labels))
        width = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_token_id)
        labels = torch.full((len(rows), width), -100)
        for i, (x, y) in enumerate(rows):
            ids[i, : len(x)], labels[i, : len(y)] = torch.tensor(x), torch.tensor(y)
        yield ids, labels


def pretrain(cfg: PretrainConfig, out_dir: str | Path, log=print) -> Path:
    """Train from scratch and save a Hugging Face directory (weights, tokenizer, TRAINING.md) to ``out_dir``."""
    torch.manual_seed(cfg.seed)
    tokenizer = build_tokenizer()
    model = build_model(cfg, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.98))
    schedule = lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * s / cfg.steps))  # noqa
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    start = time.time()
    for step, (ids, labels) in zip(range(cfg.steps), _batches(cfg, tokenizer)):
        logits = model(input_ids=ids, attention_mask=(ids != tokenizer.pad_token_id).long()).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                                 ignore_index=-100, label_smoothing=cfg.label_smoothing)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(), sched.step(), opt.zero_grad()
        if step % 50 == 0 or step == cfg.steps - 1:
            log(f"step {step:5d}  loss {loss.item():.4f}  {time.time() - start:.0f}s")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.max_new_tokens = 48  # its solutions' budget: rollout.max_tokens when a recipe says null
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    _write_card(out, cfg, model)
    return out


def _write_card(out: Path, cfg: PretrainConfig, model) -> None:
    params = sum(p.numel() for p in model.parameters())
    (out / "TRAINING.md").write_text(
        "# rlreason tiny reasoner\n\n"
        f"Llama architecture, {params:,} parameters, character tokenizer, fp32.\n"
        "Trained from scratch by `rlreason pretrain-tiny` on the project's synthetic tasks; reproduce with:\n\n"
        f"    rlreason pretrain-tiny --out DIR --steps {cfg.steps} --seed {cfg.seed}\n\n"
        f"Settings:\n\n```json\n{json.dumps(asdict(cfg), indent=2)}\n```\n")


def sample_accuracy(model_dir: str | Path, task: str, n: int = 200, temperature: float = 1.0,
                    max_new_tokens: int = 64, seed: int = 0) -> float:
    """Held-out accuracy of a saved model with Hugging Face sampling (no vLLM needed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlreason.verifiers import get_verifier

    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    problems = get_task(task).eval_problems(n)
    torch.manual_seed(seed)
    correct = 0
    for chunk in (problems[i: i + 100] for i in range(0, len(problems), 100)):
        enc = tok([p.prompt for p in chunk], return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**enc, do_sample=temperature > 0, temperature=temperature or None, top_k=0,
                                 max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
        texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        correct += sum(get_verifier(p.verifier)(t, p).correct for p, t in zip(chunk, texts))
    return correct / len(problems)
