"""`onnxport batch`: an exported folder's pipeline over a file of rows, on Ray Data.

Ray Data reads JSONL, CSV or Parquet in blocks, actors (one ONNX Runtime session each) run the
pipeline on batches of one column (`map_batches`), and the rows come back in input order to be
written as one Parquet file: every input column, then `output` (the pipeline's answer for the
row as JSON text, as `onnxport serve` returns it) and `error` (null, or why the row failed).
A failed row is kept and counted, never dropped. The file appears only once complete.

Example:
    >>> from onnxport import batch  # doctest: +SKIP
    >>> result = batch.run("out/", "in.jsonl", "scored.parquet", column="text")  # doctest: +SKIP
    >>> result.rows, result.failed_rows  # doctest: +SKIP
    (1000, 0)

"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxport.errors import BatchError, first_line
from onnxport.serve.cluster import connect, require_ray
from onnxport.serve.runner import PipelineRunner, dumps, model_task, preflight

DEFAULT_BATCH_SIZE = 32
OUTPUT_COLUMN = "output"
ERROR_COLUMN = "error"
# How many failed rows the result lists by index and reason (all are counted).
_SHOWN_FAILURES = 5
_READERS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass(frozen=True)
class BatchResult:
    """What `run` wrote: row counts, the first failures (row index, reason), the time taken."""

    output: Path
    task: str
    rows: int
    failed_rows: int
    seconds: float
    failures: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the CLI."""
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        return (
            f"Wrote {self.rows} rows to {self.output} in {self.seconds:.1f} s "
            f"({rate:.0f} rows/s); {self.failed_rows} failed."
        )


class _Predictor:
    """A Ray Data actor: one pipeline, one ONNX Runtime session, reused for every batch."""

    def __init__(
        self, model_dir: str, column: str, threads: int | None, file_name: str | None
    ) -> None:
        from onnxport.logs import quiet_worker

        quiet_worker()
        self.runner = PipelineRunner(model_dir, threads=threads, file_name=file_name)
        self.column = column

    def __call__(self, table: Any) -> Any:
        import pyarrow as pa

        outcomes = self.runner.run(table.column(self.column).to_pylist())
        outputs = [None if o.error else dumps(o.value).decode() for o in outcomes]
        errors = [str(o.error) if o.error else None for o in outcomes]
        table = table.append_column(OUTPUT_COLUMN, pa.array(outputs, pa.string()))
        return table.append_column(ERROR_COLUMN, pa.array(errors, pa.string()))


