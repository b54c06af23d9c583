"""Generation speed: PyTorch, onnxport and onnxruntime-genai on one random Llama checkpoint.

Builds a random Llama-style checkpoint (no download; default ~250M parameters, GQA 16/4 heads,
16 layers), then times greedy generation of 64 new tokens:

- PyTorch eager `generate()`;
- onnxport `ORTModelForCausalLM.generate()` on the export (fp32), its -O2 variant and its
  int4 weight-only variants (`onnxport quantize --mode int4-weight-only`: with the accuracy
  guard's default, and with every MatMul quantized as onnxruntime-genai's builder does);
- onnxruntime-genai (`og.Model`, its C++ loop) on the graphs its own model builder writes
  from the same safetensors (fp32 and int4: GroupQueryAttention with a shared cache buffer,
  fused rotary and RMSNorm, MatMulNBits), and on onnxport's fp32 export through the
  genai_config.json onnxport writes.

Batch 1 runs every contender; batch 4 (left-padded prompts of different lengths) runs
PyTorch and onnxport (onnxruntime-genai's batching of unequal prompts is not compared).
Contenders alternate run by run after one warm-up each, so all see the same machine speed
states; the script prints median new tokens per second, the ratio to PyTorch and to
onnxruntime-genai at the same precision (median of per-round ratios), and the share of
greedy tokens equal to PyTorch's. onnxruntime-genai is installed into the running
environment's extras (`pip install 'onnxport[genai]'`); without it those rows are skipped.

    python benchmarks/generate.py [--repeats 5] [--new-tokens 64] [--threads 2] [--small]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

import onnxport
import onnxport.errors
from onnxport.variants.optimize import optimize
from onnxport.variants.quantize import quantize

SIZES = {
    # ~250M: the checkpoint issue 18 measured.
    "default": {"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 16,
                "num_attention_heads": 16, "num_key_value_heads": 4, "vocab_size": 32000},
    "small": {"hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4,
              "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 4096},
}  # fmt: skip


def build_model(folder: Path, size: str) -> LlamaForCausalLM:
    """A random Llama saved with a byte-level BPE tokenizer (onnxruntime-genai reads BPE)."""
    config = LlamaConfig(
        **SIZES[size],
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(folder)
    _save_tokenizer(folder)
    return model


def _save_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    # Every byte has a token (sorted: the alphabet comes back in hash order), so no text
    # tokenizes to nothing; ids past the 259 used are never produced by the tokenizer.
    vocab = {f"<{i}>": i for i in range(3)}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[char] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<1>", eos_token="<2>", pad_token="<0>"
    )
    fast.save_pretrained(folder)


def prompts(batch: int, vocab: int) -> dict[str, torch.Tensor]:
    """Left-padded random prompts; lengths differ between rows."""
    generator = torch.Generator().manual_seed(batch)
    lengths = [32 - 6 * i for i in range(batch)]
    width = max(lengths)
    ids = torch.zeros(batch, width, dtype=torch.long)
    mask = torch.zeros(batch, width, dtype=torch.long)
    for row, length in enumerate(lengths):
        ids[row, width - length :] = torch.randint(3, vocab, (length,), generator=generator)
        mask[row, width - length :] = 1
    return {"input_ids": ids, "attention_mask": mask}


Runner = Callable[[dict[str, torch.Tensor], int], torch.Tensor]


def transformers_runner(model: object) -> Runner:
    """`generate()` of a PyTorch or onnxport model: greedy, exactly `new_tokens` new tokens."""

    def run(inputs: dict[str, torch.Tensor], new_tokens: int) -> torch.Tensor:
        settings = {
            "max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False,
            "pad_token_id": 0,
        }  # fmt: skip
        output: torch.Tensor = model.generate(**inputs, **settings)  # type: ignore[attr-defined]
        return output[:, inputs["input_ids"].shape[1] :]

    return run


def genai_runner(folder: Path, threads: int) -> Runner:
    """onnxruntime-genai's own loop on `folder` (batch 1), greedy, `new_tokens` new tokens."""
    import onnxruntime_genai as og

    config = og.Config(str(folder))
    options = {"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}
    config.overlay(json.dumps(options))
    model = og.Model(config)

    def run(inputs: dict[str, torch.Tensor], new_tokens: int) -> torch.Tensor:
        ids = inputs["input_ids"].numpy().astype(np.int32)
        assert ids.shape[0] == 1, "onnxruntime-genai is compared at batch 1"
        params = og.GeneratorParams(model)
        total = ids.shape[1] + new_tokens
        params.set_search_options(do_sample=False, max_length=total, min_length=total)
        generator = og.Generator(model, params)
        generator.append_tokens(ids)
        while not generator.is_done():
            generator.generate_next_token()
        sequence = np.asarray(generator.get_sequence(0), dtype=np.int64)
        return torch.from_numpy(sequence[ids.shape[1] :])[None]

    return run


def build_genai(checkpoint: Path, folder: Path, precision: str) -> Path | None:
    """onnxruntime-genai's model builder on the checkpoint; None when it is not installed."""
    if importlib.util.find_spec("onnxruntime_genai") is None:
        return None
    command = [
        sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(checkpoint),
        "-o", str(folder), "-p", precision, "-e", "cpu", "-c", str(folder.parent / "cache"),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"onnxruntime-genai builder ({precision}) failed:\n{done.stderr[-2000:]}")
        return None
    return folder


def ratio(reference: list[float], other: list[float]) -> float:
    """Median over rounds of reference time / other time (> 1: `other` is faster)."""
    return statistics.median(r / o for r, o in zip(reference, other, strict=True))


def agreement(reference: torch.Tensor, tokens: torch.Tensor) -> float:
    """Share of greedy tokens equal to the reference's, position by position."""
    width = min(reference.shape[1], tokens.shape[1])
    return float((reference[:, :width] == tokens[:, :width]).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--small", action="store_true", help="a ~5M model, to try the script")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint, exported = root / "checkpoint", root / "onnx"
        model = build_model(checkpoint, "small" if args.small else "default")
        params = sum(p.numel() for p in model.parameters()) / 1e6
        start = time.perf_counter()
        result = onnxport.export(checkpoint, exported, task="text-generation")
        print(
            f"model: random Llama, {params:.0f}M parameters; export + validation "
            f"{time.perf_counter() - start:.1f} s, validation passed: "
            f"{result.validation is not None and result.validation.passed}"
        )
        try:
            print(f"-O2 fusions: {optimize(exported, 2).fusions}")
            optimized = True
        except onnxport.errors.OptimizationError as err:  # reported, not hidden
            print(f"-O2 failed on this checkpoint: {str(err)[:300]}")
            optimized = False
        int4 = quantize(exported, "int4-weight-only", root / "int4")
        print(f"int4: {int4.quantized_nodes} MatMuls quantized, {len(int4.excluded)} kept fp32")
        # onnxruntime-genai's builder quantizes every MatMul, whatever it does to the logits;
        # the same with onnxport is the guard asked for (almost) nothing.
        every = quantize(exported, "int4-weight-only", root / "int4-all", min_cosine=0.01)
        print(
            f"int4, every MatMul: {every.quantized_nodes} quantized, logits cosine min "
            f"{every.accuracy.min_cosine if every.accuracy else float('nan'):.3f}"
        )

        def ort(folder: Path, name: str = "model.onnx") -> Runner:
            loaded = onnxport.ORTModelForCausalLM.from_pretrained(folder, file_name=name)
            return transformers_runner(loaded)

        contenders: dict[str, tuple[Runner, str | None]] = {
            "PyTorch eager fp32": (transformers_runner(model), None),
            "onnxport fp32": (ort(exported), "fp32"),
            "onnxport int4 (guarded)": (ort(root / "int4", "model_int4.onnx"), "int4"),
            "onnxport int4 (every MatMul)": (ort(root / "int4-all", "model_int4.onnx"), "int4"),
        }
        if optimized:
            contenders["onnxport O2"] = (ort(exported, "model_O2.onnx"), "fp32")
        genai: dict[str, str] = {}  # precision -> the genai row compared against
        for precision in ("fp32", "int4"):
            built = build_genai(checkpoint, root / f"genai-{precision}", precision)
            if built is not None:
                name = f"onnxruntime-genai {precision}"
                contenders[name] = (genai_runner(built, args.threads), None)
                genai[precision] = name
        if genai:
            contenders["onnxruntime-genai on onnxport fp32"] = (
                genai_runner(exported, args.threads), None,
            )  # fmt: skip
        else:
            print("onnxruntime-genai is not installed: pip install 'onnxport[genai]'")

        print(
            f"\n{args.new_tokens} new tokens, greedy, {args.threads} threads, "
            f"{args.repeats} alternating rounds after one warm-up each\n"
        )
        print(
            "| batch | runtime | tokens/s | × PyTorch | × onnxruntime-genai (same precision) "
            "| tokens equal to PyTorch's |\n|---|---|---|---|---|---|"
        )
        for batch in (1, 4):
            inputs = prompts(batch, model.config.vocab_size)
            running = {
                name: runner
                for name, (runner, _) in contenders.items()
                if batch == 1 or "genai" not in name
            }
            for runner in running.values():
                runner(inputs, 4)
            seconds: dict[str, list[float]] = {name: [] for name in running}
            tokens: dict[str, torch.Tensor] = {}
            for _ in range(args.repeats):
                for name, runner in running.items():
                    start = time.perf_counter()
                    tokens[name] = runner(inputs, args.new_tokens)
                    seconds[name].append(time.perf_counter() - start)
            produced = batch * args.new_tokens
            reference = tokens["PyTorch eager fp32"]
            for name in running:
                rate = statistics.median(produced / s for s in seconds[name])
                vs_torch = ratio(seconds["PyTorch eager fp32"], seconds[name])
                peer = genai.get(contenders[name][1] or "")
                vs_genai = f"{ratio(seconds[peer], seconds[name]):.2f}" if peer in seconds else "-"
                print(
                    f"| {batch} | {name} | {rate:.1f} | {vs_torch:.2f} | {vs_genai} | "
                    f"{agreement(reference, tokens[name]):.0%} |"
                )


if __name__ == "__main__":
    main()
