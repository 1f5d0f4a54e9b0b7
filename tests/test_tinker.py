"""`rlreason serve-api` speaks Tinker's protocol: an unmodified tinker-cookbook RL loop (PyPI tinker-cookbook 0.6.1,
its math_rl recipe, pointed at the server by its base URL) trains 2 steps on the tiny model; the tinker SDK (0.38)
gets one clear error for a second training client and for a call the server does not serve. Real server, Ray,
vLLM and learners; the cookbook runs in its own process as a user would run it."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from rlreason.models.tiny import default_model_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"serve-api exited with {server.returncode}: {server.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/v1/healthz", timeout=2):
                return
        except OSError:
            time.sleep(1)
    pytest.fail("serve-api did not answer within 3 minutes")


@pytest.fixture()
def server(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rlreason.cli", "serve-api", "--model", "tiny", "--lora-rank", "8",
                             "--port", str(port), f"output.run={tmp_path / 'run'}"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_an_unmodified_tinker_cookbook_rl_loop_trains_against_serve_api(server, tmp_path):
    import tinker

    env = {**os.environ, "TINKER_API_KEY": "tml-local", "TINKER_TELEMETRY": "0", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1"}
    log = tmp_path / "cookbook"
    run = subprocess.run(
        [sys.executable, "-m", "tinker_cookbook.recipes.math_rl.train", "env=arithmetic",
         f"model_name={default_model_path()}", "renderer_name=role_colon", "lora_rank=8", "group_size=4",
         "groups_per_batch=4", "max_tokens=8", "max_steps=2", "eval_every=0", "save_every=0",
         "loss_fn=importance_sampling", f"base_url={server}", f"log_path={log}", "behavior_if_log_dir_exists=delete"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "Training completed successfully" in run.stdout + run.stderr
    steps = [json.loads(x) for x in (log / "metrics.jsonl").read_text().splitlines()]
    trained = [s for s in steps if "optim/kl_sample_train_v2" in s]
    assert len(trained) == 2
    # the learner's logprobs of what the engines sampled agree with the engines' (the cookbook measures it)
    assert all(abs(s["optim/kl_sample_train_v2"]) < 0.02 for s in trained)
    ours = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in ours if x["kind"] == "train"] == [1, 2]  # two optimizer steps, on rlreason's side
    # one training client per run; and a call outside what is served: one clear error each, at once
    os.environ.setdefault("TINKER_API_KEY", "tml-local")
    service = tinker.ServiceClient(base_url=server)
    start = time.monotonic()
    with pytest.raises(Exception, match="already has a training client"):
        service.create_lora_training_client(base_model=str(default_model_path()), rank=8).result().get_info()
    with pytest.raises(Exception, match="rlreason serve-api does not support"):
        service.create_rest_client().list_training_runs().result()
    assert time.monotonic() - start < 30


def test_the_tinker_sdk_trains_samples_and_checkpoints_against_serve_api(server):
    import tinker
    from tinker import types

    os.environ.setdefault("TINKER_API_KEY", "tml-local")
    service = tinker.ServiceClient(base_url=server)
    training = service.create_lora_training_client(base_model=str(default_model_path()), rank=8).result()
    tok = training.get_tokenizer()  # the local model's, no hub
    seq = tok.encode("12+34=46\n", add_special_tokens=False)
    weights = [0.0] * 5 + [1.0] * (len(seq) - 6)
    sl = types.Datum(model_input=types.ModelInput.from_ints(seq[:-1]),
                     loss_fn_inputs={"target_tokens": seq[1:], "weights": weights})
    losses = []
    for _ in range(4):  # supervised: Tinker's cross_entropy is -sum(weights * logprobs), and it learns
        out = training.forward_backward([sl, sl], "cross_entropy").result()
        lp = out.loss_fn_outputs[0]["logprobs"].tolist()
        assert out.metrics["loss:sum"] == pytest.approx(-2 * sum(w * x for w, x in zip(weights, lp)), rel=1e-4)
        losses.append(out.metrics["loss:sum"])
        training.optim_step(types.AdamParams(learning_rate=1e-2)).result()
    assert losses[-1] < losses[0]
    state = training.save_state("here").result().path
    sampler = training.save_weights_and_get_sampling_client().result()
    prompt = types.ModelInput.from_ints(tok.encode("12+34=", add_special_tokens=False))
    params = types.SamplingParams(max_tokens=6, temperature=1.0, stop=["\n"])
    results = [f.result() for f in [sampler.sample(prompt=prompt, num_samples=2, sampling_params=params)
                                    for _ in range(4)]]  # (concurrent requests: one batch in the engines)
    s = results[0].sequences[0]
    assert len({q.sequence_id for r in results for q in r.sequences}) == 8
    # RL datum as the cookbook builds it: the learner's logprobs of the sampled tokens are the engine's
    n = prompt.length - 1
    rl = types.Datum(model_input=prompt.append(types.EncodedTextChunk(tokens=list(s.tokens[:-1]))), loss_fn_inputs={
        "target_tokens": [0] * n + list(s.tokens), "logprobs": [0.0] * n + list(s.logprobs),
        "advantages": [0.0] * n + [1.0] * len(s.tokens)})
    learner = training.forward([rl], "importance_sampling").result().loss_fn_outputs[0]["logprobs"].tolist()[n:]
    assert max(abs(a - b) for a, b in zip(learner, s.logprobs)) < 0.05
    before = sampler.compute_logprobs(prompt).result()
    training.forward_backward([rl], "ppo").result()
    training.optim_step(types.AdamParams(learning_rate=5e-2)).result()
    moved = training.save_weights_and_get_sampling_client().result().compute_logprobs(prompt).result()
    training.load_state(state).result()  # back to the saved state
    again = training.save_weights_and_get_sampling_client().result().compute_logprobs(prompt).result()
    assert moved[1:] != pytest.approx(before[1:], abs=1e-4) and again[1:] == pytest.approx(before[1:], abs=1e-4)
    with pytest.raises(Exception, match="does not support loss_fn 'dro'"):
        training.forward_backward([rl], "dro").result()
    # a sampler for weights this server never saved: refused, nothing served by mistake
    with pytest.raises(Exception, match="not a sampler path this server returned"):
        service.create_sampling_client(model_path="tinker://elsewhere/sampler_weights/x").sample(
            prompt=prompt, num_samples=1, sampling_params=params).result()
