"""Recipe rules that tie fields of different sections together, or need the model directory's small files
(configs, safetensors headers, a saved adapter's config; never its weights). Run once by ``config.validate``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rlreason.recipe.sections import RecipeError, RunConfig

TRACKER_PACKAGES = {"wandb": "wandb", "mlflow": "mlflow"}  # output.trackers: the package each one needs


def check_across_sections(cfg: RunConfig) -> None:
    """Rules that tie fields together or need the model directory's files (never its weights)."""
    from rlreason.models.info import context_limit, has_chat_template, lora_target_candidates

    try:
        model_dir = Path(cfg.model.resolved_path())
    except ValueError as e:
        raise RecipeError(f"model.path: {e}") from None
    limit = context_limit(model_dir)
    if limit is not None and cfg.model.max_model_len > limit:
        raise RecipeError(f"model.max_model_len: {cfg.model.max_model_len} is above the model's own limit {limit} "
                          "(max_position_embeddings)")
    if cfg.tasks.template == "chat" and not has_chat_template(model_dir):
        raise RecipeError(f"tasks.template: 'chat' needs a model with a chat template; {cfg.model.path!r} has none "
                          "(allowed: plain)")
    lora = cfg.model.lora
    if lora is not None and cfg.model.adapter is not None:
        raise RecipeError("model.lora: the adapter in model.adapter brings its own LoRA settings; set one of the two")
    if cfg.train.steps is None and cfg.tasks.stream is None:
        raise RecipeError("train.steps: null (train until the stream closes) needs tasks.stream")
    if cfg.tasks.stream is not None and not Path(cfg.tasks.stream).parent.is_dir():
        raise RecipeError(f"tasks.stream: no directory {str(Path(cfg.tasks.stream).parent)!r} to read a stream from")
    _check_continual(cfg)
    from rlreason.recipe.resources import check_recipe

    check_recipe(cfg)
    if cfg.rollout.mode == "async" and (cfg.tasks.stream is not None or cfg.continual.phases):
        raise RecipeError("rollout.mode: 'async' is for rlreason train on tasks (the online and continual drivers "
                          "are synchronous; allowed here: sync)")
    for tracker in cfg.output.trackers:
        if importlib.util.find_spec(TRACKER_PACKAGES[tracker]) is None:
            raise RecipeError(f"output.trackers: {tracker!r} is not installed (pip install 'rlreason[trackers]')")
    _check_tasks(cfg, has_chat_template(model_dir))
    if cfg.model.adapter is not None:
        check_saved_adapter(Path(cfg.model.adapter), model_dir)
    if cfg.team.members:
        check_team(cfg.team, model_dir, lora)
    if lora is not None:
        allowed = lora_target_candidates(model_dir)
        for name in lora.target_modules:
            if name != "all" and name not in allowed:
                raise RecipeError(f"model.lora.target_modules: the model has no LoRA-servable layer {name!r} "
                                  f"(allowed: all, {', '.join(allowed)})")


def _check_tasks(cfg: RunConfig, chat_template: bool) -> None:
    from rlreason.tasks import get_task

    names = [d.task_name for d in cfg.tasks.data]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise RecipeError(f"tasks.data: two data tasks are named {twice[0]!r}; give them different names (name:)")
    if cfg.rollout.max_tokens >= cfg.model.max_model_len:
        raise RecipeError(f"rollout.max_tokens: {cfg.rollout.max_tokens} leaves no room for a prompt in "
                          f"model.max_model_len {cfg.model.max_model_len}")
    for field in ("train", "eval"):
        for name in getattr(cfg.tasks, field):
            task = get_task(name)
            if field == "train" and not getattr(task, "train", True):
                raise RecipeError(f"tasks.train: task {name!r} has no training rows (every row is held out)")
            if cfg.tasks.fewshot and not getattr(task, "has_fewshot", False):
                raise RecipeError(f"tasks.fewshot: task {name!r} has no worked training examples to show (its own "
                                  "data: give a solution column; allowed here: 0)")
            if getattr(task, "needs_chat_template", False) and not chat_template:
                raise RecipeError(f"tasks.{field}: task {name!r} has chat messages but the model has no chat "
                                  "template")
            size = getattr(task, "held_out_size", None)
            if field == "eval" and size is not None and cfg.tasks.eval_size is not None and cfg.tasks.eval_size > size:
                raise RecipeError(f"tasks.eval_size: {cfg.tasks.eval_size} is more than task {name!r} holds out "
                                  f"({size})")


