"""Accuracy guard: how far an optimized or quantized variant drifts from the fp32 export.

Every optimize and quantize run compares the new graph with the fp32 export on sample inputs,
one text at a time (so a one-word input counts as much as a long one), and reports the worst
case: max absolute difference and minimum cosine similarity of the main output. For
feature extraction the cosine is that of the mean-pooled sentence embeddings, what a user of
the embeddings compares. Generative models also report greedy-token agreement.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from onnxport.errors import VariantError
from onnxport.runtime.registry import GENERATIVE_TASKS
from onnxport.sessions import CPU, create_session
from onnxport.variants.files import exported_task

logger = logging.getLogger(__name__)

# Built-in evaluation texts: one-word, short and long inputs, where quantization errors show.
EVAL_TEXTS = (
    "no",
    "Hi",
    "Paris",
    "I love it",
    "Where is the nearest train station?",
    "The quick brown fox jumps over the lazy dog.",
    "ONNX Runtime runs exported models on servers, phones and browsers.",
    "The meeting was moved to Thursday afternoon at three, after the budget review.",
    "A model exported once should give the same answers everywhere, and this sentence keeps "
    "going with many clauses, numbers like 3.14159 and 2026, names such as Ada Lovelace and "
    "Alan Turing, and rarer words (photosynthesis, juxtaposition, antidisestablishmentarian) "
    "so that the embedding has to carry a lot of content at once.",
)


# Sentences of many kinds (news, science, chat, code, numbers, addresses, a dozen languages),
# one per line, from which `builtin_texts` builds the guard's evaluation set.
GUARD_TEXTS_FILE = Path(__file__).resolve().parents[1] / "data" / "guard_texts.txt"
# Generative models decode every text: the guard samples this many of each part for them.
GENERATIVE_SAMPLE = 12


@dataclass(frozen=True)
class EvaluationTexts:
    """The guard's texts: `search` drives its decisions, `held_out` only reports.

    A quantizer that keeps MatMuls in fp32 until the worst text reaches the target has tuned
    its choice to those texts; the held-out ones, never looked at while choosing, say whether
    the figure holds on text it has not seen.
    """

    search: tuple[str, ...]
    held_out: tuple[str, ...] = ()


@functools.cache
def builtin_texts() -> EvaluationTexts:
    """The built-in set: one word to a paragraph, about 290 texts, a quarter held out.

    Every sentence of `GUARD_TEXTS_FILE`; the first word and the first three words of every
    third one (where quantization errors are largest: few tokens, little averaging);
    paragraphs of five consecutive sentences and two long ones of twelve; and `EVAL_TEXTS`.
    Every fourth text (in that order) is held out.
    """
    sentences = [line.strip() for line in GUARD_TEXTS_FILE.read_text("utf-8").splitlines()]
    sentences = [s for s in sentences if s]
    texts = list(EVAL_TEXTS) + sentences
    for sentence in sentences[::3]:
        words = sentence.split()
        texts += [words[0].strip(".,;:!?¿¡"), " ".join(words[:3])]
    texts += [" ".join(sentences[i : i + 5]) for i in range(0, len(sentences) - 4, 6)]
    texts += [" ".join(sentences[i : i + 12]) for i in (24, 96)]
    unique = list(dict.fromkeys(t for t in texts if t))
    held = tuple(unique[3::4])
    return EvaluationTexts(tuple(t for i, t in enumerate(unique) if i % 4 != 3), held)


def evaluation_texts(path: str | Path | None, *, generative: bool = False) -> EvaluationTexts:
    """The guard's texts: a file's (all searched, none held out), or the built-in set.

    Generative models (which decode each text) get `EVAL_TEXTS` to search and a sample of the
    held-out texts.
    """
    if path is not None:
        return EvaluationTexts(tuple(read_texts(path)))
    texts = builtin_texts()
    if generative:
        step = max(1, len(texts.held_out) // GENERATIVE_SAMPLE)
        return EvaluationTexts(EVAL_TEXTS, texts.held_out[::step][:GENERATIVE_SAMPLE])
    return texts


@dataclass(frozen=True)
class AccuracyReport:
    """Drift of `candidate` from `reference` on `samples` inputs.

    `min_cosine` is the worst per-input cosine of the main output (mean-pooled embeddings for
    feature extraction, next-token logits for generative models); `token_agreement` is the
    share of greedy tokens equal to the reference's (generative models only).
    """

    reference: str
    candidate: str
    output: str
    samples: int
    max_abs_diff: float
    min_cosine: float
    mean_cosine: float
    token_agreement: float | None = None

    def passes(self, min_cosine: float) -> bool:
        """Whether the worst input keeps at least `min_cosine`."""
        return self.min_cosine >= min_cosine

    def format(self) -> str:
        """The block the CLI prints."""
        lines = [
            f"Accuracy of {self.candidate} against {self.reference} ({self.samples} inputs, "
            f"output '{self.output}'):",
            f"    max abs diff {self.max_abs_diff:.3g}, cosine min {self.min_cosine:.5f} / "
            f"mean {self.mean_cosine:.5f}",
        ]
        if self.token_agreement is not None:
            lines.append(f"    greedy-token agreement {self.token_agreement:.1%}")
        return "\n".join(lines)


def read_texts(path: str | Path | None) -> list[str]:
    """Non-empty lines of a text file (one input per line), or the built-in texts."""
    if path is None:
        return list(EVAL_TEXTS)
    file = Path(path)
    if not file.is_file():
        raise VariantError(
            f"Text file '{file}' does not exist; pass a file with one text per line."
        )
    texts = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    texts = [t for t in texts if t]
    if not texts:
        raise VariantError(f"Text file '{file}' has no non-empty lines.")
    return texts


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays, flattened (1.0 for two equal zero arrays)."""
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / norm) if norm > 0 else float(np.array_equal(a, b))


