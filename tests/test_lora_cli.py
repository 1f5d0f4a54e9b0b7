"""LoRA from the command line, through the real stack (Ray, a vLLM engine actor, the learner actor)."""

import json
import subprocess
import sys


def _cli(*args, cwd, timeout=600):
    return subprocess.run([sys.executable, "-m", "rlreason.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_lora_run_pushes_only_the_adapter_saves_it_and_merges(tmp_path):
    proc = _cli("train", "model.lora.rank=8", "train.lr=0.002", "train.steps=2", "rollout.prompts_per_step=4",
                "rollout.group_size=4", "eval.before=false", "eval.after=false", "output.tensorboard=false",
                "train.kl_to_ref_every=1", "name=lora", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "lora"
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if s["kind"] == "train"]
    assert [s["policy_version"] for s in steps] == [1, 2]
    tiny_full_bytes = 3_200_000  # the tiny model in float32; its rank-8 adapter is ~10% of it
    assert all(0 < s["weight_sync_bytes"] < tiny_full_bytes / 5 for s in steps), [s["weight_sync_bytes"] for s in steps]
    for key in ("kl_to_ref", "lora/effective_rank", "lora/dormant_frac", "lora/component_grad_norm_mean"):
        assert key in steps[-1], key
    final = run / "final"
    config = json.loads((final / "adapter_config.json").read_text())
    assert config["r"] == 8 and (final / "adapter_model.safetensors").is_file()
    merged = _cli("merge", str(final), "--out", str(tmp_path / "merged"), cwd=tmp_path, timeout=300)
    assert merged.returncode == 0, merged.stderr[-2000:]
    assert (tmp_path / "merged" / "config.json").is_file() and (tmp_path / "merged" / "tokenizer.json").is_file()
    bad = _cli("merge", str(tmp_path), "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: adapter: no PEFT adapter directory")
