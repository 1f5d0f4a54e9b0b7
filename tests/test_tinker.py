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
