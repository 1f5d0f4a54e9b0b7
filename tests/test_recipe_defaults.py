"""Fields a recipe leaves to the model, the tasks and the machine (rlreason.recipe.defaults), the two answer
protocols, the truncation warning and few-shot prompts (rlreason.tasks.prompting)."""

import json
import shutil

import pytest

from rlreason.recipe import RecipeError, load_config
from rlreason.recipe.defaults import bf16_warning, cpu_has_native_bf16, resolution_notes
from rlreason.types import Completion, Problem, ScoredGroup


def _model_with(tmp_path, tiny_model_path, **config):
    out = tmp_path / "model"
    shutil.copytree(tiny_model_path, out)
    data = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**data, **config}))
    return out


def test_the_tiny_model_keeps_its_own_small_values_because_its_files_say_so():
    cfg = load_config()
    assert (cfg.model.max_model_len, cfg.rollout.max_tokens, cfg.tasks.template) == (256, 48, "plain")
    notes = " ".join(resolution_notes(cfg))
    assert "max_position_embeddings" in notes and "task arithmetic's budget" in notes


def test_a_model_with_a_2048_context_gets_2048_and_a_benchmark_its_budget(tmp_path, tiny_model_path, data_dir):
    model = _model_with(tmp_path, tiny_model_path, max_position_embeddings=2048)
    cfg = load_config(None, [f"model.path={model}", "tasks.train=[gsm8k]", "tasks.eval=[gsm8k]",
                             f"tasks.data_dir={data_dir}"])
    assert (cfg.model.max_model_len, cfg.rollout.max_tokens) == (2048, 512)
    aime = load_config(None, [f"model.path={model}", "tasks.eval=[aime24]", f"tasks.data_dir={data_dir}"])
    assert aime.rollout.max_tokens == 2048 - 512  # AIME's 4096 capped: prompts keep a quarter of the context
    assert any("capped" in n for n in resolution_notes(aime))
    kept = load_config(None, [f"model.path={model}", "model.max_model_len=1024", "rollout.max_tokens=100"])
    assert (kept.model.max_model_len, kept.rollout.max_tokens) == (1024, 100)  # a recipe's own values stay
    assert not any(n.startswith(("model.max_model_len", "rollout.max_tokens")) for n in resolution_notes(kept))


def test_the_context_is_capped_by_what_the_kv_cache_holds(tmp_path, tiny_model_path):
    # 4 layers x 2 kv heads x 32 dims x keys and values x 4 bytes = 2 KiB a token: 1 GiB holds 524,288 tokens
    model = _model_with(tmp_path, tiny_model_path, max_position_embeddings=1_000_000, num_hidden_layers=400)
    cfg = load_config(None, [f"model.path={model}"])
    assert cfg.model.max_model_len == 2**30 // (2 * 400 * 2 * 32 * 4)


def test_the_resolved_values_are_what_a_saved_recipe_holds(tmp_path):
    import yaml

    from rlreason.drivers.train import write_recipe

    cfg = load_config(None, [f"output.run={tmp_path / 'run'}"])
    saved = yaml.safe_load((write_recipe(cfg) / "recipe.yaml").read_text())
    assert saved["rollout"]["max_tokens"] == 48 and saved["model"]["max_model_len"] == 256
    assert saved["model"]["dtype"] in ("float32", "bfloat16") and saved["tasks"]["template"] == "plain"


def test_the_chat_template_is_the_default_where_the_model_has_one(tiny_chat_model):
    assert load_config(None, [f"model.path={tiny_chat_model}"]).tasks.template == "chat"
    assert load_config(None, [f"model.path={tiny_chat_model}", "tasks.template=plain"]).tasks.template == "plain"
    with pytest.raises(RecipeError, match="tasks.template: 'chat' needs a model with a chat template"):
        load_config(None, ["tasks.template=chat"])


