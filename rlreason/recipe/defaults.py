"""Recipe fields left to the model, the tasks and the machine: ``null`` or ``auto`` in a recipe, resolved once
while the recipe is validated, so the frozen recipe (and ``recipe.yaml``, ``eval.json``) holds the values the run
used. Read from the model directory's small files and ``/proc/cpuinfo``; nothing here loads weights or imports
torch.

- ``model.max_model_len``: the model's own limit (``max_position_embeddings``), capped on CPUs by the tokens one
  sequence can hold in ``rollout.kv_cache_gib`` and by ``MAX_DEFAULT_CONTEXT``.
- ``rollout.max_tokens``: the largest generation budget the recipe's tasks declare (GSM8K 512, MATH 1024, AIME
  4096, ...), else the model's ``generation_config.json`` ``max_new_tokens``, else ``FALLBACK_BUDGET``; always
  leaving room for prompts in the context.
- ``tasks.template``: ``chat`` when the model ships a chat template, else ``plain``.
- ``model.dtype``: bfloat16 where it is fast (GPUs; CPUs with AVX-512 BF16 or AMX), float32 elsewhere.
Each value chosen here comes with a note saying why (``resolution_notes``), printed when a run starts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rlreason.recipe.sections import RecipeError, RunConfig

FALLBACK_BUDGET = 512  # generation tokens when neither the tasks nor the model say
MAX_DEFAULT_CONTEXT = 32768  # a default context longer than this is the recipe's to ask for


def resolve_defaults(cfg: RunConfig) -> RunConfig:
    """``cfg`` with every ``null``/``auto`` field above replaced by its value; the notes ride along."""
    from rlreason.models.info import has_chat_template

    try:
        model_dir = Path(cfg.model.resolved_path())
    except ValueError as e:
        raise RecipeError(f"model.path: {e}") from None
    notes: dict[str, str] = {}
    model, rollout, tasks = {}, {}, {}
    if cfg.model.dtype == "auto":
        model["dtype"], notes["model.dtype"] = training_dtype(cfg)
    if cfg.model.max_model_len is None:
        model["max_model_len"], notes["model.max_model_len"] = default_context(cfg, model_dir)
    if cfg.tasks.template == "auto":
        chat = has_chat_template(model_dir)
        tasks["template"] = "chat" if chat else "plain"
        notes["tasks.template"] = "the model's chat template" if chat else "the model has no chat template"
    resolved = _updated(cfg, model=model, tasks=tasks)
    if cfg.rollout.max_tokens is None:
        rollout["max_tokens"], notes["rollout.max_tokens"] = generation_budget(resolved, model_dir)
    resolved = _updated(resolved, rollout=rollout)
    resolved._notes = {**cfg._notes, **notes}
    return resolved


def _updated(cfg: RunConfig, **sections: dict) -> RunConfig:
    changes = {name: getattr(cfg, name).model_copy(update=fields) for name, fields in sections.items() if fields}
    return cfg.model_copy(update=changes) if changes else cfg


def resolution_notes(cfg: RunConfig) -> list[str]:
    """``field value (why)`` for every field this run's recipe left to be resolved."""
    values = {"model.dtype": cfg.model.dtype, "model.max_model_len": cfg.model.max_model_len,
              "rollout.max_tokens": cfg.rollout.max_tokens, "tasks.template": cfg.tasks.template}
    return [f"{field} {values[field]} ({why})" for field, why in cfg._notes.items()]


# -- the machine ------------------------------------------------------------------------------------------------
CPU_BF16_ENV = "RLREASON_CPU_BF16"  # 1 or 0: overrides what /proc/cpuinfo says (a VM may hide or fake flags)


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX): there bf16 autocast is fast; on AVX2-only
    CPUs PyTorch emulates it and a training step runs ~10x slower than in float32 (measured here).
    ``$RLREASON_CPU_BF16`` (1/0) overrides the reading of this machine's flags."""
    if cpuinfo is None and os.environ.get(CPU_BF16_ENV) in ("0", "1"):
        return os.environ[CPU_BF16_ENV] == "1"
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def training_dtype(cfg: RunConfig) -> tuple[str, str]:
    if cfg.train.gpus_per_learner > 0:
        return "bfloat16", "learners on GPUs"
    if cpu_has_native_bf16():
        return "bfloat16", "this CPU has native bf16: autocast in the learner, engines in float32"
    return "float32", "this CPU has no native bf16 (AVX-512 BF16/AMX): bf16 would be ~10x slower"


