"""Extractive question answering as a transformers `Pipeline`.

Transformers 5 removed its question-answering pipeline, but extractive QA models (and their
ONNX exports) are still widely deployed; this is the part of it users need. It runs on a
PyTorch model or an ORT model alike, so their answers can be compared one to one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import Pipeline


def _log_softmax(values: np.ndarray) -> np.ndarray:
    shifted = values - values.max()
    return shifted - np.log(np.exp(shifted).sum())


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
        preprocess = {
            k: v
            for k, v in (("max_seq_len", max_seq_len), ("doc_stride", doc_stride))
            if v is not None
        }
        postprocess = {
            k: v for k, v in (("top_k", top_k), ("max_answer_len", max_answer_len)) if v is not None
        }
        return preprocess, {}, postprocess

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Answer `question=` about `context=` (or a dict / list of dicts with both keys)."""
        if "question" in kwargs and "context" in kwargs:
            question, context = kwargs.pop("question"), kwargs.pop("context")
            if isinstance(question, list):
                inputs: Any = [
                    {"question": q, "context": c} for q, c in zip(question, context, strict=True)
                ]
            else:
                inputs = {"question": question, "context": context}
            return super().__call__(inputs, **kwargs)
        return super().__call__(*args, **kwargs)

    def preprocess(  # type: ignore[override]
        self,
        inputs: dict[str, str],
        max_seq_len: int = 384,
        doc_stride: int = 128,
    ) -> dict[str, Any]:
        """Tokenize question and context into one or more overlapping windows."""
        if not isinstance(inputs, dict) or {"question", "context"} - set(inputs):
            raise ValueError("question-answering takes question= and context= (both strings).")
        tokenizer: Any = self.tokenizer
        max_seq_len = min(max_seq_len, tokenizer.model_max_length)
        question_length = len(tokenizer(inputs["question"], add_special_tokens=False)["input_ids"])
        room = max_seq_len - question_length - tokenizer.num_special_tokens_to_add(pair=True)
        if room < 2:
            raise ValueError(
                f"The question is {question_length} tokens long: max_seq_len={max_seq_len} "
                "leaves no room for the context. Pass a larger max_seq_len."
            )
        # The tokenizer needs the overlap strictly shorter than the context part of a window.
        doc_stride = min(doc_stride, max_seq_len // 2, room - 1)
        encoded = tokenizer(
            inputs["question"],
            inputs["context"],
            truncation="only_second",
            max_length=max_seq_len,
            stride=doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding=True,
            return_tensors="pt",
        )
        windows = encoded["input_ids"].shape[0]
        context_mask = np.array(
            [[sid == 1 for sid in encoded.sequence_ids(i)] for i in range(windows)]
        )
        model_inputs = {k: encoded[k] for k in tokenizer.model_input_names if k in encoded}
        return {
            "model_inputs": model_inputs,
            "offsets": encoded["offset_mapping"].numpy(),
            "context_mask": context_mask,
            "context": inputs["context"],
        }

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
        candidates: list[tuple[float, int, int]] = []
        for window in range(output["start"].shape[0]):
            mask = output["context_mask"][window]
            if not mask.any():
                continue
            start = _log_softmax(np.where(mask, output["start"][window], -np.inf))
            end = _log_softmax(np.where(mask, output["end"][window], -np.inf))
            scores = start[:, None] + end[None, :]
            length = np.arange(len(mask))
            valid = (length[None, :] >= length[:, None]) & (
                length[None, :] - length[:, None] < max_answer_len
            )
            valid &= mask[:, None] & mask[None, :]
            scores = np.where(valid, scores, -np.inf)
            for flat in np.argsort(-scores, axis=None)[:top_k]:
                s, e = divmod(int(flat), scores.shape[1])
                if np.isfinite(scores[s, e]):
                    offsets = output["offsets"][window]
                    candidates.append(
                        (float(np.exp(scores[s, e])), int(offsets[s][0]), int(offsets[e][1]))
                    )
        best: dict[tuple[int, int], float] = {}
        for score, char_start, char_end in candidates:
            key = (char_start, char_end)
            best[key] = max(score, best.get(key, 0.0))
        ranked = sorted(best.items(), key=lambda item: -item[1])[:top_k]
        answers = [
            {"score": score, "start": s, "end": e, "answer": output["context"][s:e]}
            for (s, e), score in ranked
        ]
        if top_k == 1:
            return answers[0] if answers else {"score": 0.0, "start": 0, "end": 0, "answer": ""}
        return answers
