"""Real weights: the bundled all-MiniLM-L6-v2 against sentence-transformers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from transformers import AutoTokenizer

import onnxport
from onnxport.cli.demo import default_model_path, mean_pool

# One worker builds the module's exports once (split across workers, each built its own).
pytestmark = pytest.mark.xdist_group("minilm")

SENTENCES = [
    "Hi.",
    "The cat sat on the mat.",
    "ONNX Runtime runs exported models on servers, phones and browsers alike.",
    "A very long sentence that keeps going, listing apples, pears, plums, cherries, grapes, "
    "figs, dates, lemons, limes, oranges and every other fruit the market sells in summer.",
    "How do I export a transformer?",
    "Paris is the capital of France.",
    "Quantization makes models smaller.",
    "I love this film!",
    "Il pleut à Paris aujourd'hui.",
    "1234 5678 90",
    "Embeddings turn sentences into vectors that can be compared by cosine similarity.",
    "Why?",
]


@pytest.fixture(scope="module")
def minilm_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Export through the legacy entry point, in a real process, as users run it."""
    out = tmp_path_factory.mktemp("minilm") / "onnx"
    result = subprocess.run(
        [sys.executable, "-m", "onnxport", f"--model={default_model_path()}", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "-[✓] ONNX model output names match reference model" in result.stdout
    assert "The ONNX export succeeded and the exported model was saved at:" in result.stdout
    assert "[x]" not in result.stdout
    return out


def test_embeddings_match_sentence_transformers(minilm_export: Path) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(default_model_path()), device="cpu").encode(
        SENTENCES, batch_size=len(SENTENCES)
    )
    model = onnxport.ORTModelForFeatureExtraction.from_pretrained(minilm_export)
    tokenizer = AutoTokenizer.from_pretrained(minilm_export)
    encoded = tokenizer(SENTENCES, padding=True, return_tensors="np")
    assert encoded["attention_mask"].min() == 0  # really padded
    hidden = model(**encoded).last_hidden_state
    ours = mean_pool(hidden, encoded["attention_mask"])
    cosine = (ours * reference).sum(axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() >= 0.99999, cosine


def test_plain_inference_session(minilm_export: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(minilm_export)
    session = ort.InferenceSession(str(minilm_export / "model.onnx"))
    outputs = session.run(None, dict(tokenizer(SENTENCES[:3], padding=True, return_tensors="np")))
    assert outputs[0].shape[:2] == (3, max(len(tokenizer(s)["input_ids"]) for s in SENTENCES[:3]))
    assert outputs[0].shape[2] == 384


def test_output_folder_is_self_contained(minilm_export: Path) -> None:
    names = {p.name for p in minilm_export.iterdir()}
    assert {"model.onnx", "config.json", "tokenizer.json", "tokenizer_config.json"} <= names
    assert "model.onnx.data" not in names  # 91 MB fits in one protobuf
    model = onnx.load(str(minilm_export / "model.onnx"))
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["task"] == "feature-extraction"
    assert metadata["model_type"] == "bert"
    assert metadata["capture_strategy"] == "dynamo"
    assert model.producer_name == "onnxport"
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch_size", "sequence_length"]
