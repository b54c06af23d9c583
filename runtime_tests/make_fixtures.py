"""Export folders and PyTorch reference outputs for the torch-free runtime tests.

Run in the full environment (torch, the exporter): `python runtime_tests/make_fixtures.py DIR`.
Each case is a tiny random model built in-process (plus the bundled real MiniLM-L6), exported
with onnxport, and run through PyTorch: the model's raw outputs on tokenized inputs, and
transformers' own PyTorch pipelines (for question answering, whose pipeline Transformers 5
removed, onnxport's reproduction of the v4 one over the PyTorch model). The torch-free suite
(runtime_tests/, run in a venv holding only `pip install .`) compares the runtime with these.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import transformers
from PIL import Image

import onnxport
from onnxport.runtime.qa_pipeline import QuestionAnsweringPipeline
from onnxport.tasks import get_task
from onnxport.testing import save_tiny_checkpoint, tiny_config, tiny_model, tiny_tokenizer

TEXTS = [
    "The cat sat on the mat.",
    "a",
    "Paris is the capital of France and a city of many museums and bridges.",
    "I love this film",
]
PAIRS = [{"text": "How old are you?", "text_pair": "I am six."}]
QA = [
    {"question": "Where is the cat?", "context": "The cat sat on the mat in the kitchen."},
    {"question": "Who wrote it?", "context": "It was written by a man who lived in Paris."},
]
MASKED = ["The cat sat on the [MASK].", "Paris is the [MASK] of [MASK]."]
LABELS = ["sports", "politics", "cooking"]
AGGREGATIONS = ["none", "simple", "first", "average", "max"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return np.asarray(value).tolist()
    return value


def _export_checkpoint(root: Path, name: str, model_type: str, task: str, **overrides: Any) -> Path:
    checkpoint = save_tiny_checkpoint(model_type, task, root / "checkpoints" / name, **overrides)
    out = root / name
    onnxport.export(checkpoint, out, task=task, force=True)
    return checkpoint


def _raw_outputs(checkpoint: Path, task: str, folder: Path) -> dict[str, Any]:
    """PyTorch's outputs on a padded batch, for the ORT classes called with numpy."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = get_task(task).auto_model_class().from_pretrained(checkpoint).eval()
    encoded = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        output = model(**encoded)
    keys = [k for k in output if isinstance(output[k], torch.Tensor)]
    return {
        "inputs": {k: v.tolist() for k, v in encoded.items()},
        "class": type(output).__name__,
        "outputs": {k: output[k].tolist() for k in keys},
    }


def _pipeline(task: str, checkpoint: Path, folder: Path, **kwargs: Any) -> Any:
    head = "text-classification" if task == "zero-shot-classification" else task
    model = get_task(head).auto_model_class().from_pretrained(checkpoint).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    return transformers.pipeline(task, model=model, tokenizer=tokenizer, **kwargs)


