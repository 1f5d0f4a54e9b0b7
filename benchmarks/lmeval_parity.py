"""GSM8K accuracy from lm-eval (an independent harness) and from ``rlreason eval``, on the same problems, model,
prompts and greedy decoding, per answer protocol, with per-problem agreement.

    pip install lm-eval==0.4.13          # (the `parity` extra)
    python -m benchmarks.lmeval_parity --data-dir DIR [--model smollm2] [--limit 100] [--out docs/lmeval_parity]

lm-eval runs its Hugging Face backend on a task written here: GSM8K's test split read from DIR, the prompt
rlreason uses (the question, then "Solve the problem step by step. Put the final answer in \\boxed{}.") in the
model's chat template, greedy, rlreason's generation budget (GSM8K's 512 tokens), and three filters: lm-eval's
own two GSM8K filters, ``strict-match`` (the first ``#### N``) and ``flexible-extract`` (the last number), and
``boxed`` (the last ``\\boxed{N}``: what the prompt asks for, rlreason's strict protocol reads it first).
rlreason evaluates through its vLLM engines. Printed: accuracy of each protocol on both sides with a 95% interval,
the share of problems where both sides give the same verdict, and where their completions are the same text
(greedy decoding in two engines diverges only where floating-point ties break differently).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

INSTRUCTION = "Solve the problem step by step. Put the final answer in \\boxed{}."
FILTERS = {  # lm-eval's GSM8K filters (tasks/gsm8k/gsm8k.yaml), and a boxed one for the prompt's own format
    "strict-match": {"regex_pattern": "#### (\\-?[0-9\\.\\,]+)", "group_select": 0},
    "flexible-extract": {"regex_pattern": "(-?[$0-9.,]{2,})|(-?[0-9]+)", "group_select": -1},
    "boxed": {"regex_pattern": "\\\\boxed\\{(-?[$0-9.,]+)\\}", "group_select": -1},
}


def lmeval_task(data_dir: str, max_tokens: int) -> dict:
    """The lm-eval task config (a YAML mapping): our prompt, GSM8K's references, lm-eval's metric and filters."""
    return {
        "task": "gsm8k_rlreason", "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(Path(data_dir) / "gsm8k" / "test.jsonl")}},
        "test_split": "test", "output_type": "generate_until",
        "doc_to_text": "{{question}}\n" + INSTRUCTION.replace("{}", "{{'{}'}}") + "\n",
        "doc_to_target": "{{answer.split('####')[-1].strip()}}", "target_delimiter": "",
        "generation_kwargs": {"until": [], "do_sample": False, "max_gen_toks": max_tokens},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                         "ignore_case": True, "ignore_punctuation": False,
                         "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"]}],
        "filter_list": [{"name": name, "filter": [{"function": "regex", **spec}, {"function": "take_first"}]}
                        for name, spec in FILTERS.items()],
        "num_fewshot": 0, "metadata": {"version": 1.0},
    }


def run_lmeval(model_dir: str, data_dir: str, limit: int, max_tokens: int, batch: int, work: Path) -> list[dict]:
    """lm-eval's per-problem samples (doc, filtered answers, exact_match per filter), in document order."""
    import yaml

    tasks = work / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    (tasks / "gsm8k_rlreason.yaml").write_text(yaml.safe_dump(lmeval_task(data_dir, max_tokens)))
    cmd = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
           f"pretrained={model_dir},dtype=float32", "--tasks", "gsm8k_rlreason", "--include_path", str(tasks),
           "--limit", str(limit), "--batch_size", str(batch), "--apply_chat_template", "--log_samples",
           "--output_path", str(work / "lmeval"), "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"lm-eval failed:\n{proc.stderr[-4000:]}")
    found = sorted((work / "lmeval").rglob("samples_gsm8k_rlreason_*.jsonl"))
    rows = [json.loads(line) for line in found[-1].read_text().splitlines()]
    by_doc: dict[int, dict] = {}
    for row in rows:  # one line per (document, filter)
        entry = by_doc.setdefault(row["doc_id"], {"doc": row["doc"], "text": row["resps"][0][0],
                                                  "prompt": row["arguments"]["gen_args_0"]["arg_0"]})
        entry[row["filter"]] = bool(row["exact_match"])
    return [by_doc[i] for i in sorted(by_doc)]


