"""Whisper decoder step time against the number of encoder positions it attends to.

Builds random Whisper checkpoints with whisper-tiny's dimensions (d_model 384, 4+4 layers,
6 heads, 51,865 tokens) at several encoder lengths (`max_source_positions`; Whisper's real one
is 1,500), exports each with onnxport, and times one decoder step (batch 1, 8 tokens of
self-attention past) through ONNX Runtime in two ways on the same graph:

- reused: the cross-attention cache filled by the first step is fed back (what onnxport's
  runtime and transformers.js do after the first step);
- recomputed: the cross-attention cache fed empty, so the step projects all encoder states
  again (what every step cost before: O(positions x d_model^2)).

Then `ORTModelForSpeechSeq2Seq.generate()` against PyTorch eager at 1,500 positions (32 new
tokens, greedy; tokens compared). Contenders alternate in blocks after a warm-up; medians.

    python benchmarks/whisper_steps.py [--positions 375 750 1500] [--repeats 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration
from transformers.utils import logging as transformers_logging

import onnxport
from onnxport.sessions import create_session

transformers_logging.set_verbosity_error()  # generate() warns per call about max_length

TINY = {
    "vocab_size": 51865, "d_model": 384, "encoder_layers": 4, "decoder_layers": 4,
    "encoder_attention_heads": 6, "decoder_attention_heads": 6, "encoder_ffn_dim": 1536,
    "decoder_ffn_dim": 1536, "num_mel_bins": 80, "max_target_positions": 448,
    "decoder_start_token_id": 50257, "pad_token_id": 50256, "eos_token_id": 50256,
    "bos_token_id": 50256,
}  # fmt: skip


def build(folder: Path, positions: int) -> WhisperForConditionalGeneration:
    """A random whisper-tiny-sized checkpoint whose encoder has `positions` positions."""
    torch.manual_seed(0)
    config = WhisperConfig(**TINY, max_source_positions=positions)
    model = WhisperForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    return model


def step_feeds(session, positions: int) -> tuple[dict, dict]:
    """(reused, recomputed) feeds for one decoder step after the first."""
    rng = np.random.default_rng(0)
    inputs = {i.name: i for i in session.get_inputs()}
    hidden = rng.standard_normal((1, positions, TINY["d_model"]), np.float32)
    first = {"input_ids": np.array([[TINY["decoder_start_token_id"]]]),
             "encoder_hidden_states": hidden}  # fmt: skip
    for name, value in inputs.items():
        if name.startswith("past_key_values."):
            past = 0 if ".encoder." in name else 8
            first[name] = rng.standard_normal((1, value.shape[1], past, value.shape[3]), np.float32)
    names = [o.name for o in session.get_outputs()]
    presents = dict(zip(names, session.run(None, first), strict=True))
    reused = dict(first, input_ids=np.array([[440]]))
    for name in inputs:
        if ".encoder." in name:
            reused[name] = presents[name.replace("past_key_values.", "present.")]
    return reused, dict(first, input_ids=np.array([[440]]))


def timed(run, repeats: int) -> list[float]:
    """Seconds per call of `run`, `repeats` times after one warm-up."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, nargs="+", default=[375, 750, 1500])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="onnxport-whisper-") as tmp:
        runs: dict[int, tuple] = {}
        models: dict[int, WhisperForConditionalGeneration] = {}
        for positions in args.positions:
            checkpoint, out = Path(tmp) / f"ckpt-{positions}", Path(tmp) / f"onnx-{positions}"
            models[positions] = build(checkpoint, positions)
            onnxport.export(checkpoint, out, task="automatic-speech-recognition")
            options = onnxport.ORTModelForSpeechSeq2Seq.default_session_options()
            options.intra_op_num_threads = args.threads
            session = create_session(out / "decoder_model.onnx", options)
            runs[positions] = (session, *step_feeds(session, positions), out)
        samples: dict[tuple[int, str], list[float]] = {}
        for _ in range(args.blocks):  # contenders alternate block by block
            for positions, (session, reused, recomputed, _) in runs.items():
                for label, feed in (("reused", reused), ("recomputed", recomputed)):
                    times = timed(lambda s=session, f=feed: s.run(None, f), args.repeats)
                    samples.setdefault((positions, label), []).extend(times)
        print(f"Whisper decoder step (whisper-tiny dims, batch 1, past 8, {args.threads} threads)")
        print("| encoder positions | cross-attention cache | ms per step | x reused |")
        print("|---|---|---|---|")
        base = min(args.positions)
        for positions in args.positions:
            reused = statistics.median(samples[(positions, "reused")]) * 1e3
            again = statistics.median(samples[(positions, "recomputed")]) * 1e3
            print(f"| {positions} | reused | {reused:.2f} | 1.00 |")
            print(f"| {positions} | recomputed | {again:.2f} | {again / reused:.2f} |")
        for label in ("reused", "recomputed"):
            low = statistics.median(samples[(base, label)])
            high = statistics.median(samples[(max(args.positions), label)])
            print(f"{label}: step at {max(args.positions)} positions / at {base}: {high / low:.2f}")
        top = max(args.positions)
        features = torch.randn(1, 80, 2 * top, generator=torch.Generator().manual_seed(1))
        options = onnxport.ORTModelForSpeechSeq2Seq.default_session_options()  # no spinning
        options.intra_op_num_threads = args.threads
        ort_model = onnxport.ORTModelForSpeechSeq2Seq.from_pretrained(
            runs[top][3], session_options=options
        )
        settings = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens,
                    "do_sample": False}  # fmt: skip
        pt_tokens = models[top].generate(features, **settings)
        ort_tokens = ort_model.generate(features, **settings)
        rates: dict[str, list[float]] = {"PyTorch eager": [], "onnxport": []}
        encoder_ms: dict[str, list[float]] = {"PyTorch eager": [], "onnxport": []}
        encoders = {"PyTorch eager": models[top].get_encoder(), "onnxport": ort_model.get_encoder()}
        for _ in range(args.blocks):
            for label, encoder in encoders.items():
                with torch.no_grad():
                    encoder_ms[label].extend(
                        t * 1e3 for t in timed(lambda e=encoder: e(input_features=features), 3)
                    )
            for label, model in (("PyTorch eager", models[top]), ("onnxport", ort_model)):
                start = time.perf_counter()
                with torch.no_grad():
                    model.generate(features, **settings)
                rates[label].append(args.new_tokens / (time.perf_counter() - start))
        same = bool(torch.equal(pt_tokens, ort_tokens))
        print(f"generate() at {top} positions, {args.new_tokens} new tokens, greedy:")
        for label, values in rates.items():
            encoder = statistics.median(encoder_ms[label])
            print(
                f"  {label}: {statistics.median(values):.1f} tok/s, encoder alone {encoder:.0f} ms"
            )
        pairs = zip(rates["onnxport"], rates["PyTorch eager"], strict=True)
        ratio = statistics.median(o / p for o, p in pairs)
        print(f"  onnxport / PyTorch: {ratio:.2f}x; tokens equal: {same}")


if __name__ == "__main__":
    main()
