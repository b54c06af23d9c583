"""Joining Ray for `onnxport serve` and `onnxport batch`: the extra check and the connection.

Without an address a private local Ray instance is started (the `RAY_ADDRESS` variable, as in
Ray's own tools, picks a cluster instead); with one, the existing cluster is joined, so the
same command scales from a laptop to many machines.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from onnxport.errors import OnnxportError, first_line

# Settings for a local instance this process starts (a user's own values win). On a busy
# machine Ray Serve's HTTP proxy can take longer than its 5 s readiness check to start, and
# three misses kill it ("The actor died unexpectedly"); give start-up and health checks room.
# Ray's processes read these from the environment they inherit from this one.
LOCAL_ENVIRONMENT = {
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60",
    "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "30",
}


def require_ray(error: type[OnnxportError], what: str) -> None:
    """Refuse in one line when the `serve` extra (Ray Serve, Ray Data) is not installed."""
    import importlib.util

    for module in ("ray", "ray.serve", "ray.data", "pyarrow"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise error(f"{what} needs Ray ({module} is missing): pip install 'onnxport[serve]'.")


def target(address: str | None) -> str:
    """Where `connect` goes: `address`, else `RAY_ADDRESS`, else "local" (a new instance)."""
    return address or os.environ.get("RAY_ADDRESS") or "local"


def connect(address: str | None, error: type[OnnxportError], **init_kwargs: Any) -> str:
    """Join the Ray cluster at `address` (or `RAY_ADDRESS`), else start a local one.

    Returns where it connected, for messages. Nothing happens when Ray is already initialized
    in this process (a notebook or a test that started it).
    """
    import ray

    if ray.is_initialized():
        return "the Ray instance already running in this process"
    where = target(address)
    if where == "local":
        for name, value in LOCAL_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
    try:
        ray.init(
            address=where,
            include_dashboard=False,
            logging_level=logging.WARNING,
            **init_kwargs,
        )
    except (ConnectionError, RuntimeError, ValueError) as err:
        if where == "local":
            raise error(f"Could not start a local Ray instance: {first_line(err)}") from err
        raise error(
            f"Could not join the Ray cluster at '{where}': {first_line(err)}. Check the "
            "address (ray://host:10001 or host:6379) and that the cluster is up."
        ) from err
    return "a local Ray instance" if where == "local" else f"the Ray cluster at {where}"
