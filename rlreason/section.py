"""The base of every recipe section: unknown keys are errors, and a validated section is frozen."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
