"""The `onnxport` command: thin typed commands over the library, one error formatter.

Exit codes: 0 success, 1 export or validation failed, 2 user error (bad arguments, missing
or unreadable model, unknown task, output folder in the way), 130 interrupted.
Set ONNXPORT_DEBUG=1 to see tracebacks.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from onnxport._version import __version__
from onnxport.cli import scale
from onnxport.errors import EXIT_FAILED, EXIT_OK, EXIT_USER_ERROR, OnnxportError
from onnxport.logs import quiet_import_chatter

logger = logging.getLogger("onnxport")

EXAMPLES = """examples:
  onnxport export onnx --model ./my-bert-folder out/
  onnxport export onnx --model distilbert-base-uncased --task question-answering out/
  onnxport optimize out/ -O2
  onnxport quantize out/ --mode int8-dynamic --min-cosine 0.995
  onnxport benchmark out/ --shapes 1x128,8x128 --output report/
  onnxport serve out/ --replicas 2 --port 8000
  onnxport batch out/ --input reviews.jsonl --column text --output scored.parquet
  onnxport tasks
  onnxport architectures
  onnxport coverage --model-types bert,gpt2 --jobs 2
  onnxport demo
"""


class _Parser(argparse.ArgumentParser):
    """Options and positionals in any order: `quantize out/ --mode fp16 out-q/` parses.

    Plain argparse stops filling positionals at the first option, so an optional second
    positional after an option is "unrecognized". Leaf commands (no sub-commands) parse with
    argparse's own `parse_known_intermixed_args`, which does not support sub-parsers and
    calls `parse_known_args` itself, hence the guard.
    """

    _intermixing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._subparsers is not None or self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        "-m",
        required=True,
        help="Hub id or local folder with weights and tokenizer files",
    )
    parser.add_argument(
        "--task",
        help="task head to export (default: inferred from the "
        "checkpoint, else the bare model); see `onnxport tasks`",
    )
    parser.add_argument(
        "--opset",
        type=int,
        default=None,
        help="ONNX opset (default: 23 for graphs with a key/value cache, else 18)",
    )
    parser.add_argument(
        "--atol",
        type=_positive_float,
        default=None,
        help="absolute tolerance for validation (default: 1e-4)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="device to export and validate on (default: cpu)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=2, help="batch size of the traced example (default: 2)"
    )
    parser.add_argument(
        "--sequence-length",
        type=int,
        default=16,
        help="sequence length of the traced example (default: 16)",
    )
    parser.add_argument(
        "--no-validate", action="store_true", help="skip comparing ONNX Runtime with PyTorch"
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the checkpoint's own Python code to run",
    )
    parser.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    parser.add_argument(
        "--external-data",
        action="store_true",
        default=None,
        help="store weights in model.onnx_data (automatic above 2 GB)",
    )
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    parser.add_argument(
        "--dtype",
        choices=("fp32", "fp16", "bf16"),
        default="fp32",
        help="precision of the exported weights (default: fp32); validated at 1e-2 for "
        "fp16, 5e-2 for bf16 unless --atol is given",
    )
    parser.add_argument(
        "--layout",
        choices=("onnxport", "transformers.js"),
        default="onnxport",
        help="folder layout: onnxport's (graphs beside config.json) or transformers.js' "
        "(graphs in onnx/, variants named by dtype: model_q4.onnx, model_int8.onnx...)",
    )
    parser.add_argument(
        "--library",
        choices=("sentence-transformers", "transformers"),
        default=None,
        help="how to read the checkpoint (default: sentence-transformers for a folder with "
        "modules.json, whose graph then includes pooling, dense layers and normalization and "
        "returns sentence_embedding; else transformers, the bare model or a task head)",
    )
    parser.add_argument(
        "--genai",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="text-generation: write genai_config.json for onnxruntime-genai, refusing an "
        "architecture it cannot run (default: written when it can; --no-genai: never)",
    )
    parser.add_argument(
        "--vocoder",
        help="text-to-speech with SpeechT5: the vocoder to export beside it as vocoder.onnx "
        "(a Hub id or folder, e.g. microsoft/speecht5_hifigan); without one the export makes "
        "spectrograms",
    )
    parser.add_argument(
        "--optimize",
        choices=("O1", "O2", "O3", "O4"),
        help="also write model_<level>.onnx (see `onnxport optimize`)",
    )
    parser.add_argument(
        "--quantize",
        choices=QUANTIZE_MODES,
        help="also write a quantized variant (see `onnxport quantize`)",
    )
    parser.add_argument("output", type=Path, metavar="OUTPUT_DIR", help="folder to write")


def _add_tflite_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", required=True, help="Hub id or local folder with weights")
    parser.add_argument("--task", help="task head to export (default: inferred)")
    parser.add_argument(
        "--quantize",
        choices=("int8", "fp16"),
        help="int8: dynamic-range int8 weights; fp16: fp16 weights (default: fp32)",
    )
    parser.add_argument("--batch-size", type=int, default=1, help="fixed batch size (default: 1)")
    parser.add_argument(
        "--sequence-length", type=int, default=128, help="fixed sequence length (default: 128)"
    )
    parser.add_argument(
        "--atol",
        type=_positive_float,
        default=None,
        help="absolute tolerance for validation (default: 1e-4; 1e-2 fp16; 0.2 int8)",
    )
    parser.add_argument(
        "--no-validate", action="store_true", help="skip comparing LiteRT with PyTorch"
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the checkpoint's own Python code to run",
    )
    parser.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    parser.add_argument("output", type=Path, metavar="OUTPUT_DIR", help="folder to write")


QUANTIZE_MODES = ("int8-dynamic", "int8-static", "int4-weight-only", "fp16")


def _add_guard_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--min-cosine",
        type=_positive_float,
        default=None,
        help="fail (writing nothing) when the worst input's cosine to the fp32 export is lower",
    )
    parser.add_argument(
        "--eval-file",
        type=Path,
        help="texts to check accuracy on, one per line (default: built in)",
    )
    parser.add_argument("--force", action="store_true", help="replace a non-empty OUTPUT_DIR")


def _add_variant_commands(commands: Any) -> None:
    optimize = commands.add_parser(
        "optimize",
        help="fuse and optimize an exported model (O1-O4)",
        description="Write <graph>_O<level>.onnx beside the export (or into OUTPUT_DIR) and "
        "compare it with the fp32 export. O1: basic; O2: + Attention, SkipLayerNorm, BiasGelu, "
        "rotary, GQA fusions; O3: + FastGelu; O4: + fp16 (--device cuda).",
    )
    optimize.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    optimize.add_argument("output", type=Path, nargs="?", metavar="OUTPUT_DIR")
    optimize.add_argument("-O", dest="level", type=int, choices=(1, 2, 3, 4), default=2)
    optimize.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    _add_guard_arguments(optimize)

    quantize = commands.add_parser(
        "quantize",
        help="quantize an exported model (int8, int4, fp16) with an accuracy guard",
        description="Write <graph>_<mode>.onnx beside the export (or into OUTPUT_DIR). The "
        "result is compared with the fp32 export; below --min-cosine the most sensitive "
        "MatMuls are kept in fp32 until the target is met, or the command fails.",
    )
    quantize.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    quantize.add_argument("output", type=Path, nargs="?", metavar="OUTPUT_DIR")
    quantize.add_argument("--mode", choices=QUANTIZE_MODES, default="int8-dynamic")
    quantize.add_argument(
        "--calibration-file", type=Path, help="texts to calibrate on, one per line"
    )
    quantize.add_argument(
        "--calibration-dataset",
        help="a `datasets` dataset to calibrate on: Hub id[:config] or a local csv/json/parquet",
    )
    quantize.add_argument("--calibration-column", default="text")
    quantize.add_argument("--calibration-split", default="train")
    quantize.add_argument("--calibration-size", type=int, default=64)
    quantize.add_argument(
        "--fp16-io", action="store_true", help="fp16 mode: fp16 inputs and outputs too"
    )
    quantize.add_argument(
        "--no-smoothing", action="store_true", help="int8: do not migrate activation outliers"
    )
    _add_guard_arguments(quantize)

    bench = commands.add_parser(
        "benchmark",
        help="time PyTorch and each ONNX variant of an export",
        description="PyTorch eager vs each ONNX variant in MODEL_DIR: blocks with warm-up, "
        "median latency, speed-up and output drift; prints a table, writes JSON and a PNG.",
    )
    bench.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    bench.add_argument("--shapes", default="1x128,8x128", help="BATCHxSEQUENCE list")
    bench.add_argument("--variants", help="comma-separated ONNX files (default: all in MODEL_DIR)")
    bench.add_argument(
        "--pytorch", help="PyTorch checkpoint to compare (default: the export's source)"
    )
    bench.add_argument("--threads", type=int, default=0, help="intra-op threads (default: all)")
    bench.add_argument("--blocks", type=int, default=7)
    bench.add_argument("--repeats", type=int, default=3, help="runs per block")
    bench.add_argument("--output", type=Path, help="folder for benchmark.json and benchmark.png")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to document the CLI)."""
    parser = _Parser(
        prog="onnxport",
        description="Export Transformers models to ONNX, validated against "
        "PyTorch, and run them with ONNX Runtime.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"onnxport {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    export = commands.add_parser("export", help="export a model")
    formats = export.add_subparsers(dest="format", metavar="FORMAT")
    onnx_parser = formats.add_parser(
        "onnx",
        help="export to ONNX and validate against PyTorch",
        description="Export a Transformers checkpoint to OUTPUT_DIR/model.onnx, with its "
        "config and tokenizer, then validate it against PyTorch at new input shapes.",
        epilog="example: onnxport export onnx --model ./bert-folder --task fill-mask out/",
    )
    _add_export_arguments(onnx_parser)
    tflite_parser = formats.add_parser(
        "tflite",
        help="export to TFLite (static shapes) and validate against PyTorch",
        description="Convert a Transformers checkpoint to OUTPUT_DIR/model.tflite with LiteRT's "
        "PyTorch converter at a fixed input shape, then run it with the LiteRT interpreter "
        "and compare with PyTorch. Needs `pip install 'onnxport[tflite]'`.",
        epilog="example: onnxport export tflite --model ./bert-folder --sequence-length 64 out/",
    )
    _add_tflite_arguments(tflite_parser)

    inspect = commands.add_parser(
        "inspect",
        help="show an export's inputs, outputs, dynamic axes, versions and options",
    )
    inspect.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="folder or .onnx file")
    commands.add_parser("tasks", help="list supported tasks and their synonyms")
    archs = commands.add_parser("architectures", help="list supported architectures")
    archs.add_argument(
        "--all",
        action="store_true",
        help="also list model types that fail the coverage matrix, with the reason",
    )
    archs.add_argument("--markdown", action="store_true", help="print the README tables")

    _add_variant_commands(commands)
    scale.add_commands(commands)

    coverage = commands.add_parser(
        "coverage",
        help="export and validate tiny models for every (model_type, task) pair",
        description="Run the coverage matrix: each pair in its own process, PASS / FAIL "
        "(category, reason) / SKIP (cannot be built offline).",
    )
    coverage.add_argument("--model-types", help="comma-separated model types (default: all)")
    coverage.add_argument("--tasks", help="comma-separated tasks (default: all)")
    coverage.add_argument("--jobs", type=int, default=1, help="pairs run at once (default 1)")
    coverage.add_argument("--timeout", type=float, default=600, help="seconds per pair")
    coverage.add_argument(
        "--memory-gb", type=float, default=8, help="address-space limit per pair (0: none)"
    )
    coverage.add_argument(
        "--chunk", type=int, default=8, help="pairs per worker process (default 8)"
    )
    coverage.add_argument(
        "--update",
        type=Path,
        metavar="JSON",
        help="merge into this matrix: rerun the chosen pairs, keep the others' results "
        "(written back to it unless --json names another file)",
    )
    coverage.add_argument(
        "--only-failed",
        action="store_true",
        help="with --update: rerun only the pairs that did not pass",
    )
    coverage.add_argument("--json", type=Path, help="write the matrix as JSON")
    coverage.add_argument("--markdown", type=Path, help="write the matrix as Markdown")
    coverage.add_argument(
        "--peer",
        action="store_true",
        help="also export the pairs with transformers.exporters.OnnxExporter, validate its "
        "graphs the same way and print both statuses side by side (default pairs: a built-in "
        "sample of single-graph tasks)",
    )

    demo = commands.add_parser("demo", help="export the built-in MiniLM-L6 and rank sentences")
    demo.add_argument(
        "output",
        nargs="?",
        type=Path,
        default=Path("demo-output/minilm"),
        metavar="OUTPUT_DIR",
        help="folder to write (default: demo-output/minilm)",
    )
    return parser


def _legacy_argv(argv: list[str]) -> list[str]:
    """Map the legacy `onnxport --model=X OUT` form onto `export onnx`.

    It is the form users of the old `python -m transformers.onnx` know.
    """
    if argv and (argv[0] == "--model" or argv[0].startswith("--model=") or argv[0] == "-m"):
        return ["export", "onnx", *argv]
    return argv


def _relative(path: Path, folder: Path) -> str:
    """`onnx/model_q4.onnx` for a file in a transformers.js folder, else the file's name."""
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return path.name


def _print_result(result: Any) -> None:
    """Each graph's validation block, then the closing line."""
    for report in result.reports:
        print(report.format(), flush=True)
    if not result.reports:
        print("Validation skipped (--no-validate).")
    print(f"The ONNX export succeeded and the exported model was saved at: {result.output_dir}")


def _cmd_export(args: argparse.Namespace) -> int:
    from onnxport.exporters.api import export

    result = export(
        args.model,
        args.output,
        args.task,
        opset=args.opset,
        atol=args.atol,
        device=args.device,
        batch_size=args.batch_size,
        sequence_length=args.sequence_length,
        validate_export=not args.no_validate,
        force=args.force,
        external_data=args.external_data,
        trust_remote_code=args.trust_remote_code,
        revision=args.revision,
        dtype=args.dtype,
        layout=args.layout,
        library=args.library,
        genai=args.genai,
        vocoder=args.vocoder,
    )
    _print_result(result)
    logger.info(
        "Task %s, captured with the %s exporter, %.1f s in all.",
        result.task,
        result.strategy,
        result.seconds,
    )
    if args.optimize:
        from onnxport.variants.optimize import optimize

        _print_optimization(optimize(args.output, int(args.optimize[1]), device=args.device))
    if args.quantize:
        from onnxport.variants.quantize import quantize

        _print_quantization(quantize(args.output, args.quantize))
    return EXIT_OK


def _cmd_export_tflite(args: argparse.Namespace) -> int:
    from onnxport.tflite.convert import export_tflite

    result = export_tflite(
        args.model,
        args.output,
        args.task,
        batch_size=args.batch_size,
        sequence_length=args.sequence_length,
        quantize=args.quantize,
        atol=args.atol,
        validate_export=not args.no_validate,
        force=args.force,
        trust_remote_code=args.trust_remote_code,
        revision=args.revision,
    )
    if result.validation is not None:
        print(result.validation.format(), flush=True)
    else:
        print("Validation skipped (--no-validate).")
    shapes = ", ".join(f"{k} {list(v)}" for k, v in result.input_shapes.items())
    print(
        f"The TFLite export succeeded and the model was saved at: {result.output_dir} "
        f"({result.size_bytes / 1e6:.1f} MB{', ' + result.quantize if result.quantize else ''}; "
        f"fixed shapes: {shapes})"
    )
    logger.info("Task %s, %.1f s in all.", result.task, result.seconds)
    return EXIT_OK


def _print_optimization(result: Any) -> None:
    fusions = ", ".join(f"{k} {v}" for k, v in result.fusions.items()) or "none"
    print(f"Fusions: {fusions}")
    if result.accuracy is not None:
        print(result.accuracy.format())
    names = ", ".join(_relative(p, result.output_dir) for p in result.files)
    print(f"O{result.level} written: {names} in {result.output_dir} ({result.seconds:.1f} s)")


def _print_quantization(result: Any) -> None:
    if result.accuracy is not None:
        print(result.accuracy.format())
    if result.excluded:
        print(f"Kept in fp32 to meet the accuracy target: {', '.join(result.excluded)}")
    if result.held_out is not None:
        print(f"On held-out texts (never used to choose): {result.held_out.format()}")
    names = ", ".join(_relative(p, result.output_dir) for p in result.files)
    print(f"{result.mode} written: {names} in {result.output_dir} ({result.seconds:.1f} s)")


def _cmd_optimize(args: argparse.Namespace) -> int:
    from onnxport.variants.optimize import optimize

    result = optimize(
        args.model_dir,
        args.level,
        args.output,
        device=args.device,
        eval_file=args.eval_file,
        min_cosine=args.min_cosine,
        force=args.force,
    )
    _print_optimization(result)
    return EXIT_OK


def _cmd_quantize(args: argparse.Namespace) -> int:
    from onnxport.variants.quantize import quantize

    result = quantize(
        args.model_dir,
        args.mode,
        args.output,
        min_cosine=args.min_cosine,
        eval_file=args.eval_file,
        calibration_file=args.calibration_file,
        calibration_dataset=args.calibration_dataset,
        calibration_column=args.calibration_column,
        calibration_split=args.calibration_split,
        calibration_size=args.calibration_size,
        fp16_io=args.fp16_io,
        smoothing=not args.no_smoothing,
        force=args.force,
    )
    _print_quantization(result)
    return EXIT_OK


def _cmd_coverage(args: argparse.Namespace) -> int:
    from onnxport.coverage import runner as coverage
    from onnxport.errors import VariantError

    if args.peer:
        return _coverage_with_peer(args)
    pairs = coverage.enumerate_pairs(
        args.model_types.split(",") if args.model_types else None,
        args.tasks.split(",") if args.tasks else None,
    )
    previous: list[coverage.PairResult] = []
    if args.update is not None:
        if not args.update.is_file():
            raise VariantError(
                f"--update {args.update}: no such matrix file; run without --update first."
            )
        previous = coverage.load(args.update)
        if args.only_failed:
            failed = {(r.model_type, r.task) for r in previous if r.status != coverage.PASS}
            pairs = [pair for pair in pairs if pair in failed]
        args.json = args.json or args.update
    elif args.only_failed:
        raise VariantError("--only-failed needs --update MATRIX.json (the matrix to rerun).")
    print(f"{len(pairs)} pairs, {args.jobs} at a time")

    def show(result: coverage.PairResult) -> None:
        detail = f" {result.category}: {result.reason}" if result.status != coverage.PASS else ""
        print(f"{result.status} {result.model_type} {result.task} ({result.seconds} s){detail}")

    results = coverage.run_matrix(
        pairs, jobs=args.jobs, timeout=args.timeout, memory_gb=args.memory_gb,
        chunk=args.chunk, progress=show,
    )  # fmt: skip
    if previous:
        rerun = {(r.model_type, r.task) for r in results}
        # A pair no task lists any more (its head moved to another task) is dropped.
        listed = set(coverage.enumerate_pairs(None, None))
        kept = [
            r for r in previous if (r.model_type, r.task) not in rerun
            and (r.model_type, r.task) in listed
        ]  # fmt: skip
        results = sorted(kept + results, key=lambda r: (r.model_type, r.task))
    totals = coverage.summary(results)
    print(
        f"PASS {totals['pass']}, FAIL {totals['fail']}, SKIP {totals['skip']}; "
        f"{totals['model_types_passing']} model types with a PASS"
    )
    if args.json:
        args.json.write_text(coverage.to_json(results), encoding="utf-8")
    if args.markdown:
        args.markdown.write_text(coverage.to_markdown(results), encoding="utf-8")
    return EXIT_OK


def _coverage_with_peer(args: argparse.Namespace) -> int:
    """`coverage --peer`: the same pairs through onnxport and Transformers' exporter."""
    from onnxport.coverage import peer
    from onnxport.coverage import runner as coverage
    from onnxport.errors import VariantError

    if args.update is not None or args.only_failed or args.markdown is not None:
        raise VariantError("--peer compares exporters on its own pairs: drop --update, "
                           "--only-failed and --markdown.")  # fmt: skip
    if args.model_types or args.tasks:
        chosen = coverage.enumerate_pairs(
            args.model_types.split(",") if args.model_types else None,
            args.tasks.split(",") if args.tasks else None,
        )
        pairs = [pair for pair in chosen if peer.comparable(pair[1])]
        if not pairs:
            raise VariantError("--peer compares single-graph tasks only; the chosen pairs are "
                               "all generative (several graphs).")  # fmt: skip
    else:
        pairs = list(peer.PEER_SAMPLE)
    print(f"{len(pairs)} pairs, {args.jobs} at a time, through onnxport and {peer.PEER}")
    options = {"jobs": args.jobs, "timeout": args.timeout, "memory_gb": args.memory_gb,
               "chunk": args.chunk}  # fmt: skip
    ours = coverage.run_matrix(pairs, **options)
    theirs = coverage.run_matrix(pairs, peer=True, **options)
    print(peer.side_by_side(ours, theirs))
    if args.json:
        import json
        from dataclasses import asdict

        data = {"onnxport": [asdict(r) for r in ours], peer.PEER: [asdict(r) for r in theirs]}
        args.json.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return EXIT_OK


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from onnxport.variants.benchmark import benchmark, parse_shapes

    result = benchmark(
        args.model_dir,
        shapes=parse_shapes(args.shapes),
        variants=args.variants.split(",") if args.variants else None,
        pytorch=args.pytorch,
        threads=args.threads,
        blocks=args.blocks,
        repeats=args.repeats,
        output_dir=args.output,
    )
    print(result.table())
    for path in result.files:
        print(f"Wrote {path}")
    return EXIT_OK


def _cmd_inspect(args: argparse.Namespace) -> int:
    from onnxport.variants.inspection import dtype_summary, inspect_export

    print("\n\n".join(graph.format() for graph in inspect_export(args.model_dir)))
    summary = dtype_summary(args.model_dir)
    if summary:
        print(f"\n{summary}")
    return EXIT_OK


def _cmd_tasks(_: argparse.Namespace) -> int:
    from onnxport.runtime.registry import class_name
    from onnxport.tasks import TASKS

    width = max(len(task.name) for task in TASKS)
    for task in sorted(TASKS, key=lambda t: t.name):
        synonyms = f" (also: {', '.join(task.synonyms)})" if task.synonyms else ""
        print(f"{task.name:<{width}}  {class_name(task.name):<34} {task.description}{synonyms}")
    return EXIT_OK


def _cmd_architectures(args: argparse.Namespace) -> int:
    from onnxport.coverage.support import architectures, markdown_tables

    if args.markdown:
        print(markdown_tables())
        return EXIT_OK
    shown = architectures(include_untested=args.all)
    for arch in shown:
        status = "tested" if arch.tested else ("validated" if arch.supported else "failing")
        tasks = sorted(set(arch.tested_tasks) | set(arch.validated_tasks))
        detail = ", ".join(tasks)
        if args.all and arch.failures:
            task, why = arch.failures[0]
            more = f" (+{len(arch.failures) - 1} more)" if len(arch.failures) > 1 else ""
            detail += ("; " if detail else "") + f"not {task}: {why[:90]}{more}"
        print(f"{arch.model_type:<28} {status:<9} {detail}")
    supported = sum(arch.supported for arch in shown)
    print(f"\n{supported} model types supported (tested in CI or validated by the coverage matrix)")
    if not args.all:
        print("--all also lists the model types that fail, with the first reason")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from onnxport.cli import demo
    from onnxport.exporters.api import export

    checkpoint = demo.default_model_path()
    print(f"Exporting the built-in default model (all-MiniLM-L6-v2) from {checkpoint}")
    result = export(checkpoint, args.output, force=True)
    _print_result(result)
    print()
    onnx_ranking = demo.rank(demo.onnx_embedder(result.output_dir))
    torch_ranking = demo.rank(demo.torch_embedder(checkpoint))
    print(demo.format_rankings(onnx_ranking, torch_ranking))
    return EXIT_OK if onnx_ranking.sentences == torch_ranking.sentences else EXIT_FAILED


COMMANDS = {
    "tasks": _cmd_tasks,
    "inspect": _cmd_inspect,
    "architectures": _cmd_architectures,
    "demo": _cmd_demo,
    "optimize": _cmd_optimize,
    "quantize": _cmd_quantize,
    "benchmark": _cmd_benchmark,
    "coverage": _cmd_coverage,
    "serve": scale.cmd_serve,
    "batch": scale.cmd_batch,
}


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (it may be swapped after setup)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _configure_logging(verbose: bool) -> None:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    quiet_import_chatter(verbose)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    # transformers announces at import that PyTorch is missing, which is the runtime-only
    # install working as meant; a command that needs torch says so itself, in one line.
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    args_list = _legacy_argv(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(args_list)
    debug = os.environ.get("ONNXPORT_DEBUG", "") not in ("", "0")
    if args.command is None or (args.command == "export" and args.format is None):
        parser.print_help() if args.command is None else parser.parse_args(["export", "-h"])
        return EXIT_USER_ERROR
    _configure_logging(args.verbose)
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        handler: Callable[[argparse.Namespace], int]
        if args.command == "export":
            handler = _cmd_export_tflite if args.format == "tflite" else _cmd_export
        else:
            handler = COMMANDS[args.command]
        return handler(args)
    except OnnxportError as err:
        if debug:
            raise
        validation = getattr(err, "report", None)
        if validation is not None:
            print(validation.format(), flush=True)
        print(f"Error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print("Interrupted; the output folder was left as it was.", file=sys.stderr)
        return 130
    except Exception as err:
        if debug:
            raise
        first = (str(err).strip().splitlines() or [""])[0][:300]
        print(
            f"Error: unexpected {type(err).__name__}: {first}. Set ONNXPORT_DEBUG=1 for the "
            "traceback and report it.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous)
