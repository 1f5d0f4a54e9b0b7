"""A team's pool, ready to serve: members given ``train: TASK`` are trained first (``rlreason train`` on that task,
the recipe's model and LoRA settings, ``team.specialist_steps`` steps) into ``<run>/members/<name>/``; a member
already trained there (an interrupted or repeated run) is reused."""

from __future__ import annotations

from pathlib import Path

from rlreason.recipe import RunConfig


def specialist_config(cfg: RunConfig, name: str, task: str) -> RunConfig:
    """The recipe of member ``name``'s training run: this recipe, on ``task`` only, without the team."""
    from rlreason.recipe.loading import validate

    data = cfg.model_dump(mode="json", exclude={"team"})
    data["algorithm"] = cfg.algorithm.model_dump(mode="json")
    data.update(name=f"{cfg.name}-{name}")
    data["tasks"] = {**data["tasks"], "train": [task], "eval": [task]}
    data["train"] = {**data["train"], "steps": cfg.team.specialist_steps}
    data["eval"] = {**data["eval"], "before": False, "every": 0}
    data["output"] = {**data["output"], "run": str(cfg.run_dir / "members" / name)}
    return validate(data)


def prepare_members(cfg: RunConfig, console=None) -> dict[str, str | None]:
    """Every member's adapter directory (None: the base model), training the specialists that are not yet."""
    from rlreason.drivers.train import train

    pool = {}
    for m in cfg.team.members:
        if m.train is None:
            path = m.adapter_dir()
            pool[m.name] = None if path is None else str(path.resolve())
            continue
        final = cfg.run_dir / "members" / m.name / "final"
        if not (final / "adapter_config.json").is_file():
            if console is not None:
                console.print(f"[bold]team[/]: training member [cyan]{m.name}[/] on {m.train} "
                              f"({cfg.team.specialist_steps} steps)")
            train(specialist_config(cfg, m.name, m.train), console)
        pool[m.name] = str(Path(final).resolve())
    return pool