def bf16_warning(cfg: RunConfig) -> str | None:
    """One line for a recipe that asks for bfloat16 on a CPU learner that emulates it, else None."""
    if cfg.model.dtype != "bfloat16" or cfg.train.gpus_per_learner > 0 or cpu_has_native_bf16() \
            or "model.dtype" in cfg._notes:
        return None
    return ("warning: model.dtype bfloat16 on a CPU without native bf16 (no AVX-512 BF16 or AMX): PyTorch emulates it "
            "and the learner's update runs ~10x slower (measured: tiny model 10.3 s vs 0.9 s in float32); set "
            "model.dtype=auto or float32")


# -- the model and the tasks ----------------------------------------------------------------------------------------
def _model_config(model_dir: Path) -> dict:
    path = model_dir / "config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    return config.get("text_config", config)  # multimodal configs nest the language model's


def kv_bytes_per_token(config: dict, dtype: str) -> int | None:
    """Bytes of keys and values one token occupies in the engine's cache, None when the config does not say."""
    try:
        layers, heads = int(config["num_hidden_layers"]), int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return 2 * layers * kv_heads * head_dim * (4 if dtype == "float32" else 2)


def default_context(cfg: RunConfig, model_dir: Path) -> tuple[int, str]:
    from rlreason.models.info import context_limit

    limit = context_limit(model_dir)
    value, why = (limit, "the model's max_position_embeddings") if limit else (2048, "the model's config gives no "
                                                                                     "limit")
    if value > MAX_DEFAULT_CONTEXT:
        value, why = MAX_DEFAULT_CONTEXT, f"the model allows {limit}; longer only when the recipe asks"
    per_token = kv_bytes_per_token(_model_config(model_dir), cfg.engine_dtype)
    if cfg.rollout.gpus_per_worker == 0 and per_token:
        fits = cfg.rollout.kv_cache_gib * 2**30 // per_token
        if fits < value:
            value, why = int(fits), f"what rollout.kv_cache_gib {cfg.rollout.kv_cache_gib} holds; the model allows " \
                                    f"{limit}"
    return value, why


def declared_budget(task) -> int | None:
    return getattr(task, "max_tokens", None)


def generation_budget(cfg: RunConfig, model_dir: Path) -> tuple[int, str]:
    """The largest budget the recipe's tasks declare (train, eval, continual phases), else the model's
    ``max_new_tokens``, else ``FALLBACK_BUDGET``; capped so a prompt of a quarter of the context (at most 512
    tokens) still fits."""
    from rlreason.tasks import get_task

    names = dict.fromkeys([*cfg.tasks.train, *cfg.tasks.eval, *(p.task for p in cfg.continual.phases)])
    budgets = {name: declared_budget(get_task(name)) for name in names}
    budgets = {name: b for name, b in budgets.items() if b}
    if budgets:
        top = max(budgets, key=budgets.get)
        value, why = budgets[top], f"task {top}'s budget"
    else:
        path = model_dir / "generation_config.json"
        own = json.loads(path.read_text()).get("max_new_tokens") if path.is_file() else None
        value, why = (int(own), "the model's generation_config") if own else (FALLBACK_BUDGET, "no task declares one")
    room = cfg.model.max_model_len - min(512, cfg.model.max_model_len // 4)
    if value > room:
        value, why = room, f"{why} is {value}, capped to leave prompts room in model.max_model_len " \
                           f"{cfg.model.max_model_len}"
    return value, why