@pytest.mark.parametrize("flags,native", [
    ("fpu avx2 avx512f avx512_bf16", True), ("fpu avx2 amx_bf16 amx_tile", True), ("fpu sse avx2 fma", False),
    ("fpu avx2 avx512f avx512_vnni", False)])
def test_native_bf16_is_read_from_the_cpu_flags(flags, native):
    assert cpu_has_native_bf16(f"processor\t: 0\nflags\t\t: {flags}\n") is native


def test_the_machine_reading_can_be_overridden(monkeypatch):
    monkeypatch.setenv("RLREASON_CPU_BF16", "1")
    assert cpu_has_native_bf16() and load_config().model.dtype == "bfloat16"
    monkeypatch.setenv("RLREASON_CPU_BF16", "0")
    assert not cpu_has_native_bf16() and load_config().model.dtype == "float32"


def test_bf16_on_a_cpu_that_emulates_it_is_warned_and_auto_picks_float32(monkeypatch):
    import rlreason.recipe.defaults as defaults

    monkeypatch.setattr(defaults, "cpu_has_native_bf16", lambda cpuinfo=None: False)
    assert load_config().model.dtype == "float32"
    warning = bf16_warning(load_config(None, ["model.dtype=bfloat16"]))
    assert "~10x slower" in warning and "model.dtype=auto or float32" in warning
    assert bf16_warning(load_config(None, ["model.dtype=float32"])) is None
    monkeypatch.setattr(defaults, "cpu_has_native_bf16", lambda cpuinfo=None: True)
    assert load_config().model.dtype == "bfloat16" and bf16_warning(load_config(None, ["model.dtype=bfloat16"])) is None


# -- answer protocols ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("completion,gold,strict,flexible", [
    (r"so \boxed{72}.", "72", 1.0, True),
    ("The total is 72.\n#### 72", "72", 1.0, True),
    ("So, the answer is 8.", "8", 0.0, True),  # the format lm-eval's flexible-extract forgives
    ("She pays 18 dollars.", "18", 0.0, True),  # trailing units
    ("It costs $1,234 in all", "1234", 0.0, True),  # commas and currency
    ("The temperature falls to -5.", "-5", 0.0, True),  # negative numbers
    ("The answer is 5, not 7", "5", 0.0, False),  # flexible reads the last number only
    (r"\boxed{5} because 2 + 3", "5", 1.0, False),  # ... even after a boxed answer
    ("I do not know.", "3", 0.0, False),  # no number at all
    ("nothing here...", "3", 0.0, False),  # dots are not a number
    ("it is 0.5", r"\frac{1}{2}", 0.0, True),  # references that are not plain numbers: math-verify judges
    ("72.00 in total", "72", 0.0, True),
])
def test_strict_and_flexible_verdicts_on_a_table_of_completions(completion, gold, strict, flexible):
    from rlreason.verifiers import get_verifier

    result = get_verifier("math_answer")(completion, Problem("p", "", gold, "math_answer"))
    assert (result.score, result.protocols) == (strict, {"flexible": flexible})


def test_both_protocols_reach_the_metrics_of_evaluation_and_training():
    from rlreason.controller import rollout_metrics
    from rlreason.evaluation.metrics import problem_metrics
    from rlreason.verifiers import get_verifier

    problem = Problem("p", "", "8", "exact_answer")
    texts = ["#### 8", "the answer is 8", "#### 9", "8 or 9"]
    results = [get_verifier("exact_answer")(t, problem) for t in texts]
    group = ScoredGroup(problem, [Completion("p", [1], [2], [0.0], "stop", 0, t) for t in texts], results)
    metrics = problem_metrics(group, [1])
    assert (metrics["pass@1"], metrics["flexible_pass@1"]) == (0.25, 0.5)
    logged = rollout_metrics([group], 1.0)
    assert (logged["accuracy"], logged["accuracy_flexible"]) == (0.25, 0.5)