def text_cases(root: Path) -> dict[str, Any]:
    expected: dict[str, Any] = {}

    checkpoint = _export_checkpoint(root, "text-classification", "bert", "text-classification")
    folder = root / "text-classification"
    classify = _pipeline("text-classification", checkpoint, folder)
    expected["text-classification"] = {
        "raw": _raw_outputs(checkpoint, "text-classification", folder),
        "calls": [
            {"args": [TEXTS], "kwargs": {}, "result": classify(TEXTS)},
            {
                "args": [TEXTS[0]],
                "kwargs": {"top_k": None},
                "result": classify(TEXTS[0], top_k=None),
            },
            {"args": [PAIRS], "kwargs": {}, "result": classify(PAIRS)},
        ],
    }

    checkpoint = _export_checkpoint(root, "token-classification", "bert", "token-classification")
    folder = root / "token-classification"
    calls = []
    for strategy in AGGREGATIONS:
        ner = _pipeline("token-classification", checkpoint, folder, aggregation_strategy=strategy)
        calls.append(
            {
                "args": [TEXTS],
                "kwargs": {"aggregation_strategy": strategy, "ignore_labels": []},
                "result": ner(TEXTS, ignore_labels=[]),
            }
        )
    expected["token-classification"] = {
        "raw": _raw_outputs(checkpoint, "token-classification", folder),
        "calls": calls,
    }

    checkpoint = _export_checkpoint(root, "question-answering", "bert", "question-answering")
    folder = root / "question-answering"
    model = transformers.AutoModelForQuestionAnswering.from_pretrained(checkpoint).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    qa = QuestionAnsweringPipeline(model=model, tokenizer=tokenizer)
    expected["question-answering"] = {
        "raw": _raw_outputs(checkpoint, "question-answering", folder),
        "calls": [
            {"args": [], "kwargs": QA[0], "result": qa(**QA[0])},
            {"args": [QA], "kwargs": {}, "result": qa(QA)},
            {"args": [QA[1]], "kwargs": {"top_k": 3}, "result": qa(QA[1], top_k=3)},
        ],
    }

    checkpoint = _export_checkpoint(root, "fill-mask", "bert", "fill-mask")
    folder = root / "fill-mask"
    fill = _pipeline("fill-mask", checkpoint, folder)
    expected["fill-mask"] = {
        "raw": _raw_outputs(checkpoint, "fill-mask", folder),
        "calls": [
            {"args": [MASKED[0]], "kwargs": {}, "result": fill(MASKED[0])},
            {"args": [MASKED], "kwargs": {"top_k": 2}, "result": fill(MASKED, top_k=2)},
        ],
    }

    checkpoint = _export_checkpoint(root, "feature-extraction", "bert", "feature-extraction")
    folder = root / "feature-extraction"
    features = _pipeline("feature-extraction", checkpoint, folder)
    expected["feature-extraction"] = {
        "raw": _raw_outputs(checkpoint, "feature-extraction", folder),
        "calls": [{"args": [TEXTS[:2]], "kwargs": {}, "result": features(TEXTS[:2])}],
    }

    # An NLI head: zero-shot classification reads the entailment id from label2id.
    nli_labels = {"id2label": {0: "contradiction", 1: "neutral", 2: "entailment"}}
    checkpoint = root / "checkpoints" / "zero-shot-classification"
    save_tiny_checkpoint("bert", "text-classification", checkpoint)
    config = transformers.AutoConfig.from_pretrained(checkpoint)
    config.id2label = nli_labels["id2label"]
    config.label2id = {v: k for k, v in config.id2label.items()}
    config.save_pretrained(checkpoint)
    folder = root / "zero-shot-classification"
    onnxport.export(checkpoint, folder, task="text-classification", force=True)
    zero_shot = _pipeline("zero-shot-classification", checkpoint, folder)
    expected["zero-shot-classification"] = {
        "calls": [
            {
                "args": [TEXTS[:2]],
                "kwargs": {"candidate_labels": LABELS},
                "result": zero_shot(TEXTS[:2], candidate_labels=LABELS),
            },
            {
                "args": [TEXTS[2]],
                "kwargs": {"candidate_labels": LABELS, "multi_label": True},
                "result": zero_shot(TEXTS[2], candidate_labels=LABELS, multi_label=True),
            },
        ]
    }
    return expected


def image_cases(root: Path) -> dict[str, Any]:
    model = tiny_model(tiny_config("vit", image_size=32, patch_size=8), "image-classification")
    processor = transformers.ViTImageProcessorPil(size={"height": 32, "width": 32})
    folder = root / "image-classification"
    onnxport.export(model, folder, task="image-classification", processor=processor, force=True)
    rng = np.random.default_rng(3)
    images = []
    for index in range(2):
        path = root / f"image-{index}.png"
        array = (rng.random((40 + 8 * index, 52, 3)) * 255).astype("uint8")
        Image.fromarray(array).save(path)
        images.append(str(path))
    classify = transformers.pipeline("image-classification", model=model, image_processor=processor)
    return {
        "image-classification": {
            "calls": [
                {"args": [images], "kwargs": {}, "result": classify(images)},
                {
                    "args": [images[0]],
                    "kwargs": {"top_k": 2},
                    "result": classify(images[0], top_k=2),
                },
            ]
        }
    }


