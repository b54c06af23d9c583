"""Serving an exported folder on Ray: the Serve app and the Ray Data batch job.

Request checks and batching (`runner`, no Ray), the Ray Serve app (`app`), the Ray Data batch
job (`batch`). Imports the runtime only, never the exporter.

Example:
    >>> import onnxport.serve  # doctest: +SKIP
    >>> serve.run(onnxport.serve.deployment("out/", replicas=2))  # doctest: +SKIP

"""

from onnxport.serve.app import (
    DEFAULT_BATCH_WAIT_MS,
    DEFAULT_MAX_BATCH_SIZE,
    INGRESSES,
    Service,
    deployment,
    start,
    stop,
    wait_forever,
)

__all__ = [
    "DEFAULT_BATCH_WAIT_MS",
    "DEFAULT_MAX_BATCH_SIZE",
    "INGRESSES",
    "Service",
    "deployment",
    "start",
    "stop",
    "wait_forever",
]
