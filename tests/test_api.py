"""The primitive API (rlreason.connect): a GRPO loop written on it computes what `rlreason train` computes (full
weights with one learner; LoRA with two), a user's loss function trains (and the engines then sample what it
taught), and bad input gets one clear error that leaves the run usable. Real Ray, vLLM and learners throughout."""

import json
import math

import pytest

import rlreason
from rlreason import APIError, Datum

SMALL = ["train.steps=3", "rollout.prompts_per_step=8", "rollout.group_size=4", "eval.before=false",
         "eval.after=false", "output.save_model=false", "train.checkpoint_every=0", "output.tensorboard=false"]


def _train_metrics(tmp_path, overrides: list[str]) -> list[dict]:
    from rlreason.drivers.train import train
    from rlreason.recipe import load_config

    cfg = load_config(None, SMALL + overrides + [f"output.run={tmp_path / 'trained'}"])
    train(cfg)
    lines = [json.loads(x) for x in (tmp_path / "trained" / "metrics.jsonl").read_text().splitlines()]
    return [x for x in lines if x["kind"] == "train"]


@pytest.mark.parametrize("overrides", [[], ["model.lora.rank=8", "train.lr=0.002", "train.learners=2"]],
                         ids=["full-weights", "lora-two-learners"])
def test_a_grpo_loop_on_the_primitives_reproduces_rlreason_train(tmp_path, overrides):
    from rlreason.api.grpo_loop import grpo

    trained = _train_metrics(tmp_path, overrides)
    with rlreason.connect(overrides=SMALL + overrides + [f"output.run={tmp_path / 'loop'}"]) as rl:
        looped = grpo(rl, 3, 8, 4)
    assert len(trained) == len(looped) == 3
    for t, mine in zip(trained, looped):
        assert mine["reward_mean"] == t["reward_mean"]  # the same samples: the same weights and seeds
        assert mine["loss"] == pytest.approx(t["loss"], abs=1e-6)
        assert mine["grad_norm"] == pytest.approx(t["grad_norm"], rel=1e-4)
    assert len({round(x["grad_norm"], 6) for x in looped}) == 3  # (the weights moved: three different steps)


def test_the_docs_show_the_shipped_loop_as_it_is():
    import inspect
    import re
    from pathlib import Path

    from rlreason.api.grpo_loop import grpo

    page = (Path(__file__).resolve().parents[1] / "docs" / "primitives.md").read_text()
    assert re.search(r"```python\n(def grpo\(.*?)```", page, re.S).group(1) == inspect.getsource(grpo)
    assert len(inspect.getsource(grpo).splitlines()) <= 30


@pytest.fixture(scope="module")
def rl(tmp_path_factory):
    here = tmp_path_factory.mktemp("api")
    (here / "runs" / "mine").mkdir(parents=True)
    (here / "runs" / "mine" / "recipe.yaml").write_text("an earlier run's")
    with rlreason.connect(model="tiny", lora_rank=8, run="mine",
                          overrides=["rollout.max_tokens=8", f"output.dir={here / 'runs'}"]) as client:
        # a client never writes into an earlier run's directory
        assert client.run_dir == here / "runs" / "mine-2"
        assert (here / "runs" / "mine" / "recipe.yaml").read_text() == "an earlier run's"
        yield client


def _nll(inputs):
    """A user's loss: the mean negative log-likelihood of the masked tokens (plain torch, run in the learner)."""
    return -(inputs.logprobs * inputs.loss_mask).sum() / inputs.loss_mask.sum()


def test_a_users_loss_function_trains_and_the_engines_sample_what_it_taught(rl):
    prompt, answer = rl.tokenizer.encode("7+7="), rl.tokenizer.encode("99\n")
    datum = Datum(prompt + answer, {"mask": [0.0] * len(prompt) + [1.0] * len(answer)})
    before = rl.sample([prompt], n=1, temperature=0.0, max_tokens=3)[0][0]
    assert before.text != "99\n"
    losses = []
    for _ in range(20):
        losses.append(rl.forward_backward([datum], loss=_nll).loss)
        rl.optim_step(lr=0.005)
    assert losses[-1] < 0.1 * losses[0]
    assert rl.sync() == 20
    after = rl.sample([prompt], n=1, temperature=0.0, max_tokens=3)[0][0]
    assert after.text == "99\n" and after.version == 20
    # the learner's logprobs of what the engine sampled are the engine's
    check = rl.forward([Datum.from_sample(after, 0.0)], loss=_nll).logprobs[0][len(prompt):]
    assert max(abs(a - b) for a, b in zip(check, after.logprobs)) < 0.05


def _modified_in_place(inputs):
    """A loss whose backward fails (autograd needs what the in-place product overwrote)."""
    p = inputs.logprobs.exp()
    p.mul_(inputs.advantages)
    return -p.sum()


def test_an_explicit_learning_rate_is_for_its_own_step_only(rl):
    datum = Datum.from_sample(rl.sample(["5+5="], n=1, max_tokens=4)[0][0], 1.0)

    def step(**lr) -> float:
        before = _logprobs(rl, datum)
        rl.forward_backward([datum])
        rl.optim_step(**lr)
        return max(abs(a - b) for a, b in zip(before, _logprobs(rl, datum)))

    scheduled = step()  # the recipe's train.lr (1e-4)
    big = step(lr=0.02)
    after = step()  # the recipe's again, not the 0.02 of the step before
    assert big > 20 * scheduled and after < big / 20