def minilm_case(root: Path) -> dict[str, Any]:
    """The real MiniLM-L6 (the demo's model), for the memory test and a real-weights check."""
    from onnxport.cli.demo import default_model_path

    checkpoint = default_model_path()
    folder = root / "minilm"
    # The bare transformer, compared field by field with BertModel's outputs.
    onnxport.export(
        checkpoint, folder, task="feature-extraction", force=True, library="transformers"
    )
    return {"minilm": {"raw": _raw_outputs(checkpoint, "feature-extraction", folder)}}


def sentence_transformers_cases(root: Path) -> dict[str, Any]:
    """A tiny SentenceTransformer and CrossEncoder, with sentence-transformers' own results.

    The bi-encoder pools CLS and max tokens, projects with a Tanh Dense layer and normalizes;
    its max_seq_length (12) truncates the longest text, and it saves a query prompt.
    """
    from sentence_transformers import CrossEncoder, SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (
        Dense,
        Normalize,
        Pooling,
        Transformer,
    )

    checkpoints = root / "checkpoints"
    bert = save_tiny_checkpoint("bert", "feature-extraction", checkpoints / "st-bert")
    transformer = Transformer(str(bert), max_seq_length=12)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode=("cls", "max"))
    torch.manual_seed(1)
    dense = Dense(pooling.get_embedding_dimension(), 16, activation_function=torch.nn.Tanh())
    SentenceTransformer(
        modules=[transformer, pooling, dense, Normalize()],
        device="cpu",
        prompts={"query": "query: "},
    ).save(str(checkpoints / "sentence-transformers"))
    source = checkpoints / "sentence-transformers"
    onnxport.export(source, root / "sentence-transformers", force=True)
    encoder = SentenceTransformer(str(source), device="cpu")
    embeddings = encoder.encode(TEXTS, batch_size=2)

    tokenizer = tiny_tokenizer(["input_ids", "token_type_ids", "attention_mask"])
    config = tiny_config("bert", tokenizer=tokenizer, num_labels=1, initializer_range=0.5)
    torch.manual_seed(2)
    head = transformers.BertForSequenceClassification(config).eval()
    head.save_pretrained(checkpoints / "cross-encoder-hf")
    tokenizer.save_pretrained(checkpoints / "cross-encoder-hf")
    CrossEncoder(str(checkpoints / "cross-encoder-hf"), device="cpu").save(
        str(checkpoints / "cross-encoder")
    )
    onnxport.export(checkpoints / "cross-encoder", root / "cross-encoder", force=True)
    cross = CrossEncoder(str(checkpoints / "cross-encoder"), device="cpu")
    pairs = [[text, other] for text, other in zip(TEXTS, TEXTS[1:] + TEXTS[:1], strict=True)]
    return {
        "sentence-transformers": {
            "texts": TEXTS,
            "embeddings": embeddings,
            "query": encoder.encode(TEXTS, prompt_name="query"),
            "single": encoder.encode(TEXTS[2]),
            "similarity": encoder.similarity(embeddings, embeddings),
        },
        "cross-encoder": {
            "pairs": pairs,
            "scores": cross.predict(pairs, batch_size=2),
            "rank": cross.rank(TEXTS[0], TEXTS, return_documents=True),
        },
    }


def main() -> None:
    root = Path(sys.argv[1]).resolve()
    root.mkdir(parents=True, exist_ok=True)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    expected: dict[str, Any] = {}
    expected.update(text_cases(root))
    expected.update(image_cases(root))
    expected.update(minilm_case(root))
    expected.update(sentence_transformers_cases(root))
    (root / "expected.json").write_text(json.dumps(_jsonable(expected)), encoding="utf-8")
    print(f"fixtures for {len(expected)} cases written to {root}")


if __name__ == "__main__":
    main()
