"""Running on a Ray cluster started apart from the run, as a user would: ``ray start --head`` plus a second node
(token authentication on, Ray 2.60's default), ``rlreason train --ray-address``, each role placed on the node that
holds its custom resource; afterwards no process is left, and a plain ``rlreason train`` next to the stopped
cluster's address file starts its own instance. Placement the cluster cannot give stops the run with one line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from rlreason.recipe import RecipeError, load_config
from rlreason.recipe.resources import PlacementError, check_cluster

BIN = Path(sys.executable).parent
QUICK = ["train.steps=1", "eval.before=false", "eval.after=false", "output.tensorboard=false"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(ray_tmp: Path | None = None) -> dict:
    """A new user's shell (no Ray variables); Ray's files under ``ray_tmp`` (short: its socket paths live there)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "RAY_USAGE_STATS_ENABLED": "0", **({"RAY_TMPDIR": str(ray_tmp)} if ray_tmp else {})}


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "ray"), "start", *args, "--block"], env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _wait_nodes(address: str, env: dict, n: int, timeout_s: float = 90.0) -> list[dict]:
    """The cluster's alive nodes (id and resources), once there are ``n``."""
    probe = ("import json, ray; ray.init(address=%r, log_to_driver=False); print(json.dumps([{'id': n['NodeID'], "
             "'resources': n['Resources']} for n in ray.nodes() if n['Alive']]))" % address)
    deadline = time.monotonic() + timeout_s
    while True:
        out = subprocess.run([sys.executable, "-c", probe], env={**env, "RAY_AUTH_MODE": "token"},
                             capture_output=True, text=True, timeout=120)
        nodes = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else []
        if len(nodes) >= n or time.monotonic() > deadline:
            return nodes
        time.sleep(2)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _leftovers(marker: str) -> list[str]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if marker in " ".join(p.info["cmdline"] or []):
                found.append(" ".join(p.info["cmdline"])[:120])
        except psutil.Error:
            pass
    return found


