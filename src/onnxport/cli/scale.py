"""`onnxport serve` and `onnxport batch`: an exported folder on Ray Serve and Ray Data."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from onnxport.errors import EXIT_FAILED, EXIT_OK
from onnxport.serve.cluster import target

EXIT_INTERRUPTED = 130

FILE_HELP = "ONNX file in MODEL_DIR to run, e.g. model_O2.onnx (default: model.onnx)"
CLUSTER_HELP = (
    "Ray cluster to join (host:6379 or ray://host:10001; default: $RAY_ADDRESS, else a new "
    "local instance)"
)


def add_commands(commands: Any) -> None:
    """Add the `serve` and `batch` sub-commands to the CLI's sub-parsers."""
    from onnxport.serve.app import DEFAULT_BATCH_WAIT_MS, DEFAULT_MAX_BATCH_SIZE, INGRESSES
    from onnxport.serve.batch import DEFAULT_BATCH_SIZE
    from onnxport.serve.runner import SERVE_TASKS

    serve = commands.add_parser(
        "serve",
        help="serve an exported model over HTTP on Ray Serve, with dynamic batching",
        description="Deploy MODEL_DIR's pipeline on Ray Serve: POST /predict with "
        '{"inputs": ...} answers what the pipeline returns; GET /healthz; GET /openapi.json. '
        f"Tasks: {', '.join(SERVE_TASKS)}. Needs `pip install 'onnxport[serve]'`.",
        epilog="example: onnxport serve out/ --replicas 2 --port 8000",
    )
    serve.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    serve.add_argument("--file", help=FILE_HELP)
    serve.add_argument("--replicas", type=int, default=1, help="replicas (default 1)")
    serve.add_argument(
        "--max-batch-size",
        type=int,
        default=DEFAULT_MAX_BATCH_SIZE,
        help=f"inputs run together per replica; 1 turns batching off "
        f"(default {DEFAULT_MAX_BATCH_SIZE})",
    )
    serve.add_argument(
        "--batch-wait-ms",
        type=float,
        default=DEFAULT_BATCH_WAIT_MS,
        help=f"longest wait for a batch to fill (default {DEFAULT_BATCH_WAIT_MS:g})",
    )
    serve.add_argument(
        "--cpus-per-replica", type=float, default=1.0, help="CPUs Ray reserves per replica"
    )
    serve.add_argument(
        "--threads",
        type=int,
        help="ONNX Runtime threads per replica (default: all cores for one replica, else "
        "--cpus-per-replica)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--address", help=CLUSTER_HELP)
    serve.add_argument(
        "--ingress",
        choices=INGRESSES,
        default="ray",
        help="HTTP front of a local instance: Ray Serve's Python proxy (default) or its "
        "bundled HAProxy (less CPU per request)",
    )

    batch = commands.add_parser(
        "batch",
        help="run an exported model over a JSONL/CSV/Parquet file on Ray Data",
        description="Run MODEL_DIR's pipeline on COLUMN of every row of INPUT and write "
        "OUTPUT (Parquet): the input columns, 'output' (the answer as JSON) and 'error' (why "
        "a row failed, else empty), in input order. Exits 1 when any row failed. Needs "
        "`pip install 'onnxport[serve]'`.",
        epilog="example: onnxport batch out/ --input reviews.jsonl --column text "
        "--output scored.parquet",
    )
    batch.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    batch.add_argument("--file", help=FILE_HELP)
    batch.add_argument("--input", required=True, type=Path, help="JSONL, CSV or Parquet file")
    batch.add_argument("--column", required=True, help="the column holding each input")
    batch.add_argument("--output", required=True, type=Path, help="Parquet file to write")
    batch.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"rows per model call (default {DEFAULT_BATCH_SIZE})",
    )
    batch.add_argument("--actors", type=int, help="model copies (default: one per CPU)")
    batch.add_argument("--address", help=CLUSTER_HELP)
    batch.add_argument("--no-progress", action="store_true", help="no progress bar")
    batch.add_argument("--force", action="store_true", help="replace an existing OUTPUT")


def _quiet_ray(verbose: bool, module: str) -> None:
    # Ray logs every start-up step at INFO in the driver (and sets those levels when its
    # modules are imported, hence the import first); the command prints its own lines.
    import importlib

    importlib.import_module(module)
    level = logging.DEBUG if verbose else logging.WARNING
    for name in ("ray", module):
        logging.getLogger(name).setLevel(level)


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the service and keep it up until Ctrl-C."""
    from onnxport import serve

    _quiet_ray(args.verbose, "ray.serve")
    print(f"Starting the service for {args.model_dir} on Ray...", flush=True)
    try:
        service = serve.start(
            args.model_dir,
            host=args.host,
            port=args.port,
            address=args.address,
            replicas=args.replicas,
            max_batch_size=args.max_batch_size,
            batch_wait_ms=args.batch_wait_ms,
            cpus_per_replica=args.cpus_per_replica,
            threads=args.threads,
            ingress=args.ingress,
            file_name=args.file,
        )
    except KeyboardInterrupt:
        print("Interrupted while starting; the service was stopped.", file=sys.stderr)
        serve.stop(local=target(args.address) == "local")
        return EXIT_INTERRUPTED
    batching = "off" if service.max_batch_size == 1 else f"up to {service.max_batch_size} per batch"
    print(
        f"Serving {service.task} from {service.model_dir} on {service.cluster}: "
        f"{service.replicas} replica(s), batching {batching}.\n"
        f'  POST {service.url}/predict   {{"inputs": ...}}\n'
        f"  GET  {service.url}/healthz\n"
        f"  GET  {service.url}/openapi.json\n"
        "Press Ctrl-C to stop.",
        flush=True,
    )
    try:
        serve.wait_forever()
    except KeyboardInterrupt:
        print("Stopping...", flush=True)
    finally:
        # A second Ctrl-C (or the signal reaching the whole process group) must not cut the
        # shutdown short and leave Ray's processes behind.
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.SIG_IGN)
        serve.stop(service.name, local=service.local)
    return EXIT_OK


def cmd_batch(args: argparse.Namespace) -> int:
    """Run the file through the model; exit 1 when rows failed (they are in the output)."""
    from onnxport.serve import batch

    _quiet_ray(args.verbose, "ray.data")
    result = batch.run(
        args.model_dir,
        args.input,
        args.output,
        column=args.column,
        batch_size=args.batch_size,
        actors=args.actors,
        address=args.address,
        force=args.force,
        progress=not args.no_progress,
        file_name=args.file,
    )
    print(result.summary())
    if not result.failed_rows:
        return EXIT_OK
    for index, reason in result.failures:
        print(f"  row {index}: {reason}")
    print(
        f"Error: {result.failed_rows} of {result.rows} rows failed; the '{batch.ERROR_COLUMN}' "
        f"column of {result.output} says why for each.",
        file=sys.stderr,
    )
    return EXIT_FAILED