def run(
    model_dir: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    *,
    column: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    actors: int | None = None,
    threads_per_actor: int | None = 1,
    address: str | None = None,
    force: bool = False,
    progress: bool = True,
    file_name: str | None = None,
) -> BatchResult:
    """Run the folder's pipeline on `column` of every row of `input_path`; write Parquet.

    `actors` defaults to one per CPU of the cluster (each with `threads_per_actor` ONNX Runtime
    threads). Raises `BatchError` on a user mistake, before anything runs; rows that fail are
    written with their reason and counted in `failed_rows`.
    """
    require_ray(BatchError, "onnxport batch")
    source, output = Path(input_path), Path(output_path)
    try:
        task = model_task(model_dir)
    except Exception as err:
        raise BatchError(str(err)) from err
    if file_name is not None and not (Path(model_dir) / file_name).is_file():
        raise BatchError(f"No ONNX file '{file_name}' in '{model_dir}'; see `onnxport inspect`.")
    reader = _reader_for(source)
    _check_output(output, source, force)
    if batch_size < 1:
        raise BatchError(f"--batch-size must be at least 1, not {batch_size}.")
    preflight(model_dir, file_name)
    import ray
    import ray.data

    connect(address, BatchError)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = progress
    dataset = _read(reader, source)
    names = dataset.schema().names
    if column not in names:
        raise BatchError(
            f"'{source}' has no column '{column}'; its columns: {', '.join(names)}. "
            "Pick one with --column."
        )
    clash = {OUTPUT_COLUMN, ERROR_COLUMN} & set(names)
    if clash:
        raise BatchError(
            f"'{source}' already has a column named {', '.join(sorted(clash))}, which onnxport "
            "batch writes; rename it first."
        )
    if actors is None:
        actors = max(1, int(ray.cluster_resources().get("CPU", 1) // (threads_per_actor or 1)))
    predicted = dataset.map_batches(
        _Predictor,
        fn_constructor_kwargs={
            "model_dir": str(Path(model_dir).resolve()),
            "column": column,
            "threads": threads_per_actor,
            "file_name": file_name,
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        concurrency=actors,
        num_cpus=threads_per_actor or 1,
    )
    started = time.perf_counter()
    rows, failed, failures = _write(predicted, output)
    result = BatchResult(
        output=output,
        task=task,
        rows=rows,
        failed_rows=failed,
        seconds=time.perf_counter() - started,
        failures=failures,
    )
    return result


def _reader_for(source: Path) -> str:
    if not source.is_file():
        raise BatchError(
            f"Input file '{source}' does not exist; pass a JSONL, CSV or Parquet file."
        )
    reader = _READERS.get(source.suffix.lower())
    if reader is None:
        raise BatchError(
            f"Cannot tell the format of '{source}' from its suffix; use .jsonl, .json, .csv "
            "or .parquet."
        )
    return reader


def _check_output(output: Path, source: Path, force: bool) -> None:
    if output.suffix.lower() not in (".parquet", ".pq"):
        raise BatchError(f"The output '{output}' must end in .parquet (Parquet is written).")
    if output.resolve() == source.resolve():
        raise BatchError("The output would overwrite the input; pick another --output.")
    if output.is_dir():
        raise BatchError(f"The output '{output}' is a folder; pass a file name ending in .parquet.")
    if output.exists() and not force:
        raise BatchError(f"'{output}' exists; pass --force to replace it.")
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise BatchError(f"The folder '{parent}' does not exist; create it first.")
    if not os.access(parent, os.W_OK):
        raise BatchError(f"Cannot write to '{parent}'; pick a writable --output.")


def _read(reader: str, source: Path) -> Any:
    import ray.data

    # Reading reserves no CPU: the actors hold every CPU by default, and a read task waiting
    # for one would never run. Parsing a file is light next to the model.
    options: dict[str, Any] = {"file_extensions": None, "num_cpus": 0}
    try:
        if reader == "jsonl":
            return ray.data.read_json(str(source), lines=True, **options)
        if reader == "json":
            return ray.data.read_json(str(source), **options)
        if reader == "csv":
            return ray.data.read_csv(str(source), **options)
        return ray.data.read_parquet(str(source), **options)
    except Exception as err:
        raise BatchError(f"Cannot read '{source}' as {reader}: {first_line(err, 300)}") from err


def _write(dataset: Any, output: Path) -> tuple[int, int, list[tuple[int, str]]]:
    """Stream the rows, in order, into a temporary Parquet file; rename it when complete."""
    import pyarrow.parquet as pq

    rows = failed = 0
    failures: list[tuple[int, str]] = []
    handle, temporary = tempfile.mkstemp(
        prefix=f".{output.name}.", suffix=".partial", dir=output.parent
    )
    os.close(handle)
    writer = None
    try:
        for table in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
            if writer is None:
                writer = pq.ParquetWriter(temporary, table.schema)
            elif table.schema != writer.schema:  # e.g. a column all null in one block
                table = table.cast(writer.schema)
            writer.write_table(table)
            for offset, reason in enumerate(table.column(ERROR_COLUMN).to_pylist()):
                if reason is not None:
                    failed += 1
                    if len(failures) < _SHOWN_FAILURES:
                        failures.append((rows + offset, reason))
            rows += table.num_rows
        if writer is None:
            raise BatchError("The input has no rows; nothing was written.")
        writer.close()
        writer = None
        os.replace(temporary, output)
    finally:
        if writer is not None:
            writer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return rows, failed, failures