def _check_continual(cfg: RunConfig) -> None:
    from rlreason.models.info import servable_lora_rank

    c = cfg.continual
    if (c.anchor or c.cbp_every) and not cfg.model.uses_lora:
        raise RecipeError(f"continual.{'anchor' if c.anchor else 'cbp_every'}: works on a LoRA adapter; set model.lora")
    if (c.adapters == "per_phase" or c.merge) and not cfg.model.uses_lora:
        raise RecipeError(f"continual.{'merge' if c.merge else 'adapters'}: works on LoRA adapters; set model.lora")
    if c.adapters == "per_phase":
        try:
            servable_lora_rank(cfg.served_lora_rank)
        except ValueError as e:
            raise RecipeError(f"continual.adapters: the phases' adapters are served as one; {e}") from None
    if c.anchor and not cfg.algorithm.needs_reference:
        raise RecipeError("continual.anchor: its weight is algorithm.kl_coef, which is 0 (set it above 0)")


def check_saved_adapter(adapter: Path, model_dir: Path, field: str = "model.adapter") -> None:
    """A saved adapter must fit the model and be servable: its rank, and layers the model has."""
    from rlreason.models.info import adapter_settings, lora_target_candidates, servable_lora_rank

    settings = adapter_settings(adapter)
    try:
        servable_lora_rank(int(settings.get("r", 0)))
    except ValueError as e:
        raise RecipeError(f"{field}: {e}") from None
    targets = settings.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else list(targets)
    missing = sorted(set(targets) - set(lora_target_candidates(model_dir)))
    if missing:
        raise RecipeError(f"{field}: adapts layers this model lacks or vLLM cannot serve: {', '.join(missing)}")


def check_team(team, model_dir: Path, lora) -> None:
    """``team``: every member's adapter exists and fits the model; members to train need model.lora; the encoder and
    a saved coordinator exist. RecipeError (one line)."""
    from rlreason.models.info import adapter_misfits

    if team.coordinator.init is not None and not Path(team.coordinator.init).is_file():
        raise RecipeError(f"team.coordinator.init: no saved coordinator at {team.coordinator.init!r} (a team run's "
                          "coordinator.pt)")
    encoder = team.coordinator.encoder
    if encoder is not None and not (Path(encoder) / "config.json").is_file():
        raise RecipeError(f"team.coordinator.encoder: no model directory (with config.json) at {encoder!r}")
    for m in team.members:
        field = f"team.members[{m.name}]"
        if m.train is not None:
            from rlreason.recipe.sections import _resolve
            from rlreason.tasks import TASKS

            try:
                _resolve(TASKS, m.train)
            except ValueError as e:
                raise RecipeError(f"{field}.train: {e}") from None
            if lora is None:
                raise RecipeError(f"{field}.train: a specialist is a LoRA adapter; set model.lora (e.g. {{rank: 8}})")
        path = m.adapter_dir()
        if path is None:
            continue
        if not (path / "adapter_config.json").is_file():
            raise RecipeError(f"{field}.adapter: no PEFT adapter (adapter_config.json) at {m.adapter!r} or its "
                              "final/")
        check_saved_adapter(path, model_dir, f"{field}.adapter")
        misfits = adapter_misfits(path, model_dir)
        if misfits:
            raise RecipeError(f"{field}.adapter: made for another model: {misfits[0]} fits none of this model's "
                              "layer widths")
