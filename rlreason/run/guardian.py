"""Nothing outlives its run: a watchdog process that waits for the command that started it to end, however it ends
(a normal exit, Ctrl-C, SIGKILL, the kernel's out-of-memory killer), then ends every process the run started and
removes the run's files on tmpfs.

How it finds them: ``mark()`` puts a fresh id into the command's environment (``RLREASON_RUN_MARK``, a colon-separated
list, so a run started by another run, as ``rlreason compare`` starts them, carries both ids) before anything is
started. Every process the run starts inherits it and shows it in ``/proc/<pid>/environ``: Ray's GCS, raylet,
agents and workers, the engines, the learners, the scorer's worker processes. The code sandbox clears the
environment of the programs it runs; they die with their scorer process instead (parent-death signal, then
``unshare --kill-child``). The run's own tmpfs files (LoRA adapter versions, sandbox roots) live under one
directory named by the mark (``RLREASON_RUN_TMP``), removed at the end.

The watchdog runs in a session of its own (a signal to the command's process group does not reach it), polls the
command's pid every 0.2 s and notes its descendants every 0.5 s (processes that rename themselves, as Ray's agents
do, can overwrite their environment block: the family tree still knows them); then it kills the family and sweeps:
SIGKILL to every marked process, again until a sweep finds none.
multiprocessing's resource trackers are left a few seconds to unlink the semaphores they track (on tmpfs) once
the processes they serve are gone, then killed too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rlreason.process_info import MARK_ENV, TMP_ENV

POLL_S = 0.2


def mark() -> subprocess.Popen | None:
    """Mark this process's environment for everything it will start, and start the watchdog (Linux; elsewhere
    nothing). Call before any process of the run starts."""
    if not sys.platform.startswith("linux"):
        return None
    run_id = secrets.token_hex(8)
    os.environ[MARK_ENV] = ":".join(filter(None, [os.environ.get(MARK_ENV), run_id]))
    base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
    tmp = base / f"rlreason-run-{run_id}"
    tmp.mkdir(mode=0o700)
    os.environ[TMP_ENV] = str(tmp)
    return subprocess.Popen([sys.executable, "-m", "rlreason.run.guardian", str(os.getpid()), run_id, str(tmp)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)


def marked(run_id: str) -> list:
    """The live processes carrying ``run_id`` in their environment (this watchdog excepted). Read from
    ``/proc/<pid>/environ`` directly: processes that rename themselves (Ray's ``ray::DashboardAgent``) overwrite the
    start of that block, and psutil's parser then sees no variables at all."""
    import psutil

    found, key = [], f"{MARK_ENV}=".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            for item in (entry / "environ").read_bytes().split(b"\0"):
                if item.startswith(key) and run_id in item[len(key):].decode(errors="replace").split(":"):
                    with contextlib.suppress(psutil.Error):
                        process = psutil.Process(int(entry.name))
                        if process.status() != psutil.STATUS_ZOMBIE:
                            found.append(process)
                    break
    return found


def _is_tracker(process) -> bool:
    with contextlib.suppress(Exception):
        return "resource_tracker" in " ".join(process.cmdline())
    return False


def sweep(run_id: str, tracker_grace_s: float = 5.0, limit_s: float = 20.0) -> int:
    """SIGKILL every marked process (resource trackers last, after ``tracker_grace_s``); returns how many."""
    import psutil

    killed, start = 0, time.monotonic()
    while time.monotonic() - start < limit_s:
        found = marked(run_id)
        late = time.monotonic() - start > tracker_grace_s
        targets = [p for p in found if late or not _is_tracker(p)]
        if not found:
            break
        for process in targets:
            with contextlib.suppress(psutil.Error):
                process.kill()
                killed += 1
        time.sleep(POLL_S)
    return killed


def watch(pid: int, run_id: str, tmp: str, every_s: float = 0.5) -> None:
    """Wait for ``pid`` to end, noting its descendants as it runs (a process that renames itself, as Ray's agents
    do, may overwrite its environment block: the family tree still has it); then end them and the marked ones."""
    import psutil

    family: dict[int, float] = {}  # pid -> create time (a pid reused since is not ours)
    try:
        command, last = psutil.Process(pid), 0.0
        while command.is_running() and command.status() != psutil.STATUS_ZOMBIE:
            if time.monotonic() - last > every_s:
                last = time.monotonic()
                with contextlib.suppress(psutil.Error):
                    family.update({c.pid: c.create_time() for c in command.children(recursive=True)})
            time.sleep(POLL_S)
    except psutil.Error:
        pass
    family.pop(os.getpid(), None)
    for child, created in family.items():
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(child)
            if process.create_time() == created and not _is_tracker(process):
                process.kill()
    sweep(run_id)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2], sys.argv[3])
