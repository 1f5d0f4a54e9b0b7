"""The primitive API: drive a run's engines and learners from your own Python loop (``rlreason.connect``).

``rlreason serve-api`` serves the same primitives over HTTP in Tinker's protocol (``rlreason.api.tinker_server``).
"""

from __future__ import annotations

import os
from pathlib import Path

from rlreason.api.records import APIError, Datum, Result, Sample

__all__ = ["APIError", "Client", "Datum", "Result", "Sample", "connect"]


def connect(model: str | None = None, *, lora_rank: int | None = None, recipe: str | None = None,
            run: str | None = None, address: str | None = None, overrides: list[str] | tuple = (),
            config=None, console=None):
    """Start (or join, with ``address``) a Ray cluster with the run's rollout engines and learners and return its
    ``Client`` (a context manager: leaving it ends them). ``model``: ``tiny`` (the embedded model), ``smollm2``,
    or a Hugging Face model directory; ``lora_rank``: train a LoRA adapter of that rank (default: full weights);
    ``recipe``: a recipe file or shipped recipe's name for everything else (default: the default recipe);
    ``run``: the run's name (a new ``runs/NAME``, or ``runs/NAME-K`` when that is taken; ``output.run=DIR`` in
    ``overrides`` names the directory itself, e.g. to ``load`` what an earlier client saved); ``overrides``:
    ``section.field=value`` as on the command line; ``config``: a loaded ``RunConfig`` instead of all these. Bad
    settings: ``RecipeError`` in one line."""
    import multiprocessing

    from rlreason.api.client import Client
    from rlreason.recipe.loading import load_config
    from rlreason.run.guardian import MARK_ENV, mark

    if multiprocessing.parent_process() is not None:  # a worker process (the verifiers') importing the script
        raise APIError("rlreason.connect() ran while a worker process imported your script: put the code that "
                       "connects under `if __name__ == \"__main__\":`")
    if config is None:
        items = list(overrides)
        items += [f"model.path={model}"] if model else []
        items += [f"model.lora.rank={lora_rank}"] if lora_rank else []
        items += [f"name={run}"] if run else []
        items += [f"ray.address={address}"] if address else []
        config = load_config(recipe, items)
        if not any(i.startswith("output.run=") for i in items):  # never into an earlier run's directory
            from rlreason.run.rundirs import choose_run_dir

            run_dir, _ = choose_run_dir(Path(config.output.dir) / config.name, False)
            config = load_config(recipe, [*items, f"output.run={run_dir.resolve()}"])
    if MARK_ENV not in os.environ:
        mark()  # whatever the client starts ends with this process, however it ends
    return Client(config, console)


def __getattr__(name: str):
    if name == "Client":
        from rlreason.api.client import Client

        return Client
    raise AttributeError(name)
