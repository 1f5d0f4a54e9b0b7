"""What every process of a run knows about itself: an actor's node and peak memory (on a cluster the driver only
joined, the actors are not the driver's descendants and may be on other nodes: they report these themselves), the
run's directory on tmpfs, and dying with its parent. ``rlreason.run.guardian`` sets the marks these read."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

MARK_ENV = "RLREASON_RUN_MARK"  # the ids of the runs this process belongs to (colon-separated)
TMP_ENV = "RLREASON_RUN_TMP"  # the run's directory on tmpfs, removed when the run ends however it ends


class ActorInfo:
    def peak_rss_bytes(self) -> int:
        return own_peak_rss_bytes()

    def where(self) -> dict:
        """The Ray node this actor runs on (id and address), its pid and the GPUs it was given."""
        import ray

        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(), "node_ip": ray.util.get_node_ip_address(), "pid": os.getpid(),
                "gpus": [str(g) for g in context.get_accelerator_ids().get("GPU", [])]}


def own_peak_rss_bytes() -> int:
    """This process's peak resident memory plus the largest of its finished children's (an actor's own report: on a
    cluster the driver only joined, the actors are not its descendants and may live on other nodes)."""
    import resource

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return kib * 1024


def run_tmp_root() -> str:
    """The run's directory on tmpfs (``/dev/shm`` when there is one), for files that must go with the run."""
    root = os.environ.get(TMP_ENV)
    if root and Path(root).is_dir():
        return root
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else tempfile.gettempdir()


def die_with_parent() -> None:
    """In a child process: SIGKILL it when its parent dies (Linux ``PR_SET_PDEATHSIG``; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
