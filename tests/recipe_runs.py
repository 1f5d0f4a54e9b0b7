"""A recipe written to a test's directory and trained through the command line, as a user would run it."""

import json
import subprocess
import sys


def train(tmp_path, recipe: str, name: str, timeout: int = 600) -> tuple[list[dict], dict, str]:
    """Train ``recipe`` (YAML text; its ``name:`` is ``name``) from ``tmp_path``; its train steps' metrics, its
    summary's after-training evaluation and its stderr. Fails with the end of stderr when the run fails."""
    (tmp_path / f"{name}.yaml").write_text(recipe)
    run = subprocess.run([sys.executable, "-m", "rlreason.cli", "train", f"{name}.yaml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr[-3000:]
    runs = tmp_path / "runs" / name
    lines = [json.loads(x) for x in (runs / "metrics.jsonl").read_text().splitlines()]
    after = json.loads((runs / "summary.json").read_text()).get("after", {})
    return [x for x in lines if x["kind"] == "train"], after, run.stderr
