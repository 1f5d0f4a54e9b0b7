"""Start a private local Ray instance, or join the cluster at ``ray.address``.

Without an address a run always starts its own instance (``address="local"``): a plain ``ray.init()`` would join
whatever cluster a ``ray start`` left its address file for, even a stopped one. With an address, token
authentication (Ray 2.60 ``ray start`` clusters use it) is switched on when a token is at hand (``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``), which also joins clusters without authentication; a failure to
connect is one line that says what to set.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from rlreason.recipe import RecipeError, RunConfig


class ClusterError(RecipeError):
    """Ray could not be started or joined; the message says what to check or set."""


def auth_token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return Path(path).is_file()


def local_cpus(cfg: RunConfig) -> int:
    """CPUs of a private instance: the machine's, and at least one per actor."""
    return cfg.ray.num_cpus or max(os.cpu_count() or 1, cfg.rollout.workers + cfg.train.learners)


def connect(cfg: RunConfig) -> bool:
    """Start or join Ray (unless this process already has); returns whether this call did (and must shut it
    down)."""
    import ray

    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": True, "logging_level": "WARNING"}
    address = cfg.ray.address
    if address is None:
        # token authentication stays on (it guards the private instance's ports); Ray's notice that it is on is
        # noise in every run's output
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        ray.init(address="local", num_cpus=local_cpus(cfg), **quiet)
        return True
    _check_listening(address)
    if "RAY_AUTH_MODE" not in os.environ and auth_token_available():
        _token_mode()
    quiet.pop("include_dashboard")
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ClusterError(_connect_hint(address, e)) from None
    return True


def _check_listening(address: str, timeout_s: float = 5.0) -> None:
    """A ``host:port`` address where nothing listens fails at once (Ray itself retries for minutes)."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", ray:// client addresses: Ray resolves them
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ClusterError(f"ray.address: nothing answers at {address} ({e.strerror or e}); start the cluster first "
                           "(ray start --head --port PORT) or check the address (ray status on the head node)"
                           ) from None


def _token_mode() -> None:
    """Token authentication on for this process and its children. Ray reads the mode once per process (an explicit
    address never switches it on by itself): its own switch refreshes that; the variable alone is the fallback."""
    os.environ["RAY_AUTH_MODE"] = "token"
    try:
        from ray._private.authentication.authentication_token_setup import _enable_token_auth
    except ImportError:  # another Ray version: the variable, read at connection, may be enough
        return
    _enable_token_auth()


def _connect_hint(address: str, error: Exception) -> str:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
    if auth_token_available():
        token = ("RAY_AUTH_MODE=token is set and a token is at hand: check that it is this cluster's token "
                 "(the head node's ~/.ray/auth_token)")
    else:
        token = ("if the cluster uses token authentication (ray start does by default), set RAY_AUTH_MODE=token "
                 "and RAY_AUTH_TOKEN (or copy the head node's ~/.ray/auth_token here)")
    return f"ray.address: could not join the Ray cluster at {address} ({first}); is it running (ray status)? {token}"
