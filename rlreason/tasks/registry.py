"""The task registry: every task (synthetic, benchmark, your own data) by name."""

from __future__ import annotations

from rlreason.registry import Registry

TASKS: Registry = Registry("task")


def get_task(name: str):
    return TASKS.get(name)


def task_listing() -> list[tuple[str, str]]:
    """(name, description) of every registered task, then of the names a family resolves (reasoning_gym:NAME)."""
    return [(name, TASKS.get(name).description) for name in TASKS.names()] + sorted(TASKS.family_names().items())
