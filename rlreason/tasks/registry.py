"""The task registry: every task (synthetic, benchmark, your own data) by name."""

from __future__ import annotations

from rlreason.registry import Registry

TASKS: Registry = Registry("task")


def get_task(name: str):
    return TASKS.get(name)
