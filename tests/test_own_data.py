"""Your own data as a task: JSONL and Parquet files with a column mapping, inline in the recipe, a fixed held-out
share, one-line errors for unreadable files and missing columns, and a real training run on it."""

import json
import subprocess
import sys

import pytest
import yaml

from rlreason.recipe import RecipeError, load_config, validate
from rlreason.tasks import get_task


def _rows(n=40):
    return [{"question": f"{i}+{i + 1}=?\n", "answer": str(2 * i + 1), "qid": f"q{i}"} for i in range(n)]


def _write_jsonl(path, rows, extra_lines=()):
    path.write_text("\n".join([json.dumps(r) for r in rows] + list(extra_lines)) + "\n")
    return path


def _spec(path, **more):
    fields = {"data": str(path), "prompt": "question", "reference": "answer", "verifier": "exact_answer", **more}
    return "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in fields.items()) + "}"


def test_a_jsonl_file_inline_in_the_recipe_becomes_a_task_with_a_fixed_held_out_share(tmp_path):
    path = _write_jsonl(tmp_path / "mine.jsonl", _rows(), extra_lines=["{broken", ""])
    cfg = load_config(None, [f"tasks.train=[{_spec(path, id='qid')}]", "tasks.eval=[mine, arithmetic]"])
    assert cfg.tasks.train == ("mine",) and cfg.tasks.data[0].data == str(path)
    task = get_task("mine")
    held, stream = task.eval_problems(), task.train_problems(seed=3)
    train = [next(stream) for _ in range(36)]
    assert len(held) == 4 and {p.id for p in train} == {f"mine:q{i}" for i in range(40)} - {p.id for p in held}
    assert held == get_task("mine").eval_problems()  # the same rows every time
    load_config(None, [f"tasks.train=[{_spec(path, id='qid')}]"])
    assert get_task("mine") is task  # the same spec validated again does not read the file again
    assert train[0].verifier == "exact_answer" and train[0].reference == str(2 * int(train[0].id[6:]) + 1)
    # the saved recipe (as a run writes it) validates again, from anywhere
    again = validate(yaml.safe_load(yaml.safe_dump(cfg.model_dump(mode="json"))))
    assert again.tasks.data == cfg.tasks.data and again.tasks.train == ("mine",)


def test_parquet_and_chat_columns(tmp_path, tiny_chat_model):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{**r, "chat": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": r["question"]}]}
            for r in _rows(10)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "chat.parquet")
    cfg = load_config(None, [f"tasks.eval=[{_spec(tmp_path / 'chat.parquet', prompt=None, messages='chat')}]",
                             f"model.path={tiny_chat_model}"])
    (problem,) = get_task(cfg.tasks.eval[0]).eval_problems()
    assert problem.meta["messages"][0] == {"role": "system", "content": "Be brief."}
    from rlreason.controller import as_configured

    assert as_configured(cfg, problem).meta["messages"] == problem.meta["messages"]


@pytest.mark.parametrize("make,fields,message", [
    (lambda d: _write_jsonl(d / "a.jsonl", _rows()), {"prompt": "prompt"},
     "tasks.data.0: prompt: no column 'prompt' in"),
    (lambda d: d / "missing.jsonl", {}, "tasks.data.0: "),
    (lambda d: _write_jsonl(d / "b.jsonl", _rows(2), ["nope", "[1]", "{"]), {},
     "tasks.data.0: "),
    (lambda d: (d / "c.csv").write_text("a,b\n") and d / "c.csv", {}, "tasks.data.0: "),
    (lambda d: _write_jsonl(d / "e.jsonl", _rows()), {"verifier": "exact"}, "tasks.data.0: verifier: unknown"),
])
def test_bad_data_is_refused_in_one_line_naming_it(tmp_path, make, fields, message):
    path = make(tmp_path)
    with pytest.raises(RecipeError) as err:
        load_config(None, [f"tasks.train=[{_spec(path, **fields)}]"])
    text = str(err.value)
    assert text.startswith(message) and "\n" not in text, text
    if "prompt" not in fields and "verifier" not in fields:
        assert path.name in text, text  # names the file


def test_training_and_evaluating_on_your_own_file(tmp_path):
    """Through the real stack: train two steps on a JSONL of arithmetic problems, evaluate on its held-out rows."""
    rows = [{"q": p.prompt, "a": p.reference} for p, _ in zip(get_task("arithmetic").train_problems(seed=9),
                                                                range(60))]
    path = _write_jsonl(tmp_path / "sums.jsonl", rows)
    spec = f"{{data: {path}, prompt: q, reference: a, verifier: exact_answer, held_out: 0.25}}"
    proc = subprocess.run([sys.executable, "-m", "rlreason.cli", "train", f"tasks.train=[{spec}]",
                           "tasks.eval=[sums]", "train.steps=2", "rollout.prompts_per_step=4",
                           "rollout.group_size=2", "eval.samples=2", "output.tensorboard=false",
                           "output.save_model=false", "name=own"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "own" / "summary.json").read_text())
    assert summary["steps"] == 2 and 0.0 <= summary["after"]["sums/accuracy"] <= 1.0
    assert summary["before"]["sums/accuracy"] > 0.0  # the tiny model solves some of these sums


def test_more_bad_data_cases_are_refused_up_front(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    a = _write_jsonl(tmp_path / "one" / "same.jsonl", _rows())
    b = _write_jsonl(tmp_path / "two" / "same.jsonl", _rows())
    with pytest.raises(RecipeError, match=r"^tasks.data: two data tasks are named 'same'"):
        load_config(None, [f"tasks.train=[{_spec(a)}]", f"tasks.eval=[{_spec(b)}]"])
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(RecipeError, match=r"^tasks.data.0: .*empty.jsonl: no rows"):
        load_config(None, [f"tasks.train=[{_spec(tmp_path / 'empty.jsonl')}]"])
    chat = _write_jsonl(tmp_path / "chat.jsonl", [{"m": [{"role": "user", "content": "hi"}], "answer": "1"}] * 4)
    with pytest.raises(RecipeError, match=r"^tasks.eval: task 'chat' has chat messages but the model has no chat"):
        load_config(None, [f"tasks.eval=[{_spec(chat, prompt=None, messages='m')}]"])  # the tiny model has none


def test_a_json_array_file_is_read(tmp_path):
    (tmp_path / "arr.json").write_text(json.dumps(_rows(10)))
    cfg = load_config(None, [f"tasks.eval=[{_spec(tmp_path / 'arr.json')}]"])
    assert len(get_task(cfg.tasks.eval[0]).eval_problems()) == 1 and len(get_task("arr").train) == 9
