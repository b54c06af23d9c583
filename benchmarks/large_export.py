"""Peak memory of exporting a ~3 GB model: the whole `onnxport export onnx`, validation included.

Builds a random-initialised Llama-style checkpoint whose fp32 weights are about 3 GB (saved as
safetensors, like a real download), then runs the CLI under `/usr/bin/time -v` and prints the
weight size, the export's peak resident memory, the wall time, and the ratio against the
bound issue 6 sets: peak RSS <= 1.5 x fp32 weight size + 1 GB.

    python benchmarks/large_export.py [--work DIR] [--layers 15] [--keep] [--no-validate]

Needs about 7 GB of free disk in DIR (checkpoint + export) and runs for several minutes.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIB = 1024**3


def build_checkpoint(folder: Path, layers: int) -> int:
    """Write a random Llama-style model to `folder`; returns its fp32 weight bytes."""
    import torch
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(
        hidden_size=2048, intermediate_size=5632, num_hidden_layers=layers,
        num_attention_heads=16, num_key_value_heads=4, vocab_size=32000,
        max_position_embeddings=2048,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaModel(config)
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    model.save_pretrained(folder, max_shard_size="20GB")
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>")),
        unk_token="<unk>",
        pad_token="<unk>",
    )
    tokenizer.save_pretrained(folder)
    return size


def peak_rss(command: list[str]) -> tuple[int, float, int, str]:
    """(peak RSS bytes, wall seconds, exit code, stderr tail) of `command`."""
    start = time.perf_counter()
    run = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr)
    peak = int(found.group(1)) * 1024 if found else 0
    tail = "\n".join(line for line in run.stderr.splitlines() if line.startswith("Error"))
    return peak, seconds, run.returncode, tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="folder for the checkpoint and the export")
    parser.add_argument("--layers", type=int, default=15, help="decoder layers (15: ~3 GB)")
    parser.add_argument("--keep", action="store_true", help="keep the files afterwards")
    parser.add_argument("--no-validate", action="store_true", help="export only")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="onnxport-large-"))
    work.mkdir(parents=True, exist_ok=True)
    checkpoint, output = work / "checkpoint", work / "onnx"
    try:
        print(f"Building the checkpoint in {checkpoint}...", flush=True)
        size = build_checkpoint(checkpoint, args.layers)
        command = [
            sys.executable, "-m", "onnxport", "export", "onnx", "--model", str(checkpoint),
            "--task", "feature-extraction", "--force", str(output),
        ]  # fmt: skip
        if args.no_validate:
            command.append("--no-validate")
        peak, seconds, code, errors = peak_rss(command)
        if code:
            print(f"export failed (exit {code}): {errors}")
            return 1
        files = sorted(output.iterdir())
        data = sum(p.stat().st_size for p in files if p.name != "model.onnx")
        bound = 1.5 * size + GIB
        print(f"fp32 weights:        {size / GIB:.2f} GiB")
        print(f"export files:        {', '.join(p.name for p in files)}")
        print(f"graph + data:        {(output / 'model.onnx').stat().st_size / GIB:.3f} GiB + "
              f"{data / GIB:.2f} GiB")  # fmt: skip
        print(f"peak RSS:            {peak / GIB:.2f} GiB")
        print(f"wall time:           {seconds:.0f} s")
        print(f"peak / weights:      {peak / size:.2f}")
        print(
            f"bound (1.5 x + 1 GB):{bound / GIB:6.2f} GiB -> {'met' if peak <= bound else 'MISSED'}"
        )
        return 0 if peak <= bound else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
