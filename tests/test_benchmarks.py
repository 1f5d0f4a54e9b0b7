"""Benchmarks load from a data directory, and every gold solution passes our own verifiers while a wrong one
(the next record's gold) fails. Reads ../shared/datasets (or $RLREASON_TEST_DATA)."""

import re
from concurrent.futures import ProcessPoolExecutor

import pytest

from rlreason.tasks import get_task
from rlreason.verifiers import get_verifier

EXPECTED = {"gsm8k": 1319, "math500": 500, "aime24": 30, "aime25": 30, "humaneval": 164, "mbpp": 427}


def _answer_text(task: str, record: dict) -> str:
    """The gold answer (math) or the gold program (code), ignoring a leading 'x ='."""
    text = str(record["answer"]) if "answer" in record else get_task(task).gold(record)
    return re.sub(r"^\s*[a-z]\s*=\s*", "", text.split("####")[-1]).strip()


def _score(args) -> tuple[int, float, dict]:
    task, data_dir, i, j = args
    bench = get_task(task)
    rows = bench.records("test", data_dir)
    problem = bench.convert(rows[i], i)
    result = get_verifier(problem.verifier)(bench.gold(rows[j]), problem)
    return i, result.score, result.details


def _wrong_partner(task: str, rows: list[dict], i: int) -> int:
    """The next record whose gold answer differs (consecutive problems sometimes share an answer)."""
    for step in range(1, len(rows)):
        j = (i + step) % len(rows)
        if _answer_text(task, rows[j]) != _answer_text(task, rows[i]):
            return j
    raise AssertionError("every record has the same answer")


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_gold_solutions_pass_and_shifted_gold_fails(task, data_dir):
    rows = get_task(task).records("test", data_dir)
    assert len(rows) == EXPECTED[task]
    gold = [(task, data_dir, i, i) for i in range(len(rows))]
    shifted = [(task, data_dir, i, _wrong_partner(task, rows, i)) for i in range(len(rows))]
    with ProcessPoolExecutor(2) as pool:
        gold_scores = list(pool.map(_score, gold, chunksize=8))
        shifted_scores = list(pool.map(_score, shifted, chunksize=8))
    failed = [(i, d) for i, s, d in gold_scores if s != 1.0]
    lucky = [(i, d) for i, s, d in shifted_scores if s != 0.0]
    assert not failed, f"{task}: {len(rows) - len(failed)}/{len(rows)} gold solutions pass; first failures {failed[:3]}"
    assert not lucky, f"{task}: {len(lucky)} wrong answers scored; first {lucky[:3]}"


def test_benchmarks_convert_to_problems_with_their_verifiers(data_dir):
    math = get_task("math500").eval_problems(None, data_dir)
    assert len(math) == 500 and math[0].verifier == "math_answer" and "\\boxed{}" in math[0].prompt
    mbpp = get_task("mbpp").eval_problems(None, data_dir)
    assert len(mbpp) == 257 and all(11 <= int(p.id.split(":")[1]) <= 510 for p in mbpp)  # MBPP's test range
    humaneval = get_task("humaneval").eval_problems(3, data_dir)
    assert [p.reference["entry_point"] for p in humaneval] == ["has_close_elements", "separate_paren_groups",
                                                                "truncate_number"]
    train = get_task("gsm8k").train_problems(seed=0, data_dir=data_dir)
    first = [next(train) for _ in range(3)]
    assert all(p.task == "gsm8k" and p.reference.lstrip("-").isdigit() for p in first)
    with pytest.raises(ValueError, match="evaluation only"):
        next(get_task("aime24").train_problems(0, data_dir))


def test_missing_data_dir_and_no_hub_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match=r"task 'gsm8k': .*gsm8k/test.jsonl not found"):
        get_task("gsm8k").eval_problems(5, str(tmp_path))
