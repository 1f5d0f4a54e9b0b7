"""The package as users get it: a wheel built from this tree, installed (not editable) into a fresh virtual
environment that borrows this environment's dependencies, run from an unrelated directory."""

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".venv", ".git", "runs", "__pycache__", "*.egg-info", "build", ".pytest_cache",
                              "dist")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A virtual environment with the wheel installed; returns its bin/ directory."""
    root = tmp_path_factory.mktemp("wheel")
    shutil.copytree(REPO, root / "src", ignore=SKIP)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(root / "dist"), str(root / "src")], check=True, capture_output=True, timeout=300)
    wheel, = (root / "dist").glob("rlreason-*.whl")
    env = root / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    site = Path(subprocess.run([str(env / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], check=True, capture_output=True, text=True).stdout.strip())
    # the dependencies come from this environment; its editable rlreason does not (a path, not a site dir)
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install", "--no-deps",
                    "-q", str(wheel)], check=True, capture_output=True, timeout=300)
    return env / "bin"


def _run(bin_dir: Path, args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_dir / "rlreason"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_the_wheel_is_what_runs(installed, tmp_path):
    where = subprocess.run([str(installed / "python"), "-c", "import rlreason, rlreason.recipe as c; "
                            "print(rlreason.__file__); print(c.recipes_dir())"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert all(str(installed.parent) in line for line in where), where
    listing = _run(installed, ["recipes"], tmp_path)
    assert listing.returncode == 0 and {"default", "ppo", "scalerl"} <= {
        line.split()[0] for line in listing.stdout.splitlines()}, listing.stderr


COUNTDOWN = """
from rlreason.envs import Environment, StepResult


class Countdown(Environment):
    stop = ("\\n",)

    def reset(self, problem):
        self.next = int(problem.reference)
        return problem.prompt

    def step(self, action):
        if action.strip() != str(self.next) or self.next == 0:
            return StepResult(reward=float(self.next == 0), done=True)
        self.next -= 1
        return StepResult(observation="ok\\n")
"""


def test_installed_wheel_trains_one_step_from_another_directory(installed, tmp_path):
    """With an environment of the user's own, in a module of the directory the command runs in (the docs'
    example): imported by the driver and by the engine's actor (found broken: only ``python -m`` could)."""
    (tmp_path / "my_envs.py").write_text(COUNTDOWN)
    args = ["train", "train.steps=1", "rollout.prompts_per_step=4", "rollout.group_size=2", "eval.before=false",
            "eval.after=false", "output.tensorboard=false", "tasks.train=[{env: my_envs:Countdown, data: arithmetic}]"]
    proc = _run(installed, args, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    run = tmp_path / "runs" / "tiny-grpo"
    assert (run / "metrics.jsonl").read_text().count('"step": 1') >= 1
    assert '"episode_turns"' in (run / "metrics.jsonl").read_text()
    assert (run / "final" / "config.json").is_file()
    bad = _run(installed, ["train", "no_such_recipe"], tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: recipe: no such file 'no_such_recipe'")