def _session(path: Path, threads: int = 0) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return create_session(path, options, CPU, error=VariantError)


class RandomTokens:
    """Stands in for a missing tokenizer: each text becomes ids seeded by the text itself.

    As many ids as the text has words (plus two), drawn above the usual special-token ids, so
    short and long inputs still differ as the built-in texts do.
    """

    model_max_length = 256

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = max(int(vocab_size), 8)

    def __call__(
        self, text: str | list[str], return_tensors: str = "np", max_length: int = 256, **_: Any
    ) -> dict[str, Any]:
        """Encode one text as a tokenizer would: input_ids and attention_mask."""
        texts = [text] if isinstance(text, str) else list(text)
        if len(texts) != 1:
            raise ValueError("RandomTokens encodes one text at a time.")
        seed = sum(ord(c) * (i + 1) for i, c in enumerate(texts[0])) % 2**32
        length = min(len(texts[0].split()) + 2, max_length)
        ids = np.random.default_rng(seed).integers(5, self.vocab_size, (1, length))
        encoded = {"input_ids": ids.astype(np.int64), "attention_mask": np.ones_like(ids)}
        if return_tensors == "pt":
            import torch

            return {k: torch.from_numpy(v) for k, v in encoded.items()}
        return encoded


def load_tokenizer(folder: Path) -> Any:
    """The folder's tokenizer, or `RandomTokens` (with a warning) when it has none."""
    from onnxport import hub
    from onnxport.exporters.load import load_tokenizer

    tokenizer = load_tokenizer(folder)
    if tokenizer is not None:
        return tokenizer
    logger.warning("No tokenizer in '%s': random token ids stand in for the texts.", folder)
    return RandomTokens(getattr(hub.load_config(folder), "vocab_size", 1000) or 1000)


def max_tokens(tokenizer: Any, limit: int = 256) -> int:
    """Longest input to feed: `limit`, or less where the tokenizer's model takes less."""
    return min(limit, int(getattr(tokenizer, "model_max_length", limit) or limit))


def encoder_feeds(
    session: ort.InferenceSession, tokenizer: Any, text: str | list[str]
) -> dict[str, Any]:
    """One text, or several padded together, as graph inputs.

    A multiple-choice graph gets each text as two choices.
    """
    padding = {"padding": True} if isinstance(text, list) else {}
    encoded = tokenizer(
        text, return_tensors="np", truncation=True, max_length=max_tokens(tokenizer), **padding
    )
    feeds: dict[str, Any] = {}
    for graph_input in session.get_inputs():
        value = encoded.get(graph_input.name)
        if value is None:
            fill = 1 if graph_input.name == "attention_mask" else 0
            value = np.full_like(encoded["input_ids"], fill)
        value = value.astype(np.int64)
        if len(graph_input.shape) == 3:
            value = np.stack([value, value], axis=1)
        feeds[graph_input.name] = value
    return feeds


# Texts the guard also runs together, padded to the longest: a variant that mishandles the
# padding mask (measured: ONNX Runtime's quantizer turns an Attention node with an additive
# mask into a QAttention without it) gives single texts right and padded batches wrong.
PADDED_BATCH = 8


def compare_encoder(
    folder: Path, reference: str, candidate: str, task: str, texts: list[str], tokenizer: Any
) -> AccuracyReport:
    """Run both graphs on each text, then on a padded batch; compare the first output.

    Embeddings (feature extraction) are compared mean-pooled over the real tokens.
    """
    ref, new = _session(folder / reference), _session(folder / candidate)
    name = ref.get_outputs()[0].name
    cosines, worst = [], 0.0
    singles = [encoder_feeds(ref, tokenizer, text) for text in texts]
    for feeds in singles + _padded_batch(ref, tokenizer, texts):
        a = ref.run([name], feeds)[0]
        b = new.run([name], feeds)[0]
        mask = feeds.get("attention_mask")
        for row in range(len(a)):
            x, y = a[row], b[row]
            if mask is not None and mask.ndim == 2 and x.ndim and x.shape[0] == mask.shape[1]:
                real = mask[row].astype(bool)  # padded positions carry no meaning
                x, y = x[real], y[real]
            worst = max(worst, float(np.abs(x.astype(np.float64) - y).max()))
            if task == "feature-extraction" and a.ndim == 3:
                x, y = x.sum(0), y.sum(0)  # the mean-pooled embedding's direction
            cosines.append(cosine(x, y))
    return AccuracyReport(
        reference, candidate, name, len(cosines), worst, min(cosines), float(np.mean(cosines))
    )


