"""ColPali-style retrieval: page and query embeddings through ONNX Runtime vs PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import onnxport
from onnxport.errors import ORTModelError
from onnxport.layout import EMBED_FILE, ONNX_FILE, VISION_FILE
from onnxport.testing import IMAGE_TOKEN, tiny_retriever, tiny_tokenizer


def _colpali(tmp_path: Path) -> tuple[object, object, Path]:
    tokenizer = tiny_tokenizer(["input_ids", "attention_mask"])
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    model = tiny_retriever("colpali", tokenizer=tokenizer)
    images = transformers.SiglipImageProcessorPil(size={"height": 32, "width": 32})
    images.image_seq_length = 16  # (32 / 8) ** 2 patches
    processor = transformers.ColPaliProcessor(image_processor=images, tokenizer=tokenizer)
    folder = tmp_path / "colpali"
    result = onnxport.export(model, folder, task="retrieval", processor=processor)
    assert result.validation is not None
    assert result.validation.passed
    return model, processor, folder


def test_colpali_pages_and_queries_match_pytorch(tmp_path: Path) -> None:
    model, processor, folder = _colpali(tmp_path)
    assert {VISION_FILE, EMBED_FILE, ONNX_FILE} <= {p.name for p in folder.glob("*.onnx")}
    rng = np.random.default_rng(0)
    pages = [
        Image.fromarray((rng.random((40, 30 + 9 * i, 3)) * 255).astype("uint8")) for i in range(3)
    ]
    texts = ["revenue by quarter", "a much longer question about the second table of the report"]
    page_inputs = processor(images=pages, return_tensors="pt")
    query_inputs = processor(text=texts, return_tensors="pt", padding=True)
    ort_model = onnxport.ORTModelForRetrieval.from_pretrained(folder)
    with torch.no_grad():
        expected_pages = model(**page_inputs).embeddings
        expected_queries = model(**query_inputs).embeddings
    got_pages = ort_model(**page_inputs).embeddings
    got_queries = ort_model(**query_inputs).embeddings
    torch.testing.assert_close(got_pages, expected_pages, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got_queries, expected_queries, atol=1e-4, rtol=1e-4)
    # Other pixels give other page embeddings: the image reaches them.
    other = processor(images=pages[::-1], return_tensors="pt")
    assert not torch.allclose(ort_model(**other).embeddings[0], got_pages[0], atol=1e-3)
    scores = processor.score_retrieval(got_queries, got_pages)
    torch.testing.assert_close(scores, processor.score_retrieval(expected_queries, expected_pages))
    # numpy in, numpy out (the runtime needs no torch)
    numpy_inputs = {k: v.numpy() for k, v in query_inputs.items()}
    np.testing.assert_allclose(
        ort_model(**numpy_inputs).embeddings, expected_queries.numpy(), atol=1e-4, rtol=1e-4
    )
    page_ids = {k: v for k, v in page_inputs.items() if k != "pixel_values"}
    with pytest.raises(ORTModelError, match="no pixel_values"):
        ort_model(**page_ids)