def run_rlreason(model: str, data_dir: str, limit: int, work: Path) -> list[dict]:
    cmd = [sys.executable, "-m", "rlreason.cli", "eval", model, "--task", "gsm8k", "--limit", str(limit),
           "--n", "1", "--k", "1", "--temperature", "0", "--out", str(work / "rlreason"),
           "--set", f"tasks.data_dir={data_dir}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"rlreason eval failed:\n{proc.stderr[-4000:]}")
    rows = [json.loads(line) for line in (work / "rlreason" / "problems.jsonl").read_text().splitlines()]
    return [{"id": r["id"], "prompt": r["prompt"], "text": r["completions"][0]["text"],
             "strict": bool(r["completions"][0]["correct"]),
             "flexible": bool(r["completions"][0]["protocols"].get("flexible")),
             "truncated": r["completions"][0]["finish_reason"] == "length"} for r in rows]


def same_prompts(model_dir: str, ours: list[dict], theirs: list[dict]) -> int:
    """How many problems lm-eval put to the model as the exact text rlreason's engines render (the chat template
    around our prompt, ready for the assistant's turn)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    render = lambda prompt: tokenizer.apply_chat_template([{"role": "user", "content": prompt}],  # noqa: E731
                                                          add_generation_prompt=True, tokenize=False)
    return sum(render(o["prompt"]) == t["prompt"] for o, t in zip(ours, theirs))


def interval(flags: list[bool]) -> str:
    p = sum(flags) / len(flags)
    return f"{p:.3f} +- {1.96 * math.sqrt(p * (1 - p) / len(flags)):.3f}"


def report(ours: list[dict], theirs: list[dict]) -> tuple[str, dict]:
    n = min(len(ours), len(theirs))
    ours, theirs = ours[:n], theirs[:n]
    same_text = sum(o["text"].strip() == t["text"].strip() for o, t in zip(ours, theirs))
    pairs = [("strict (rlreason: last \\boxed{}, else ####)", "strict", "boxed"),
             ("strict (lm-eval's own: first #### N)", None, "strict-match"),
             ("flexible (the last number)", "flexible", "flexible-extract")]
    lines = [f"GSM8K test, first {n} problems, greedy, one completion each", "",
             "| protocol | rlreason | lm-eval | same verdict |", "|---|---|---|---|"]
    data = {"problems": n, "same_completion_text": same_text, "protocols": {}}
    for label, mine, other in pairs:
        lm = [t.get(other, False) for t in theirs]
        rl = [o[mine] for o in ours] if mine else None
        agree = f"{sum(a == b for a, b in zip(rl, lm))}/{n}" if rl else "-"
        lines.append(f"| {label} | {interval(rl) if rl else '-'} | {interval(lm)} ({other}) | {agree} |")
        data["protocols"][label] = {"rlreason": None if rl is None else sum(rl) / n, "lm_eval": sum(lm) / n,
                                    "lm_eval_filter": other, "agree": agree}
    cut = sum(o["truncated"] for o in ours)
    lines += ["", f"completions with the same text on both sides: {same_text}/{n}; rlreason completions cut at "
              f"the length limit: {cut}/{n}"]
    return "\n".join(lines), data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--model", default="smollm2", help="smollm2 or a Hugging Face model directory")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16, help="lm-eval's batch size")
    parser.add_argument("--out", default=None, help="folder for parity.md and parity.json")
    args = parser.parse_args()
    from rlreason.recipe import load_config

    cfg = load_config(None, [f"model.path={args.model}", "tasks.eval=[gsm8k]", f"tasks.data_dir={args.data_dir}"])
    with tempfile.TemporaryDirectory(prefix="rlreason-parity-") as tmp:
        work = Path(tmp)
        ours = run_rlreason(args.model, args.data_dir, args.limit, work)
        theirs = run_lmeval(cfg.model.resolved_path(), args.data_dir, args.limit, cfg.rollout.max_tokens,
                            args.batch, work)
        text, data = report(ours, theirs)
    same = same_prompts(cfg.model.resolved_path(), ours, theirs)
    text += f"\nprompts identical on both sides (our chat-templated text against lm-eval's): {same}/{data['problems']}"
    data["same_prompts"] = same
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "parity.md").write_text(text + "\n")
        (out / "parity.json").write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