def _padded_batch(session: ort.InferenceSession, tokenizer: Any, texts: list[str]) -> list[Any]:
    """Up to PADDED_BATCH of `texts`, shortest to longest, as one padded batch ([] if none).

    Only for a tokenizer that pads (not `RandomTokens`) and a graph of (batch, tokens) inputs.
    """
    if (
        isinstance(tokenizer, RandomTokens)
        or len(texts) < 2
        or not getattr(tokenizer, "pad_token", None)
    ):
        return []
    if any(len(i.shape) != 2 for i in session.get_inputs()):
        return []
    ordered = sorted(texts, key=len)
    step = max(1, (len(ordered) - 1) // (PADDED_BATCH - 1))
    chosen = list(dict.fromkeys([*ordered[::step][: PADDED_BATCH - 1], ordered[-1]]))
    feeds = encoder_feeds(session, tokenizer, chosen)
    return [feeds] if "attention_mask" in feeds else []


def compare_generative(
    folder: Path, reference: str, candidate: str, task: str, texts: list[str], tokenizer: Any
) -> AccuracyReport:
    """Next-token logits on each prompt, then greedy decoding with both; tokens compared."""
    import torch

    from onnxport.runtime import ORT_MODEL_CLASSES

    model_class: Any = ORT_MODEL_CLASSES[task]
    ref = model_class.from_pretrained(folder, file_name=reference)
    new = model_class.from_pretrained(folder, file_name=candidate)
    cosines, worst, agree, total = [], 0.0, 0, 0
    for text in texts:
        inputs = _generative_inputs(task, folder, tokenizer, text, ref)
        with torch.no_grad():
            a = _next_logits(ref, inputs)
            b = _next_logits(new, inputs)
        worst = max(worst, float(np.abs(a - b).max()))
        cosines.append(cosine(a, b))
        options = {"max_new_tokens": 12, "do_sample": False}
        tokens_a = ref.generate(**inputs, **options)[0].tolist()
        tokens_b = new.generate(**inputs, **options)[0].tolist()
        total += max(len(tokens_a), len(tokens_b))
        agree += sum(x == y for x, y in zip(tokens_a, tokens_b, strict=False))
    return AccuracyReport(
        reference,
        candidate,
        "logits",
        len(texts),
        worst,
        min(cosines),
        float(np.mean(cosines)),
        token_agreement=agree / total if total else None,
    )


def _generative_inputs(
    task: str, folder: Path, tokenizer: Any, text: str, model: Any
) -> dict[str, Any]:
    if task == "automatic-speech-recognition":
        from transformers import AutoFeatureExtractor

        features = AutoFeatureExtractor.from_pretrained(folder)
        seed = sum(map(ord, text))
        rate = features.sampling_rate
        time = np.arange(rate) / rate
        rng = np.random.default_rng(seed)
        audio = 0.3 * np.sin(2 * np.pi * (150 + seed % 400) * time) + 0.05 * rng.standard_normal(
            time.size
        )
        return {
            "input_features": features(
                audio.astype(np.float32), sampling_rate=rate, return_tensors="pt"
            ).input_features
        }
    if task == "image-text-to-text":
        return _image_prompt(folder, text)
    return dict(
        tokenizer(
            [text], return_tensors="pt", truncation=True, max_length=max_tokens(tokenizer, 64)
        )
    )


def _image_prompt(folder: Path, text: str) -> dict[str, Any]:
    """`text` after a random image (seeded by the text), through the folder's processor.

    The guard then runs the vision encoder and the splice as well as the decoder.
    """
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(folder)
    rng = np.random.default_rng(sum(map(ord, text)))
    image = Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8))
    token = getattr(processor, "image_token", None) or "<image>"
    return dict(processor(images=[image], text=[f"{token}{text}"], return_tensors="pt"))


def _next_logits(model: Any, inputs: dict[str, Any]) -> np.ndarray:
    import torch

    if model.task in ("text-generation", "image-text-to-text"):
        return model(**inputs).logits[:, -1].float().numpy()
    start = model.generation_config.decoder_start_token_id
    batch = next(iter(inputs.values())).shape[0]
    decoder_ids = torch.full((batch, 1), int(start), dtype=torch.long)
    return model(**inputs, decoder_input_ids=decoder_ids).logits[:, -1].float().numpy()


def compare(
    folder: Path,
    reference: str,
    candidate: str,
    *,
    texts: list[str] | None = None,
    task: str | None = None,
) -> AccuracyReport:
    """Compare graph `candidate` with `reference` (file names in `folder`) on `texts`."""
    task = task or exported_task(folder / reference)
    texts = texts or list(EVAL_TEXTS)
    tokenizer = load_tokenizer(folder)
    if task in GENERATIVE_TASKS:
        return compare_generative(folder, reference, candidate, task, texts, tokenizer)
    return compare_encoder(folder, reference, candidate, task, texts, tokenizer)
