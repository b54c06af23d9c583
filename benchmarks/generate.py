"""Generation speed: PyTorch generate() vs ORTModelForCausalLM.generate() on a ~100M Llama.

Builds a random Llama-style model (no download), exports it with onnxport, then times greedy
generation of 64 new tokens at batch 1 and batch 4 (left-padded prompts of different lengths).
PyTorch and ONNX Runtime alternate run by run, so both see the same machine speed states; the
script prints the median new-tokens-per-second of each and the median of the per-pair ratios,
and checks that both produce identical tokens. The export's -O2 variant (`onnxport optimize`:
rotary, RMSNorm and attention fusions) is timed in the same rotation.

    python benchmarks/generate.py [--repeats 5] [--new-tokens 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

import onnxport
from onnxport.variants.optimize import optimize


def build_model(folder: Path) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=16384,
        hidden_size=768,
        intermediate_size=2048,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(folder)
    return model


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


def timed(
    model: object, inputs: dict[str, torch.Tensor], new_tokens: int
) -> tuple[float, torch.Tensor]:
    settings = {
        "max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False,
        "pad_token_id": 0,
    }  # fmt: skip
    start = time.perf_counter()
    output = model.generate(**inputs, **settings)  # type: ignore[attr-defined]
    return time.perf_counter() - start, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, exported = Path(tmp) / "checkpoint", Path(tmp) / "onnx"
        model = build_model(checkpoint)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        start = time.perf_counter()
        result = onnxport.export(checkpoint, exported, task="text-generation")
        print(
            f"model: random Llama, {params:.0f}M parameters; export + validation "
            f"{time.perf_counter() - start:.1f} s ({result.strategy}), "
            f"validation passed: {result.validation is not None and result.validation.passed}"
        )
        optimized = optimize(exported, 2)
        print(f"-O2 fusions: {optimized.fusions}")
        candidates = {
            "ORT": onnxport.ORTModelForCausalLM.from_pretrained(exported),
            "ORT O2": onnxport.ORTModelForCausalLM.from_pretrained(
                exported, file_name="model_O2.onnx"
            ),
        }

        print(
            f"{args.new_tokens} new tokens, greedy, {args.threads} threads, "
            f"{args.repeats} alternating runs after one warm-up each"
        )
        print(
            f"{'batch':>5}  {'runtime':<7}  {'PyTorch tok/s':>13}  {'ORT tok/s':>10}  "
            f"{'ORT/PyTorch':>11}  same tokens"
        )
        for batch in (1, 4):
            inputs = prompts(batch, model.config.vocab_size)
            timed(model, inputs, 4)
            for candidate in candidates.values():
                timed(candidate, inputs, 4)
            torch_rates: list[float] = []
            rates: dict[str, list[float]] = {name: [] for name in candidates}
            ratios: dict[str, list[float]] = {name: [] for name in candidates}
            same = dict.fromkeys(candidates, True)
            produced = batch * args.new_tokens
            for _ in range(args.repeats):
                torch_seconds, torch_tokens = timed(model, inputs, args.new_tokens)
                torch_rates.append(produced / torch_seconds)
                for name, candidate in candidates.items():
                    seconds, tokens = timed(candidate, inputs, args.new_tokens)
                    rates[name].append(produced / seconds)
                    ratios[name].append(torch_seconds / seconds)
                    same[name] = same[name] and torch.equal(torch_tokens, tokens)
            for name in candidates:
                print(
                    f"{batch:>5}  {name:<7}  {statistics.median(torch_rates):>13.1f}  "
                    f"{statistics.median(rates[name]):>10.1f}  "
                    f"{statistics.median(ratios[name]):>10.2f}x  {'yes' if same[name] else 'NO'}"
                )


if __name__ == "__main__":
    main()
