import itertools

from transformers import AutoTokenizer

from rlreason.tasks import get_task
from rlreason.verifiers import get_verifier


def test_training_stream_never_yields_held_out_problems():
    for name in ("arithmetic", "programs"):
        task = get_task(name)
        held_out = task.held_out_prompts()
        train = [p.prompt for p in itertools.islice(task.train_problems(seed=0), 3000)]
        assert len(held_out) == task.held_out_size
        assert not held_out & set(train)


def test_eval_set_is_fixed():
    a = get_task("arithmetic").eval_problems(50)
    b = get_task("arithmetic").eval_problems(50)
    assert [p.prompt for p in a] == [p.prompt for p in b]


def test_reference_solutions_pass_their_verifier():
    for name in ("arithmetic", "programs"):
        for problem, solution in itertools.islice(get_task(name).examples(seed=1), 30):
            assert get_verifier(problem.verifier)(solution, problem).score == 1.0, (problem, solution)


def test_shipped_tokenizer_round_trips_newlines(tiny_model_path):
    # transformers picks a tokenizer class from the model type; a wrong pick silently dropped newlines.
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    text = "12+7=?\n12+7=19\n#### 19"
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert tok.decode(ids) == text
