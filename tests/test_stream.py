"""Online training from a growing stream: the reader on its own, then a real run that is stopped and restarted
while another thread keeps appending problems."""

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from rlreason.tasks import get_task
from rlreason.tasks.stream import StreamPosition, StreamReader


def _rows(start: int, count: int) -> list[str]:
    out = []
    problems = itertools.islice(get_task("addition").train_problems(seed=0), start, start + count)
    for i, problem in zip(range(start, start + count), problems):
        out.append(json.dumps({"id": f"p{i}", "prompt": problem.prompt, "reference": problem.reference,
                               "verifier": "exact_answer", "task": "addition"}))
    return out


def test_reader_reads_complete_lines_skips_bad_ones_and_stops_at_the_end(tmp_path):
    path = tmp_path / "s.jsonl"
    rows = _rows(0, 5)
    path.write_text("\n".join(rows[:3]) + "\nnot json\n" + rows[3][:10])  # the last line is still being written
    reader = StreamReader(path)
    assert [p.id for p in reader.poll(10)] == ["p0", "p1", "p2"] and reader.position.bad_lines == 1
    with open(path, "a") as f:
        f.write(rows[3][10:] + "\n" + rows[4] + "\n" + json.dumps({"end": True}) + "\n" + _rows(9, 1)[0] + "\n")
    assert [p.id for p in reader.take(10)] == ["p3", "p4"] and reader.closed  # nothing after the end line
    assert reader.take(3) == []
    reader.position.save(tmp_path / "pos.json")  # a run started again on a closed stream ends at once
    assert StreamReader(path, StreamPosition.load(tmp_path / "pos.json")).take(3, timeout_s=1) == []


def test_a_new_reader_continues_from_a_saved_position(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(_rows(0, 6)) + "\n")
    first = StreamReader(path)
    assert [p.id for p in first.take(4)] == ["p0", "p1", "p2", "p3"]
    first.position.save(tmp_path / "pos.json")
    second = StreamReader(path, StreamPosition.load(tmp_path / "pos.json"))
    assert [p.id for p in second.take(2)] == ["p4", "p5"] and second.position.consumed == 6


def test_a_directory_stream_reads_files_in_order_until_END(tmp_path):
    (tmp_path / "001.jsonl").write_text("\n".join(_rows(0, 2)) + "\n")
    reader = StreamReader(tmp_path)
    assert [p.id for p in reader.poll(5)] == ["p0", "p1"] and not reader.closed
    (tmp_path / "002.jsonl").write_text("\n".join(_rows(2, 2)) + "\n")
    (tmp_path / "END").touch()
    assert [p.id for p in reader.take(5)] == ["p2", "p3"] and reader.closed


def _trained_ids(run_dir) -> list[str]:
    lines = (run_dir / "problems.jsonl").read_text().splitlines()
    return [i for line in lines for i in json.loads(line)["ids"]]


@pytest.mark.slow  # (exact online resume runs in the fast suite: tests/test_resume_drivers.py)
def test_a_stopped_online_run_resumes_the_stream_with_nothing_twice_or_skipped(tmp_path):
    stream, run_dir = tmp_path / "stream.jsonl", tmp_path / "runs" / "online"
    stream.write_text("\n".join(_rows(0, 8)) + "\n")
    stop_writing = threading.Event()

    def writer():  # another process's appends, while the run trains
        i = 8
        while not stop_writing.is_set() and i < 48:
            with open(stream, "a") as f:
                f.write(_rows(i, 1)[0] + "\n")
            i += 1
            time.sleep(0.3)
        with open(stream, "a") as f:
            f.write(json.dumps({"end": True}) + "\n")

    args = [sys.executable, "-m", "rlreason.cli", "train", "lora", f"tasks.stream={stream}", "train.steps=null",
            "rollout.prompts_per_step=4", "rollout.group_size=2", "eval.before=false", "eval.after=false",
            "output.tensorboard=false", "output.save_model=false", "name=online"]
    first = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    thread = threading.Thread(target=writer)
    thread.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (
            (run_dir / "problems.jsonl").exists() and len(_trained_ids(run_dir)) >= 8):
        time.sleep(0.5)
    os.kill(first.pid, signal.SIGINT)  # the user stops it
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    stopped_at = len(_trained_ids(run_dir))
    assert stopped_at >= 8 and "continues after problem" in out
    second = subprocess.run([*args, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    stop_writing.set()
    thread.join()
    assert second.returncode == 0, second.stderr[-3000:]
    # Ctrl-C checkpointed the last step with its stream position: the model and the stream continue from there
    assert "resuming from step-" in second.stdout and "stream closed" in second.stdout
    ids = _trained_ids(run_dir)
    written = [json.loads(line)["id"] for line in stream.read_text().splitlines() if "prompt" in line]
    assert len(ids) == len(set(ids)), "a problem was trained twice"
    assert ids == written, "a problem was skipped or reordered"
    assert len(ids) > stopped_at
