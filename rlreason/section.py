"""The base of every recipe section (unknown keys are errors, a validated section is frozen), and ``flatten``."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def flatten(tree: dict, prefix: str = "") -> dict:
    """A nested recipe mapping as ``{"section.field": value}``."""
    out = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out
