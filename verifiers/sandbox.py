"""Run model-written Python in a fresh, isolated, resource-limited process and call its functions from outside.

Each ``Sandbox`` is one program in one process tree, separate from the trainer:
- Linux namespaces where the kernel allows (``unshare``: new pid, mount, network and IPC namespaces): no network
  (only a downed loopback), no view of or signal to any outside process, a chroot holding only read-only system
  libraries, the interpreter and an empty 32 MiB tmpfs working directory; uid/gid 65534, no capabilities.
  ``ISOLATION`` says what this machine allowed; without namespaces a loud warning is logged and only the limits
  below apply.
- Limits: CPU seconds, address space, file size 1 MiB, 32 open files, 32 processes, no core files; a wall-clock
  deadline for the whole program; cleared environment; stdout/stderr discarded (a flood costs nothing).
- Afterwards the whole process group is killed (and with namespaces the whole pid namespace dies with it).

The program's functions are called through a pipe protocol (``call``); arguments and return values cross as plain
data only (numbers, strings, bytes, lists, tuples, sets, dicts). The verdict is computed by the caller on those
values, outside the program, so exiting early, patching ``assert`` or printing "passed" cannot pass a test.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rlreason.process_info import die_with_parent, run_tmp_root
from rlreason.verifiers.sandbox_child import MAX_MESSAGE, decode, encode

CHILD = Path(__file__).with_name("sandbox_child.py")
log = logging.getLogger(__name__)


class SandboxError(RuntimeError):
    """The program failed to load, crashed, timed out or broke the protocol."""


class CandidateRaised(Exception):
    """A call into the program raised (the program's exception type and message)."""


@functools.cache
def isolation() -> str:
    """'namespaces' when this machine lets us create pid/mount/net/ipc namespaces and chroot, else 'rlimits'."""
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return _degraded("no unshare(1)")
    try:
        with Sandbox("def f():\n    return 1\n", isolated=True, wall_s=20) as box:
            if box.call("f") == 1:
                return "namespaces"
    except Exception as e:  # noqa: BLE001 - any failure means: not available here
        return _degraded(str(e)[:200])
    return _degraded("probe program failed")


def _degraded(why: str) -> str:
    log.warning("code sandbox: Linux namespaces unavailable (%s); programs run with resource limits only, "
                "without network, filesystem or process isolation", why)
    return "rlimits"


def _new_session() -> None:  # in the child before exec: its own process group, killable as one, and gone with
    os.setsid()                  # the scorer process that started it (unshare --kill-child ends the namespace)
    die_with_parent()


class Sandbox:
    """One program. ``with Sandbox(source) as box: box.call("f", 1, 2)``. ``box.names``: its top-level callables."""

    def __init__(self, source: str, *, wall_s: float = 10.0, cpu_s: int = 5, memory_bytes: int = 1 << 30,
                 isolated: bool | None = None) -> None:
        self.deadline = time.monotonic() + wall_s
        self.failure: str | None = None
        isolated = (isolation() == "namespaces") if isolated is None else isolated
        self._root = tempfile.mkdtemp(prefix="rlreason-sandbox-", dir=run_tmp_root())
        req_r, self._req_w = os.pipe()
        self._resp_r, resp_w = os.pipe()
        for fd in (req_r, resp_w):
            os.set_inheritable(fd, True)
        cmd = [sys._base_executable, "-I", "-S", str(CHILD), self._root, str(req_r), str(resp_w),
               "1" if isolated else "0", str(cpu_s), str(memory_bytes)]
        if isolated:
            cmd = ["unshare", "--fork", "--pid", "--mount", "--net", "--ipc", "--kill-child", *cmd]
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, env={}, cwd=self._root,
                                         pass_fds=(req_r, resp_w), preexec_fn=_new_session)
        finally:
            os.close(req_r)
            os.close(resp_w)
        try:
            self.proc.stdin.write(source.encode("utf-8", "replace"))
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            hello = self._receive()
        except BaseException:
            self.close()
            raise
        if "ready" not in hello:
            self.close()
            raise SandboxError(hello.get("error", "program did not start"))
        self.names: list[str] = [str(n) for n in hello["ready"]]
        self.modules: list[str] = [str(m) for m in hello.get("modules", [])]

    def call(self, name: str, *args, **kwargs):
        """Call the program's function ``name``; returns its (decoded) value or raises ``CandidateRaised``.

        A ``SandboxError`` (dead, timed out, broken protocol) is also kept in ``failure``: the program is unusable
        from then on, whoever catches the exception."""
        try:
            return self._call(name, args, kwargs)
        except SandboxError as e:
            self.failure = self.failure or str(e)
            raise

    def _call(self, name: str, args: tuple, kwargs: dict):
        payload = json.dumps({"name": name, "args": encode(list(args)), "kwargs": encode(dict(kwargs))}).encode()
        try:
            os.write(self._req_w, struct.pack("<I", len(payload)) + payload)
        except BrokenPipeError:
            raise SandboxError("program exited") from None
        reply = self._receive()
        if "raised" in reply:
            raise CandidateRaised(f"{reply['raised']}: {reply.get('message', '')}")
        if "value" not in reply:
            raise SandboxError(reply.get("error", "malformed reply"))
        try:
            return decode(reply["value"])
        except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as e:
            raise SandboxError(f"malformed value: {e}") from None

    def _receive(self) -> dict:
        size = struct.unpack("<I", self._read(4))[0]
        if size > MAX_MESSAGE:
            raise SandboxError("reply too large")
        try:
            message = json.loads(self._read(size))
        except (ValueError, RecursionError):
            raise SandboxError("malformed reply") from None
        if not isinstance(message, dict):
            raise SandboxError("malformed reply")
        return message

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self._resp_r], [], [], left)[0]:
                raise SandboxError("timed out")
            chunk = os.read(self._resp_r, n - len(data))
            if not chunk:
                raise SandboxError(f"program exited (code {self.proc.poll()})")
            data += chunk
        return data

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, AttributeError):
            pass
        if hasattr(self, "proc"):
            self.proc.wait()
        for fd in (self._req_w, self._resp_r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
