"""Extractive question answering as a transformers `Pipeline`.

Transformers 5 removed its question-answering pipeline, but extractive QA models (and their
ONNX exports) are still widely deployed; this is the part of it users need. It runs on a
PyTorch model or an ORT model alike, so their answers can be compared one to one.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Pipeline

from onnxport.runtime.numpy_pipelines.qa import (
    best_answers,
    qa_parameters,
    question_inputs,
    tokenize_windows,
)


class QuestionAnsweringPipeline(Pipeline):
    """Find the answer span to `question` in `context`.

    Long contexts are split into overlapping windows (`max_seq_len`, `doc_stride`); the best
    span over all windows wins. Each answer is `{"score", "start", "end", "answer"}` with
    character offsets into the context.

    Example:
        >>> qa = onnxport.pipeline("question-answering", model="out/")  # doctest: +SKIP
        >>> qa(question="Where?", context="In Paris.")  # doctest: +SKIP
        {'score': 0.97, 'start': 3, 'end': 8, 'answer': 'Paris'}

    """

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        max_answer_len: int | None = None,
        max_seq_len: int | None = None,
        doc_stride: int | None = None,
        **kwargs: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        return qa_parameters(top_k, max_answer_len, max_seq_len, doc_stride)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Answer `question=` about `context=` (or a dict / list of dicts with both keys)."""
        return super().__call__(*question_inputs(args, kwargs), **kwargs)

    def preprocess(  # type: ignore[override]
        self,
        inputs: dict[str, str],
        max_seq_len: int = 384,
        doc_stride: int = 128,
    ) -> dict[str, Any]:
        """Tokenize question and context into one or more overlapping windows."""
        return tokenize_windows(self.tokenizer, inputs, max_seq_len, doc_stride, "pt")

    def _forward(self, batch: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        with torch.no_grad():
            output = self.model(**batch["model_inputs"])
        start, end = output["start_logits"], output["end_logits"]
        return {
            "start": start.float().cpu().numpy() if isinstance(start, torch.Tensor) else start,
            "end": end.float().cpu().numpy() if isinstance(end, torch.Tensor) else end,
            **{k: batch[k] for k in ("offsets", "context_mask", "context")},
        }

    def postprocess(  # type: ignore[override]
        self,
        output: dict[str, Any],
        top_k: int = 1,
        max_answer_len: int = 15,
    ) -> Any:
        """Score every valid (start, end) context span; return the best `top_k`."""
        return best_answers(output, top_k, max_answer_len)
