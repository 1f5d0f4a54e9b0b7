"""The recipe's ``team`` section (``rlreason team``): the pool, the roles, the turn budget and the coordinator (its
checks against the model directory are ``rlreason.recipe.checks.check_team``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from rlreason.section import Section


class Member(Section):
    name: str = Field(min_length=1, description="how the coordinator and the reports call it")
    adapter: str | None = Field(None, description="a saved LoRA adapter directory, or a run directory (its "
                                "final/); neither adapter nor train: the base model")
    train: str | None = Field(None, description="a task: rlreason team first trains this specialist on it "
                              "(team.specialist_steps, the recipe's model.lora), once per run directory")

    @model_validator(mode="after")
    def _one_source(self) -> "Member":
        if self.adapter is not None and self.train is not None:
            raise ValueError(f"{self.name}: give adapter or train, not both")
        return self

    def adapter_dir(self) -> Path | None:
        """The adapter directory: a run directory's final/ when given a run."""
        if self.adapter is None:
            return None
        path = Path(self.adapter)
        return path / "final" if not (path / "adapter_config.json").is_file() and \
            (path / "final" / "adapter_config.json").is_file() else path


class Role(Section):
    name: str = Field(min_length=1)
    prompt: str = Field("", description="appended to the transcript before the member's turn")
    answers: bool = Field(False, description="its turns are answers: the last one is the episode's final answer")


DEFAULT_ROLES = (
    Role(name="thinker", prompt="Think about how to solve the problem above. Do not give the final answer yet."),
    Role(name="worker", prompt="Solve the problem above and give the final answer.", answers=True),
    Role(name="verifier", prompt="Check the answer above step by step. If it is wrong, say where."),
)


MIN_SAMPLES = {"es": 1, "grpo": 2}  # episodes per problem each optimizer needs (grpo compares a problem's episodes)


class CoordinatorConfig(Section):
    """The linear head over the encoder's features of the transcript, and how it is optimised."""

    optimizer: Literal["es", "grpo"] = Field("es", description="es: perturbed heads, seeds only, rank-normalised "
                                             "rewards; grpo: sampled choices, group-relative advantages, the "
                                             "policy gradient of the choices' log-probabilities")
    generations: int = Field(20, ge=0, description="optimisation steps (0: report the starting head: zeros, or init)")
    problems: int = Field(24, ge=1, description="training problems per generation (mixed over tasks.train)")
    population: int = Field(8, ge=2, description="es: members per generation (antithetic pairs)")
    sigma: float = Field(1.0, gt=0.0, description="es: perturbation scale of the head")
    lr: float | None = Field(None, gt=0.0, description="step size (es: of the mean head; grpo: of the gradient); "
                             "null: the optimizer's own (es 1.0, grpo 4.0)")
    samples: int | None = Field(None, ge=1, description="episodes per training problem (es: per member; grpo: the "
                                "group, at least 2); null: the optimizer's own (es 2, grpo 4)")
    encoder: str | None = Field(None, description="the model whose hidden states the head reads (default: "
                                "model.path)")
    init: str | None = Field(None, description="start from a saved coordinator (a team run's coordinator.pt); with "
                             "generations: 0, evaluate it")

    @model_validator(mode="after")
    def _group(self) -> "CoordinatorConfig":
        least = MIN_SAMPLES[self.optimizer]
        if self.samples is not None and self.samples < least:
            raise ValueError(f"samples: {self.optimizer} needs at least {least} episodes per problem, not "
                             f"{self.samples}")
        return self

    @field_validator("population")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"{v}: antithetic pairs need an even population")
        return v


class TeamConfig(Section):
    """``rlreason team``: a pool of models routed turn by turn by an evolved coordinator (TRINITY)."""

    members: tuple[Member, ...] = ()
    roles: tuple[Role, ...] = DEFAULT_ROLES
    max_turns: int = Field(3, ge=1, description="member turns per episode (the coordinator may stop earlier)")
    specialist_steps: int = Field(30, ge=1, description="training steps of each member given train: TASK")
    coordinator: CoordinatorConfig = CoordinatorConfig()

    @model_validator(mode="after")
    def _names(self) -> "TeamConfig":
        for what, items in (("members", self.members), ("roles", self.roles)):
            names = [i.name for i in items]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"{what}: {', '.join(twice)} named twice")
        if not self.roles:
            raise ValueError("roles: empty; give at least one, e.g. [{name: worker, answers: true}]")
        return self

