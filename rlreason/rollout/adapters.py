"""Serve a LoRA policy in a running vLLM engine: each pushed adapter version becomes a new served adapter.

vLLM has no public in-memory adapter load (vllm#20149), so each version is written as a normal PEFT directory
(``adapter_config.json`` + ``adapter_model.safetensors``) under a tmpfs root (``/dev/shm`` when there is one) and
loaded through the public ``LLMEngine.add_lora``. Trade-off: one small file write and read per push (the adapter
only: kilobytes to a few megabytes), in exchange for staying on vLLM's supported API instead of patching its LoRA
manager, which changes between versions.

Every push gets a new name and a new integer id (one more than the push before, whatever its version: the
primitive API may push one version twice, or an older one after a load): vLLM silently reuses a cached adapter
under a known id, and its prefix cache can serve stale KV entries of an adapter reloaded under the same name
(vllm#42125). After the new version is loaded the previous one is removed from the engine and its directory
deleted, so engine memory and disk stay flat however many pushes a run makes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path


def _tmpfs_root() -> str:
    """A fresh directory for this engine's adapter versions, named after its process; those left by engines
    that died without cleaning up (killed, out of memory) are removed first."""
    from rlreason.process_info import run_tmp_root

    base = run_tmp_root()  # the run's own directory there: removed when the run ends, however it ends
    for left in Path(base).glob(f"{PREFIX}*-*"):
        pid = left.name[len(PREFIX):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(left, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base)


PREFIX = "rlreason-adapters-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class AdapterVersions:
    """The adapter versions one engine serves: only the current one stays loaded."""

    def __init__(self, llm, initial: str | None = None) -> None:
        from vllm.lora.request import LoRARequest

        self._llm, self._request_cls = llm, LoRARequest
        self.root = Path(_tmpfs_root())
        # tmpfs is memory: remove the versions when the engine goes, even if nobody calls close()
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.root), True)
        self.current = None  # the LoRARequest of the version being served; None: the base model (B = 0)
        self._owned: Path | None = None  # directory of the current version, if we wrote it
        self.config: dict | None = None  # the pushed version's adapter config and tensors (ES builds members
        self.tensors: dict | None = None  # around them)
        self._member_ids = 1 << 30  # ids of extra adapters (members), far from the pushes' (1, 2, ...)
        self._pushes = 1  # the id of the last push (1: the initial adapter's, if any)
        if initial is not None:
            self._serve(self._request_cls("policy-v0", 1, str(initial)), owned=None)

    def push(self, version: int, config: dict, tensors: dict) -> None:
        """Write version ``version`` of the adapter, load it, then drop the previous version."""
        from rlreason.models.info import write_adapter

        self._pushes += 1
        directory = self.root / f"v{version}-{self._pushes}"
        directory.mkdir(parents=True, exist_ok=False)
        try:
            write_adapter(directory, config, tensors)
            self._serve(self._request_cls(f"policy-v{version}-{self._pushes}", self._pushes, str(directory)),
                        owned=directory)
            self.config, self.tensors = config, tensors
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    def _serve(self, request, owned: Path | None) -> None:
        if not self._llm.llm_engine.add_lora(request):
            raise RuntimeError(f"vLLM refused adapter {request.lora_name} from {request.lora_path}")
        previous, previous_dir = self.current, self._owned
        self.current, self._owned = request, owned
        if previous is not None:
            self._llm.llm_engine.remove_lora(previous.lora_int_id)
        if previous_dir is not None:
            shutil.rmtree(previous_dir, ignore_errors=True)

    def add_member(self, name: str, tensors: dict):
        """Serve another adapter beside the policy (the pushed version's config, these tensors); its request."""
        from rlreason.models.info import write_adapter

        self._member_ids += 1
        directory = self.root / f"member-{self._member_ids}"
        request = self._request_cls(name, self._member_ids, str(directory))
        try:
            write_adapter(directory, self.config, tensors)
            if not self._llm.llm_engine.add_lora(request):
                raise RuntimeError(f"vLLM refused adapter {name}")
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return request

    def drop_members(self, requests: list) -> None:
        for request in requests:  # each one, whatever happened to the others
            try:
                self._llm.llm_engine.remove_lora(request.lora_int_id)
            except Exception:  # noqa: BLE001 - not loaded (a failed batch): its files still go
                pass
            shutil.rmtree(request.lora_path, ignore_errors=True)

    def loaded(self) -> set[int]:
        """Adapter ids the engine holds now."""
        return set(self._llm.llm_engine.list_loras())

    def close(self) -> None:
        self._finalizer()


TEAM_IDS = 1 << 29  # ids of a team's member adapters (below the ES members', far above the versions')


def load_members(llm, members: dict[str, str | None], served: dict) -> dict:
    """Load a team's member adapters into the engine (kept for its life; directories read, never deleted); a
    member already served under the same directory is kept. Returns name -> LoRARequest (None: the base model)."""
    from vllm.lora.request import LoRARequest

    out, next_id = {}, max([r.lora_int_id for r in served.values() if r is not None] + [TEAM_IDS]) + 1
    for name, path in sorted(members.items()):
        old = served.get(name)
        if path is None or (old is not None and old.lora_path == str(path)):
            out[name] = None if path is None else old
            continue
        request, next_id = LoRARequest(f"team-{name}", next_id, str(path)), next_id + 1
        if not llm.llm_engine.add_lora(request):
            raise RuntimeError(f"vLLM refused team member {name}'s adapter {path}")
        out[name] = request
    return out
