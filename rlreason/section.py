"""The base of every recipe section (unknown keys are errors, a validated section is frozen), ``flatten``, and
the one-line description of a validation error."""

import difflib
from typing import get_args

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def flatten(tree: dict, prefix: str = "") -> dict:
    """A nested recipe mapping as ``{"section.field": value}``."""
    out = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def describe_error(err: dict, model: type[BaseModel], prefix: list[str] = ()) -> str:
    """One line for a pydantic error: ``field: what is wrong``, with the allowed keys (and a did-you-mean) for an
    unknown one."""
    loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
    field = ".".join([*prefix, *loc])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        allowed = allowed_keys(model, loc[:-1])
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{field}: unknown field{hint} (allowed: {', '.join(allowed)})"
    if "input" in err and not isinstance(err["input"], dict) and err["type"] != "missing":
        msg += f" (got {err['input']!r})"
    return f"{field}: {msg}"


def allowed_keys(model: type[BaseModel], parent: list[str]) -> list[str]:
    for part in parent:
        annotation = model.model_fields[part].annotation
        for option in (annotation, *get_args(annotation)):  # ``Section | None`` too
            if isinstance(option, type) and issubclass(option, BaseModel):
                model = option
    return sorted(model.model_fields)
