"""`onnxport serve`: an exported folder's pipeline behind HTTP, on Ray Serve.

Each replica holds one ONNX Runtime session; requests arriving together are run as one padded
batch (`@serve.batch`), which is where the throughput comes from on CPUs. The same app runs on
a local Ray instance or, with `address=`, on a cluster (the folder must be readable at the
same path on every node, e.g. a shared volume).

Example:
    >>> from ray import serve  # doctest: +SKIP
    >>> serve.run(onnxport.serve.app.deployment("out/", replicas=2))  # doctest: +SKIP

"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxport.errors import ServeError, first_line
from onnxport.serve.cluster import connect, require_ray, target
from onnxport.serve.runner import model_task, preflight

DEFAULT_MAX_BATCH_SIZE = 16
DEFAULT_BATCH_WAIT_MS = 2.0
APP_NAME = "onnxport"
INGRESSES = ("ray", "haproxy")


@dataclass(frozen=True)
class Service:
    """A running `onnxport serve` application."""

    url: str
    task: str
    model_dir: Path
    replicas: int
    max_batch_size: int
    cluster: str
    name: str = APP_NAME
    local: bool = True


def deployment(
    model_dir: str | Path,
    *,
    replicas: int = 1,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
    cpus_per_replica: float = 1.0,
    threads: int | None = None,
    file_name: str | None = None,
) -> Any:
    """The Ray Serve application for an exported folder (pass it to `ray.serve.run`).

    `file_name` picks a variant in the folder (`model_O2.onnx`, `model_int8.onnx`, ...).
    `max_batch_size=1` turns dynamic batching off. `threads` caps ONNX Runtime's threads per
    replica (default: every core for a single replica; with several, `cpus_per_replica`
    each, so replicas on one machine do not fight over cores).
    """
    require_ray(ServeError, "onnxport serve")
    folder = Path(model_dir).resolve()
    model_task(folder)  # a missing folder or an unsupported task fails here, in one line
    if file_name is not None and not (folder / file_name).is_file():
        raise ServeError(f"No ONNX file '{file_name}' in '{folder}'; see `onnxport inspect`.")
    for name, value in (("replicas", replicas), ("max_batch_size", max_batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ServeError(f"{name} must be a whole number of at least 1, not {value!r}.")
    if batch_wait_ms < 0:
        raise ServeError(f"batch_wait_ms must be 0 or more, not {batch_wait_ms}.")
    from ray import serve

    from onnxport.serve.replica import ModelServer

    if threads is None and replicas > 1:
        threads = max(1, int(cpus_per_replica))

    server: Any = serve.deployment(
        ModelServer,
        name=APP_NAME,
        num_replicas=replicas,
        # Enough requests in flight per replica to fill a batch while the last one runs.
        max_ongoing_requests=max(32, 2 * max_batch_size),
        ray_actor_options={"num_cpus": cpus_per_replica},
        max_constructor_retry_count=1,
    )
    return server.bind(str(folder), max_batch_size, batch_wait_ms, threads, file_name)


def start(
    model_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
    replicas: int = 1,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
    cpus_per_replica: float = 1.0,
    threads: int | None = None,
    route_prefix: str = "/",
    ingress: str = "ray",
    name: str = APP_NAME,
    file_name: str | None = None,
) -> Service:
    """Connect to Ray, deploy `model_dir` and return once every replica answers.

    `ingress="haproxy"` (a local instance only) puts Ray Serve's bundled HAProxy in front of
    the replicas instead of its Python HTTP proxy: much less CPU per request. On a cluster,
    that is chosen when the cluster starts (RAY_SERVE_ENABLE_HA_PROXY=1 on every node).
    """
    app = deployment(
        model_dir,
        replicas=replicas,
        max_batch_size=max_batch_size,
        batch_wait_ms=batch_wait_ms,
        cpus_per_replica=cpus_per_replica,
        threads=threads,
        file_name=file_name,
    )
    if ingress not in INGRESSES:
        raise ServeError(f"Unknown ingress '{ingress}'; pick one of {', '.join(INGRESSES)}.")
    task = preflight(model_dir, file_name)
    import ray
    from ray import serve

    local = target(address) == "local"
    if local:
        _check_port_free(host, port)
    if ingress == "haproxy":
        if not local:
            raise ServeError(
                "--ingress haproxy applies to a local instance; on a cluster, start every node "
                "with RAY_SERVE_ENABLE_HA_PROXY=1 instead."
            )
        # Ray reads this feature flag in the processes the new local instance starts.
        os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
    cluster = connect(address, ServeError)
    available = ray.cluster_resources().get("CPU", 0)
    if replicas * cpus_per_replica > available:
        raise ServeError(
            f"{replicas} replica(s) x {cpus_per_replica} CPU need more than the "
            f"{available:g} CPUs of {cluster}; lower --replicas or --cpus-per-replica."
        )
    try:
        serve.start(http_options={"host": host, "port": port}, logging_config=_QUIET)
        serve.run(app, name=name, route_prefix=route_prefix, logging_config=_QUIET)
    except Exception as err:  # a replica that cannot load the model, mostly
        raise ServeError(f"The service did not start: {first_line(err, 300)}") from err
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return Service(
        url=f"http://{shown}:{port}{route_prefix.rstrip('/')}",
        task=task,
        model_dir=Path(model_dir).resolve(),
        replicas=replicas,
        max_batch_size=max_batch_size,
        cluster=cluster,
        name=name,
        local=local,
    )


def stop(name: str = APP_NAME, *, local: bool = True) -> None:
    """Remove the application; for a local instance, also stop Serve and Ray.

    On a shared cluster only this application goes: Serve and the other apps keep running.
    """
    import ray
    from ray import serve

    try:
        if ray.is_initialized():
            serve.delete(name)
            if local:
                serve.shutdown()
    finally:
        ray.shutdown()


def wait_forever() -> None:
    """Block until Ctrl-C (the CLI then calls `stop`)."""
    while True:
        time.sleep(3600)


_QUIET = {"log_level": "WARNING"}


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ServeError(
                f"Cannot listen on {host}:{port} ({err.strerror}); pick another with --port."
            ) from err
