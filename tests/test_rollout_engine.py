"""The rollout engine on its own: a real in-process vLLM engine (the session's shared one)."""

from rlreason.recipe import load_config
from rlreason.controller import problem_stream
from rlreason.rollout.engine import SamplingSpec


def test_chat_prompts_go_through_a_real_engine(engine, tiny_chat_model):
    """vLLM generates from the chat-templated prompt (transformers 5 returns a BatchEncoding when tokenizing:
    every generate call used to crash on it)."""
    from transformers import AutoTokenizer

    cfg = load_config(None, ["tasks.template=chat", f"model.path={tiny_chat_model}"])
    problems = [next(problem_stream(cfg)) for _ in range(3)]
    groups = engine.generate(problems, SamplingSpec(n=2, max_tokens=8))
    tok = AutoTokenizer.from_pretrained(tiny_chat_model)
    for problem, group in zip(problems, groups):
        assert len(group) == 2 and all(c.completion_ids for c in group)
        expected = f"user: {problem.prompt}\nassistant:\n"
        assert tok.decode(group[0].prompt_ids) == expected


def test_the_driver_counts_prompt_tokens_as_the_engine_does(engine, tiny_chat_model):
    """Prompts too long for the context are found in the driver (an engine's queue may hold an asynchronous
    run's batches), with the model's own tokenizer: the counts must be the engine's, plain and chat."""
    from rlreason.controller import Context, prompt_lengths

    for template in ("plain", "chat"):
        cfg = load_config(None, [f"model.path={tiny_chat_model}", f"tasks.template={template}"])
        problems = [p for p, _ in zip(problem_stream(cfg), range(6))]
        ctx = Context(cfg, workers=[], learner=None, scorer=None)
        sent = engine.generate(problems, SamplingSpec(n=1, max_tokens=1))  # what the engine was given
        assert prompt_lengths(ctx, problems) == [len(g[0].prompt_ids) for g in sent]


def test_ignore_eos_runs_every_completion_to_max_tokens(engine):
    """rollout.ignore_eos (fixed-length benchmarks): no completion stops early."""
    problems = [p for p, _ in zip(problem_stream(load_config(None, [])), range(4))]
    groups = engine.generate(problems, SamplingSpec(n=4, max_tokens=40, ignore_eos=True))
    assert all(len(c.completion_ids) == 40 and c.finish_reason == "length" for g in groups for c in g)


def test_sampled_logprobs_are_those_of_the_sampled_tokens(engine):
    """The engine's per-token logprobs (read from vLLM's flat logprobs) are the served model's log p of each
    sampled token, position by position."""
    problems = [p for p, _ in zip(problem_stream(load_config(None, [])), range(3))]
    for group in engine.generate(problems, SamplingSpec(n=2, max_tokens=24)):
        for c in group:
            assert len(c.logprobs) == len(c.completion_ids) > 0
            scored = engine.sequence_logprobs(c.prompt_ids, c.completion_ids)
            assert max(abs(a - b) for a, b in zip(c.logprobs, scored)) < 1e-3
