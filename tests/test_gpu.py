"""The learner's CUDA path (``-m gpu``; deselected by default, skipped without a CUDA device). On a GPU machine:
``bash benchmarks/gpu_check.sh`` (PyTorch, transformers and peft needed; no vLLM, no Ray).

- a training step in bfloat16 with float32 logits: finite, the weights move, logits really float32;
- logprob parity: the CUDA learner's logprobs against the float32 CPU computation of the same weights;
- a two-process learner group on one device makes the update one learner makes.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from rlreason.batching import build_train_batch
from rlreason.recipe import load_config
from rlreason.learner.learner import Learner
from tests.batches import good_and_bad_groups

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
GPU = ["train.gpus_per_learner=1"]


def _batch(path: str, cfg, n: int = 6):
    return build_train_batch(good_and_bad_groups(AutoTokenizer.from_pretrained(path), n=n), cfg.algorithm)


def test_bf16_step_with_fp32_logits_on_cuda(tiny_model_path):
    from rlreason.learner.logprobs import policy_forward

    cfg = load_config(None, [*GPU, "model.dtype=bfloat16", "train.fp32_logits=true"])
    learner = Learner(cfg)
    assert learner.device.type == "cuda"
    batch = _batch(tiny_model_path, cfg)
    before = [p.detach().clone() for p in learner.params]
    stats = learner.train_step(batch)
    assert torch.isfinite(torch.tensor(stats.metrics["loss"])) and stats.metrics["grad_norm"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, learner.params))
    ids = batch.input_ids.cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = policy_forward(learner.model, ids, torch.ones_like(ids), False, True)
    assert out.logprobs.dtype == torch.float32


@pytest.mark.parametrize("dtype, tolerance", [("float32", 2e-4), ("bfloat16", 0.1)])
def test_cuda_logprobs_match_the_float32_cpu_computation(tiny_model_path, dtype, tolerance):
    cpu = Learner(load_config(None, ["model.dtype=float32"]))
    gpu = Learner(load_config(None, [*GPU, f"model.dtype={dtype}"]))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    prompt, completion = tokenizer.encode("12+30="), tokenizer.encode("42 #### 42")
    want = torch.tensor(cpu.sequence_logprobs(prompt, completion))
    got = torch.tensor(gpu.sequence_logprobs(prompt, completion))
    assert (got - want).abs().max() < tolerance


def _rank(rank: int, port: int, path: str, out) -> None:
    cfg = load_config(None, [*GPU, "train.learners=2", "train.gpus_per_learner=0.5"])
    learner = Learner(cfg, rank=rank, world=2)
    learner.join("127.0.0.1", port)
    stats = learner.train_step(_batch(path, cfg, n=5))
    out.put((rank, stats.metrics["loss"], [p.detach().cpu() for p in learner.params]))
    learner.dp.leave()


def test_two_learner_processes_on_one_device_make_the_update_of_one(tiny_model_path):
    import torch.multiprocessing as mp

    from rlreason.learner.group import free_port

    cfg = load_config(None, GPU)
    alone = Learner(cfg)
    loss = alone.train_step(_batch(tiny_model_path, cfg, n=5)).metrics["loss"]
    want = [p.detach().cpu() for p in alone.params]
    ctx = mp.get_context("spawn")
    queue, port = ctx.Queue(), free_port()
    procs = [ctx.Process(target=_rank, args=(r, port, tiny_model_path, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    for _, got_loss, params in results:
        assert got_loss == pytest.approx(loss, rel=1e-3)
        for a, b in zip(params, want):
            torch.testing.assert_close(a, b, rtol=0, atol=5e-5)


def test_es_members_and_updates_stay_on_the_mean_adapters_device():
    """A collective push leaves the engine's adapter on the GPU: members and updates are built there."""
    from rlreason.algorithms.es import member_seeds, normalized, perturbed, update

    mean = {"x.lora_A.weight": torch.zeros(4, 8, device="cuda"), "x.lora_B.weight": torch.zeros(8, 4, device="cuda")}
    member = perturbed(mean, 3, -1, 0.01)
    assert all(t.device.type == "cuda" for t in member.values())
    members = member_seeds(0, 1, 4, True)
    new, norm = update(mean, members, normalized([0.1, 0.4, 0.2, 0.3], "zscore"), 0.01)
    assert all(t.device.type == "cuda" for t in new.values()) and norm > 0