def _logprobs(rl, datum):
    return rl.forward([datum], loss="cross_entropy").logprobs[0]


def test_bad_input_gets_one_clear_error_and_the_run_stays_usable(rl, tmp_path):
    sample = rl.sample(["3+4="], n=2, max_tokens=4)[0]
    good = [Datum.from_sample(s, 1.0) for s in sample]
    start = _logprobs(rl, good[0])
    bad = {
        "outside the model's vocabulary": lambda: rl.forward_backward([Datum([1, 2, rl.vocab_size])],
                                                                      loss="cross_entropy"),
        "targets[.advantages.]: a value is NaN or inf": lambda: rl.forward_backward(
            [Datum([1, 2, 3], {"advantages": [0, 1, math.inf], "logprobs": [0, 0, 0]})]),
        "tokens: numbers only": lambda: rl.forward_backward([Datum([1, 2.5, 3])], loss="cross_entropy"),
        "targets['weights']: 2 values": lambda: rl.forward_backward([Datum([1, 2, 3], {"weights": [0, 1]})],
                                                                     loss="cross_entropy"),
        "unknown key": lambda: rl.forward_backward([Datum([1, 2, 3], {"weight": [0, 1, 1]})], loss="cross_entropy"),
        "the loss needs 'advantages', 'logprobs'": lambda: rl.forward_backward([Datum([1, 2, 3])]),
        "the loss is nan": lambda: rl.forward_backward(good, loss=lambda i: i.logprobs.sum() * math.nan),
        "the loss function raised ZeroDivisionError": lambda: rl.forward_backward(good, loss=lambda i: 1 / 0),
        "raised RuntimeError: one of the variables needed for gradient computation has been modified":
            lambda: rl.forward_backward(good, loss=_modified_in_place),
        "returns a scalar tensor": lambda: rl.forward_backward(good, loss=lambda i: i.logprobs),
        "unknown loss 'grop'": lambda: rl.forward_backward(good, loss="grop"),
        "loss_config.clip_eps": lambda: rl.forward_backward(good, loss="grpo", loss_config={"clip_eps": "wide"}),
        "there is no gradient to apply": lambda: rl.optim_step(),
        "lr must be >= 0": lambda: rl.optim_step(lr=-1e-3),
        "prompts[0]: token id": lambda: rl.sample([[1, 10**6]]),
        "exceed model.max_model_len": lambda: rl.sample(["1+1="], max_tokens=10_000),
        "no saved state 'nothing'": lambda: rl.load("nothing"),
        "already has a client": lambda: rlreason.connect(overrides=[f"output.run={rl.run_dir}"]),
    }
    for words, call in bad.items():
        with pytest.raises(APIError, match=words.replace("[", r"\[").replace("(", r"\(")) as caught:
            call()
        assert "\n" not in str(caught.value)
    assert _logprobs(rl, good[0]) == start  # nothing was accumulated or applied
    rl.forward_backward(good, loss="importance_sampling")  # and the run trains on
    version = rl.optim_step(lr=1e-3)["version"]
    assert _logprobs(rl, good[0]) != start
    # a state loaded after the engines moved on is served again, as new weights; sampling waits for the sync
    assert rl.sync() == version
    probe = rl.tokenizer.encode("1+1=")

    def served() -> list[float]:
        return rl.sample([probe], n=1, max_tokens=4, temperature=0.0)[0][0].logprobs

    at_save = served()
    rl.save("here")
    rl.forward_backward(good)
    rl.optim_step(lr=0.05)
    assert rl.sync() == version + 1 and served() != pytest.approx(at_save, abs=1e-3)
    rl.load("here")
    with pytest.raises(APIError, match=r"call sync\(\) first"):
        rl.sample(["1+1="])
    assert rl.sync() == version + 2 and served() == pytest.approx(at_save, abs=1e-4)
    assert rl.sync() == version + 2  # (nothing new: nothing pushed)
    rl.load("here", optimizer=False)  # the weights alone: Adam starts afresh, and trains on
    assert rl.sync() == version + 3 and served() == pytest.approx(at_save, abs=1e-4)
    rl.forward_backward(good)
    assert rl.optim_step()["version"] == version + 4


def test_a_state_loaded_after_a_worker_was_revived_is_what_the_engines_serve(rl):
    """A revived rollout worker is given the learner's weights of then, which the client never synced: a later
    load + sync must still reach it (it ignores a push that is not newer than what it serves)."""
    import os

    import ray

    probe = rl.tokenizer.encode("2+2=")

    def served() -> list[float]:
        return rl.sample([probe], n=1, max_tokens=4, temperature=0.0)[0][0].logprobs

    rl.sync()
    at_save = served()
    rl.save("before")
    datum = Datum.from_sample(rl.sample([probe], n=1, max_tokens=4)[0][0], 1.0)
    rl.forward_backward([datum])
    rl.optim_step(lr=0.05)  # not synced
    os.kill(ray.get(rl.ctx.workers[0].pid.remote()), 9)
    assert served() != pytest.approx(at_save, abs=1e-3)  # the revived engine serves the unsynced weights
    rl.load("before")
    rl.sync()
    assert served() == pytest.approx(at_save, abs=1e-4)
