"""Extractive question answering without torch.

Windows, span scoring and answers for onnxport's QA pipelines (transformers 5 has none): the
numpy one here, and `runtime.qa_pipeline` (a transformers `Pipeline` over torch or ORT models),
which reuses `qa_parameters`, `question_inputs`, `tokenize_windows` and `best_answers`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxport.runtime.numpy_pipelines.base import NumpyPipeline

_NO_ANSWER = {"score": 0.0, "start": 0, "end": 0, "answer": ""}


class NumpyQuestionAnsweringPipeline(NumpyPipeline):
    """Find the answer span to `question` in `context`.

    Long contexts are split into overlapping windows (`max_seq_len`, `doc_stride`); the best
    span over all windows wins. Each answer is `{"score", "start", "end", "answer"}` with
    character offsets into the context.

    Example:
        >>> qa = onnxport.pipeline("question-answering", "out/", backend="numpy")  # doctest: +SKIP
        >>> qa(question="Where?", context="In Paris.")  # doctest: +SKIP
        {'score': 0.97, 'start': 3, 'end': 8, 'answer': 'Paris'}

    """

    # One input's windows are one model call; windows of several inputs are not padded together.
    batchable = False

    def _sanitize_parameters(  # type: ignore[override]
        self,
        top_k: int | None = None,
        max_answer_len: int | None = None,
        max_seq_len: int | None = None,
        doc_stride: int | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        return qa_parameters(top_k, max_answer_len, max_seq_len, doc_stride)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Answer `question=` about `context=` (or a dict / list of dicts with both keys)."""
        return super().__call__(*question_inputs(args, kwargs), **kwargs)

    def preprocess(  # type: ignore[override]
        self, inputs: dict[str, str], max_seq_len: int = 384, doc_stride: int = 128
    ) -> dict[str, Any]:
        """Tokenize question and context into one or more overlapping windows."""
        return tokenize_windows(self.tokenizer, inputs, max_seq_len, doc_stride, "np")

    def _forward(self, batch: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        output = self.model(**batch["model_inputs"])
        return {
            "start": np.asarray(output["start_logits"], dtype=np.float32),
            "end": np.asarray(output["end_logits"], dtype=np.float32),
            **{k: batch[k] for k in ("offsets", "context_mask", "context")},
        }

    def postprocess(  # type: ignore[override]
        self, output: dict[str, Any], top_k: int = 1, max_answer_len: int = 15
    ) -> Any:
        """The best `top_k` answers: one dict for `top_k=1`, else a list."""
        return best_answers(output, top_k, max_answer_len)


def qa_parameters(
    top_k: int | None, max_answer_len: int | None, max_seq_len: int | None, doc_stride: int | None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The QA parameters as `Pipeline._sanitize_parameters` returns them: windows, -, answers."""
    window = {"max_seq_len": max_seq_len, "doc_stride": doc_stride}
    answers = {"top_k": top_k, "max_answer_len": max_answer_len}
    return (
        {k: v for k, v in window.items() if v is not None},
        {},
        {k: v for k, v in answers.items() if v is not None},
    )


def question_inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """`question=`/`context=` keywords (strings or lists) as the dict inputs `Pipeline` takes.

    Pops them from `kwargs`; other call styles (a dict, a list of dicts) pass through.
    """
    if "question" not in kwargs or "context" not in kwargs:
        return args
    question, context = kwargs.pop("question"), kwargs.pop("context")
    if isinstance(question, list):
        return ([{"question": q, "context": c} for q, c in zip(question, context, strict=True)],)
    return ({"question": question, "context": context},)


def tokenize_windows(
    tokenizer: Any, inputs: Any, max_seq_len: int, doc_stride: int, return_tensors: str
) -> dict[str, Any]:
    """Question + context as overlapping windows, with each window's context mask and offsets."""
    if not isinstance(inputs, dict) or {"question", "context"} - set(inputs):
        raise ValueError("question-answering takes question= and context= (both strings).")
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
        return_tensors=return_tensors,
    )
    windows = encoded["input_ids"].shape[0]
    context_mask = np.array([[sid == 1 for sid in encoded.sequence_ids(i)] for i in range(windows)])
    return {
        "model_inputs": {k: encoded[k] for k in tokenizer.model_input_names if k in encoded},
        "offsets": np.asarray(encoded["offset_mapping"]),
        "context_mask": context_mask,
        "context": inputs["context"],
    }


def best_answers(output: dict[str, Any], top_k: int, max_answer_len: int) -> Any:
    """The best `top_k` answers: one dict for `top_k=1` (an empty answer if none), else a list."""
    answers = answer_spans(output, top_k, max_answer_len)
    if top_k == 1:
        return answers[0] if answers else dict(_NO_ANSWER)
    return answers


def answer_spans(output: dict[str, Any], top_k: int, max_answer_len: int) -> list[dict[str, Any]]:
    """Score every valid (start, end) context span of every window; the best `top_k`.

    A span's score is the product of its start and end probabilities, each a softmax over the
    window's context tokens; the same characters found in two windows keep their best score.
    """
    best: dict[tuple[int, int], float] = {}
    for window in range(output["start"].shape[0]):
        for score, char_start, char_end in _window_spans(output, window, top_k, max_answer_len):
            key = (char_start, char_end)
            best[key] = max(score, best.get(key, 0.0))
    ranked = sorted(best.items(), key=lambda item: -item[1])[:top_k]
    return [
        {"score": score, "start": s, "end": e, "answer": output["context"][s:e]}
        for (s, e), score in ranked
    ]


def _window_spans(
    output: dict[str, Any], window: int, top_k: int, max_answer_len: int
) -> list[tuple[float, int, int]]:
    """(score, start char, end char) of one window's best `top_k` spans."""
    mask = output["context_mask"][window]
    if not mask.any():
        return []
    start = _log_softmax(np.where(mask, output["start"][window], -np.inf))
    end = _log_softmax(np.where(mask, output["end"][window], -np.inf))
    scores = start[:, None] + end[None, :]
    position = np.arange(len(mask))
    length = position[None, :] - position[:, None]
    valid = (length >= 0) & (length < max_answer_len) & mask[:, None] & mask[None, :]
    scores = np.where(valid, scores, -np.inf)
    offsets = output["offsets"][window]
    spans = []
    for flat in np.argsort(-scores, axis=None)[:top_k]:
        s, e = divmod(int(flat), scores.shape[1])
        if np.isfinite(scores[s, e]):
            spans.append((float(np.exp(scores[s, e])), int(offsets[s][0]), int(offsets[e][1])))
    return spans


def _log_softmax(values: np.ndarray) -> np.ndarray:
    shifted = values - values.max()
    return shifted - np.log(np.exp(shifted).sum())
