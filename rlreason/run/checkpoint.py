"""Checkpoints of a training run: ``<run>/checkpoints/step-NNNNNN/`` with the learner's state (``learner.pt``),
the controller's (``controller.json``: step, stream position, retired prompts, counters) and ``COMPLETE``, a
manifest of every file's size and SHA-256 written last.

Written atomically: into ``.tmp-step-NNNNNN/``, every file fsynced, then renamed into place (and the directory
fsynced), so a crash leaves either a whole checkpoint or none. The newest ``train.keep_checkpoints`` are kept. On
resume a checkpoint whose manifest is missing or whose files do not match it is reported in one line and skipped
for the one before.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

COMPLETE = "COMPLETE"
CONTROLLER = "controller.json"
REQUIRED = ("learner.pt", CONTROLLER)
# what may change between a run and its --resume (everything else must match the checkpoint's recipe)
MAY_CHANGE = ("train.steps", "train.lr", "train.checkpoint_every", "train.keep_checkpoints", "train.stop_wait_s",
              "train.max_nonfinite_in_a_row", "eval.", "output.", "ray.", "rollout.workers", "rollout.kv_cache_gib",
              "rollout.max_restarts", "train.shared_prefix", "model.attention")  # (the last two: speed only)


def _step(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[1])


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoint directories, oldest first (by step number, not by name)."""
    return sorted((Path(run_dir) / "checkpoints").glob("step-*"), key=_step)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(run_dir: Path, step: int, learner, controller: dict, keep: int) -> Path:
    """Write the checkpoint of ``step`` (``learner``: the Ray actor handle) and drop all but the newest ``keep``."""
    import ray

    root = Path(run_dir) / "checkpoints"
    tmp, final = root / f".tmp-step-{step:06d}", root / f"step-{step:06d}"
    for leftover in root.glob(".tmp-step-*"):  # from a write that was cut short
        shutil.rmtree(leftover, ignore_errors=True)
    tmp.mkdir(parents=True)
    ray.get(learner.save_checkpoint.remote(str(tmp.resolve())))
    (tmp / CONTROLLER).write_text(json.dumps(controller))
    files = sorted(p for p in tmp.iterdir() if p.is_file())
    for path in files:
        _fsync(path)
    manifest = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    (tmp / COMPLETE).write_text(json.dumps(manifest, indent=1))
    _fsync(tmp / COMPLETE)
    _fsync(tmp)
    old = root / f".old-step-{step:06d}"
    if final.exists():  # a resumed run reaching the same step again: the old one goes only once the new is in
        final.rename(old)
    tmp.rename(final)
    _fsync(root)
    shutil.rmtree(old, ignore_errors=True)
    others = [c for c in checkpoints(run_dir) if c != final]  # the one just written is never rotated out
    for stale in others[: max(0, len(others) - (keep - 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def problem(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot be used (None: it is complete and intact)."""
    if not (checkpoint / COMPLETE).is_file():
        return "incomplete (no COMPLETE manifest)"
    try:
        manifest = json.loads((checkpoint / COMPLETE).read_text())
    except json.JSONDecodeError:
        return "corrupt manifest"
    missing = [name for name in REQUIRED if name not in manifest]
    if missing:
        return f"{', '.join(missing)} not in it (written on another machine's disk?)"
    for name, want in manifest.items():
        path = checkpoint / name
        if not path.is_file() or path.stat().st_size != want["bytes"]:
            return f"{name} is missing or truncated"
        if _sha256(path) != want["sha256"]:
            return f"{name} does not match its checksum"
    return None


def latest_checkpoint(run_dir: Path, echo=print) -> tuple[Path, dict] | None:
    """The newest intact checkpoint and its controller state. Each unusable newer one is reported in one line and
    renamed ``unusable-step-N`` (kept for inspection, out of rotation and of later resumes)."""
    for checkpoint in reversed(checkpoints(run_dir)):
        why = problem(checkpoint)
        if why is None:
            return checkpoint, json.loads((checkpoint / CONTROLLER).read_text())
        echo(f"checkpoint {checkpoint.name} is unusable: {why}; trying the one before")
        checkpoint.rename(checkpoint.with_name(f"unusable-{checkpoint.name}"))
    return None


def recipe_changes(saved: dict, current: dict) -> list[str]:
    """Fields whose value differs between the checkpoint's recipe and the current one, outside ``MAY_CHANGE``.
    Fields added to rlreason since the checkpoint was written take their defaults (the behaviour it ran with)."""
    from rlreason.recipe import RunConfig
    from rlreason.section import flatten

    try:
        saved = RunConfig.model_validate(saved).model_dump(mode="json")
    except ValueError:  # a recipe this version no longer reads: compare it as written
        pass
    a, b = flatten(saved), flatten(current)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not k.startswith(MAY_CHANGE)]


def trim_metrics(run_dir: Path, step: int, lines: int | None = None) -> None:
    """Drop what the run logged after its checkpoint (the resumed run writes it again), atomically: all but the
    first ``lines`` lines (the count the checkpoint recorded), or without it every line of a step after
    ``step``."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by the crash
            continue
        if (len(kept) < lines) if lines is not None else record.get("step", 0) <= step:
            kept.append(line)
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    os.replace(tmp, path)