@pytest.mark.slow  # (51 s: two Ray nodes started and stopped; the cluster's placement is checked fast below)
def test_train_on_a_two_node_cluster_then_alone_next_to_its_stale_address(tmp_path):
    ray_tmp = Path(f"/tmp/rlr{os.getpid()}")
    ray_tmp.mkdir(exist_ok=True)
    env, port = _env(ray_tmp), _free_port()
    address = f"127.0.0.1:{port}"
    head = _start(["--head", f"--port={port}", "--num-cpus=1", '--resources={"learner_node": 1}',
                   "--include-dashboard=false"], env, tmp_path / "head.log")
    nodes = _wait_nodes(address, env, 1)
    # a worker node joins a token-authenticated head with the token mode on (the token: ~/.ray/auth_token)
    second = _start([f"--address={address}", "--num-cpus=2", '--resources={"rollout_node": 1}'],
                    {**env, "RAY_AUTH_MODE": "token"}, tmp_path / "node2.log")
    try:
        nodes = _wait_nodes(address, env, 2)
        assert len(nodes) == 2, (tmp_path / "node2.log").read_text()[-2000:]
        by_resource = {name: n["id"] for n in nodes for name in ("learner_node", "rollout_node")
                       if name in n["resources"]}
        run = subprocess.run([str(BIN / "rlreason"), "train", "--ray-address", address, *QUICK,
                              "rollout.resources={rollout_node: 1}", "train.resources={learner_node: 1}"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
        where = json.loads((tmp_path / "runs" / "tiny-grpo" / "placement.json").read_text())
        assert where["rollout-0"]["node_id"] == by_resource["rollout_node"]
        assert where["learner-0"]["node_id"] == by_resource["learner_node"]
        summary = json.loads((tmp_path / "runs" / "tiny-grpo" / "summary.json").read_text())
        assert summary["peak_memory_gib"] > 1.0  # the actors count too (the driver alone is ~0.4 GiB)
    finally:
        _stop(second)
        _stop(head)
    assert _leftovers(str(ray_tmp)) == []
    assert (ray_tmp / "ray" / "ray_current_cluster").is_file()  # the stopped cluster's address stays behind
    alone = subprocess.run([str(BIN / "rlreason"), "train", *QUICK, "output.save_model=false"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=600)
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert _leftovers(str(ray_tmp)) == []
    shutil.rmtree(ray_tmp, ignore_errors=True)


def test_an_address_where_nothing_listens_fails_at_once_in_one_line(tmp_path):
    start = time.monotonic()
    run = subprocess.run([str(BIN / "rlreason"), "train", "--ray-address", f"127.0.0.1:{_free_port()}", *QUICK],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ray.address: nothing answers at 127.0.0.1:") and "ray start --head" in line
    assert time.monotonic() - start < 60  # (Ray alone retries for minutes)
    assert not (tmp_path / "runs" / "tiny-grpo").exists()


def test_more_gpus_than_the_cluster_has_exit_2_before_anything_starts(tmp_path):
    run = subprocess.run([str(BIN / "rlreason"), "train", *QUICK, "rollout.gpus_per_worker=1", "ray.num_cpus=2"],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.strip().splitlines()[-1] == (
        "error: rollout.gpus_per_worker / train.gpus_per_learner: the run needs 1 GPU (1 rollout worker(s) x "
        "{CPU: 1, GPU: 1} + 1 learner(s) x {CPU: 1}); the cluster has 0")
    assert not (tmp_path / "runs" / "tiny-grpo").exists()  # nothing written


NODE = {"CPU": 8.0, "GPU": 4.0}


@pytest.mark.parametrize("overrides, message", [
    (["rollout.workers=3", "rollout.gpus_per_worker=2", "train.gpus_per_learner=1", "train.learners=2"],
     "rollout.gpus_per_worker / train.gpus_per_learner: the run needs 8 GPU (3 rollout worker(s) x {CPU: 1, GPU: 2} "
     "+ 2 learner(s) x {CPU: 1, GPU: 1}); the cluster has 4"),
    (["rollout.tensor_parallel=8", "rollout.gpus_per_worker=8", "model.lora.rank=8"],
     "rollout.gpus_per_worker / train.gpus_per_learner: the run needs 8 GPU (1 rollout worker(s) x {CPU: 1, GPU: 8} "
     "+ 1 learner(s) x {CPU: 1}); the cluster has 4"),
    (["train.learners=9"], "rollout.workers + train.learners: the run needs 10 CPU (1 rollout worker(s) x {CPU: 1} + "
     "9 learner(s) x {CPU: 1}); the cluster has 8"),
    (["train.resources={big_node: 1}"], "rollout.resources / train.resources: the run needs 1 big_node (1 rollout "
     "worker(s) x {CPU: 1} + 1 learner(s) x {CPU: 1, big_node: 1}); the cluster has 0"),
])
def test_placement_the_cluster_cannot_give_is_one_line(overrides, message):
    with pytest.raises(PlacementError) as e:
        check_cluster(load_config(None, overrides), NODE, [NODE])
    assert str(e.value) == message


def test_tensor_parallel_wider_than_any_node_and_a_bundle_no_node_holds():
    nodes = [{"CPU": 8.0, "GPU": 2.0}, {"CPU": 8.0, "GPU": 2.0}]
    cfg = load_config(None, ["rollout.tensor_parallel=4", "rollout.gpus_per_worker=4", "model.lora.rank=8"])
    with pytest.raises(PlacementError, match=r"^rollout.tensor_parallel: 4 GPUs on one node; the largest node has 2$"):
        check_cluster(cfg, {"CPU": 16.0, "GPU": 4.0}, nodes)
    cfg = load_config(None, ["rollout.gpus_per_worker=2", "rollout.resources={fast: 1}"])
    with pytest.raises(PlacementError, match=r"^rollout: no node can hold one rollout actor"):
        check_cluster(cfg, {"CPU": 16.0, "GPU": 4.0, "fast": 1.0}, [nodes[0], {"CPU": 8.0, "fast": 1.0}])
    check_cluster(load_config(None, ["rollout.gpus_per_worker=2", "train.gpus_per_learner=1", "train.learners=2"]),
                  {"CPU": 16.0, "GPU": 4.0}, nodes)  # fits: no error


@pytest.mark.parametrize("overrides, message", [
    (["rollout.tensor_parallel=2", "model.lora.rank=8"], "rollout.tensor_parallel: 2 shards need "
     "rollout.gpus_per_worker 2 (one GPU each), not 0"),
    (["ray.layout=colocated", "train.learners=2"], "ray.layout: 'colocated' pairs rollout worker i with learner i; "
     "rollout.workers (1) must equal train.learners (2)"),
    (["ray.layout=colocated", "rollout.gpus_per_worker=1", "train.gpus_per_learner=0.5"], "ray.layout: 'colocated' "
     "shares one GPU per pair; rollout.gpus_per_worker + train.gpus_per_learner is 1.5 (at most 1, e.g. 0.5 each)"),
    (["train.gpus_per_learner=2"], "train.gpus_per_learner: 2; a learner uses one GPU (more learners: "
     "train.learners)"),
    (["algorithm.name=es", "model.lora.rank=4", "continual.adapters=per_phase"], "algorithm.name: 'es' runs its own "
     "generations in rlreason train (rollout.mode sync, no continual phases, adapters or stream)"),
    (["algorithm.name=es"], "algorithm.name: 'es' evolves a population of LoRA adapters; set model.lora (e.g. "
     "model.lora.rank=8)"),
    (["rollout.push=collective", "rollout.mode=async"], "rollout.push: 'collective' is for rollout.mode sync (an "
     "engine still generating would hold the learner in the broadcast); allowed here: auto, object_store"),
    (["train.learners=2", "model.lora.rank=4", "continual.cbp_every=5"], "continual.cbp_every: continual backprop "
     "runs on one learner (its utilities are per rank); set train.learners=1 or continual.cbp_every=0"),
    (["rollout.tensor_parallel=2", "rollout.gpus_per_worker=2"], "rollout.tensor_parallel: 2 shards serve LoRA "
     "policies only (full-weight pushes into a sharded engine are not built); set model.lora or "
     "rollout.tensor_parallel=1"),
])
def test_placement_fields_that_contradict_each_other_are_refused_with_the_recipe(overrides, message):
    with pytest.raises(RecipeError) as e:
        load_config(None, overrides)
    assert str(e.value) == message


def test_the_8_gpu_example_recipe_fits_8_gpus_and_not_4(tiny_chat_model, data_dir):
    from rlreason.recipe.resources import demand

    example = Path(__file__).resolve().parents[1] / "docs" / "cluster-8gpu.yaml"
    cfg = load_config(example, [f"model.path={tiny_chat_model}", f"tasks.data_dir={data_dir}",
                                "model.max_model_len=256", "rollout.max_tokens=64"])
    assert demand(cfg) == {"CPU": 8.0, "GPU": 8.0}
    node = {"CPU": 32.0, "GPU": 4.0}
    check_cluster(cfg, {"CPU": 64.0, "GPU": 8.0}, [node, node])
    with pytest.raises(PlacementError, match="the run needs 8 GPU"):
        check_cluster(cfg, node, [node])


def test_resources_held_by_someone_else_fail_in_one_line_after_a_wait(monkeypatch):
    """The cluster has the CPUs in total but another job holds them: the placement group cannot be placed."""
    import ray
    from ray.util import placement_group, remove_placement_group

    from rlreason.run import placement

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        other = placement_group([{"CPU": 2.0}])
        ray.get(other.ready(), timeout=60)
        monkeypatch.setattr(placement, "WAIT_S", 3.0)
        with pytest.raises(PlacementError, match=r"^ray: the cluster's free resources did not hold the run within 3 s"):
            placement.place(load_config(None, []))
        remove_placement_group(other)
        placement.place(load_config(None, [])).remove()  # free again: placed
    finally:
        ray.shutdown()


def test_eval_on_a_cluster_that_cannot_hold_its_engines_is_one_line_and_writes_nothing(tmp_path):
    run = subprocess.run([str(BIN / "rlreason"), "eval", "tiny", "--task", "arithmetic", "--limit", "4", "--set",
                          "rollout.gpus_per_worker=1"], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.strip().splitlines()[-1].startswith("error: rollout.gpus_per_worker / train.gpus_per_learner: "
                                                          "the run needs 1 GPU (1 rollout worker(s)")
    assert list(tmp_path.iterdir()) == []