# -- truncation ----------------------------------------------------------------------------------------------------
def test_truncation_is_loud_above_the_threshold_and_quiet_below():
    from rlreason.report.console import format_step, truncation_warnings
    from rlreason.evaluation.command import table
    from rlreason.drivers.train import RunSummary, run_warnings

    cfg = load_config()  # warn_truncated 0.1, max_tokens 48
    assert truncation_warnings({"gsm8k/truncated_frac": 0.94, "arithmetic/truncated_frac": 0.05}, 0.1, 48) == [
        "warning: 94% of gsm8k completions stopped at the length limit (rollout.max_tokens 48): raise "
        "rollout.max_tokens (and model.max_model_len if needed), or the scores measure the limit, not the model"]
    assert "cut 45%" in format_step(3, {"reward_mean": 0.1, "truncated_frac": 0.45}, 0.1)
    assert "cut" not in format_step(3, {"reward_mean": 0.1, "truncated_frac": 0.05}, 0.1)
    assert run_warnings(cfg, RunSummary(truncated_frac=0.2, after={"arithmetic/truncated_frac": 0.5})) == [
        *truncation_warnings({"training/truncated_frac": 0.2, "arithmetic/truncated_frac": 0.5}, 0.1, 48)]
    assert run_warnings(cfg, RunSummary(truncated_frac=0.1, after={"arithmetic/truncated_frac": 0.02})) == []
    report = {"k": [1], "tasks": {"gsm8k": {"problems": 2, "metrics": {"pass@1": {"mean": 0.0, "ci95": 0.0}}}},
              "warnings": ["warning: 94% of gsm8k completions ..."]}
    assert table(report).splitlines()[-1] == "warning: 94% of gsm8k completions ..."


def test_cut_completions_that_repeat_themselves_are_told_apart():
    from rlreason.report.console import truncation_warning
    from rlreason.evaluation.metrics import loops

    assert loops([5, 6, 7, 8] * 40) and loops(list(range(60)) + [1, 2, 3] * 30)
    assert not loops(list(range(120))) and not loops([1, 2, 3])
    line = truncation_warning(0.4, "gsm8k", 512, looping=0.3)
    assert line.endswith("75% of the cut ones repeat themselves (the model loops: a longer limit will not end them; "
                         "try sampling, few-shot examples or a larger model)")


# -- few-shot prompts ------------------------------------------------------------------------------------------------
def test_fewshot_examples_never_come_from_the_evaluated_split(data_dir):
    from rlreason.tasks import TASKS, get_task

    for name in TASKS.names():
        task = get_task(name)
        if not getattr(task, "has_fewshot", False):
            continue
        shots = task.fewshot_examples(5, data_dir)
        held = {p.prompt for p in task.eval_problems(None, data_dir)}
        assert len(shots) == 5 and all(s for _, s in shots), name
        assert not held & {prompt for prompt, _ in shots}, name


def test_fewshot_prompts_plain_and_chat(data_dir, tiny_chat_model):
    from rlreason.evaluation.heldout import eval_problems

    plain = load_config(None, ["tasks.fewshot=2"])
    first = eval_problems(plain, "arithmetic")[0]
    bare = eval_problems(load_config(), "arithmetic")[0]
    assert first.prompt.endswith(bare.prompt) and first.prompt.count("=?") == 3 and "####" in first.prompt
    chat = load_config(None, [f"model.path={tiny_chat_model}", "tasks.fewshot=2", "tasks.eval=[gsm8k]",
                              f"tasks.data_dir={data_dir}", "model.max_model_len=256"])
    messages = eval_problems(chat, "gsm8k")[0].meta["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert "\\boxed{" in messages[1]["content"] and "<<" not in messages[1]["content"]
    with pytest.raises(RecipeError, match="tasks.fewshot: task 'humaneval' has no worked training examples"):
        load_config(None, ["tasks.fewshot=1", "tasks.eval=[humaneval]", f"tasks.data_dir={data_dir}"])
