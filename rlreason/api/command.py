"""``rlreason serve-api``: a run's engines and learners behind Tinker's HTTP protocol (``tinker_server``)."""

from __future__ import annotations

from typing import Optional

import typer


def serve_api(args: Optional[list[str]] = typer.Argument(
                  None, help="a recipe (file or shipped name) and dotted.key=value overrides for everything else "
                  "(default: the default recipe)"),
              model: Optional[str] = typer.Option(None, help="tiny, smollm2 or a model directory (model.path)"),
              lora_rank: Optional[int] = typer.Option(None, help="train a LoRA adapter of this rank (Tinker "
                                                                 "clients ask for one; default: the recipe's)"),
              host: str = typer.Option("127.0.0.1", help="address to listen on"),
              port: int = typer.Option(8000, help="port to listen on"),
              alias: Optional[list[str]] = typer.Option(None, help="another base_model name clients may ask for "
                                                                   "(e.g. the name a script hard-codes)"),
              ray_address: Optional[str] = typer.Option(None, "--ray-address", help="join this Ray cluster")) -> None:
    """Serve the primitive API in Tinker's protocol: the tinker SDK and tinker-cookbook loops train on this machine
    (ServiceClient(base_url="http://HOST:PORT"), TINKER_API_KEY=tml-<anything>). One training client at a time."""
    from rlreason.api import APIError, connect
    from rlreason.api.tinker_server import serve
    from rlreason.recipe import RecipeError

    overrides = [a for a in args or [] if "=" in a]
    recipe = args[0] if args and "=" not in args[0] else None
    try:
        with connect(model, lora_rank=lora_rank, recipe=recipe, address=ray_address, overrides=overrides) as client:
            serve(client, host, port, tuple(alias or ()))
    except (RecipeError, APIError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:  # (uvicorn stops on Ctrl-C / SIGTERM, then passes the signal on)
        typer.echo("rlreason serve-api: stopped", err=True)
