"""Text pipelines without torch: feature extraction, classification, fill-mask, zero-shot.

Each class is transformers' task pipeline with `NumpyPipeline` below it (see `base`): only the
methods that ask for or compute with torch tensors are rewritten, each saying where.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from transformers.pipelines import (
    FeatureExtractionPipeline,
    FillMaskPipeline,
    TextClassificationPipeline,
    ZeroShotClassificationPipeline,
)
from transformers.pipelines.base import PipelineException
from transformers.pipelines.text_classification import softmax
from transformers.pipelines.zero_shot_classification import ZeroShotClassificationArgumentHandler
from transformers.tokenization_python import TruncationStrategy

from onnxport.runtime.numpy_pipelines.base import NumpyPipeline, classification_scores

logger = logging.getLogger(__name__)


class NumpyFeatureExtractionPipeline(FeatureExtractionPipeline, NumpyPipeline):
    """Token embeddings, `[1][tokens][hidden]` per input (numpy arrays with `return_tensors`)."""

    def preprocess(self, inputs: Any, **tokenize_kwargs: Any) -> Any:  # type: ignore[override]
        """Tokenize to numpy arrays (transformers' asks for torch tensors)."""
        return self.tokenizer(inputs, return_tensors="np", **tokenize_kwargs)  # type: ignore[misc]


class NumpyTextClassificationPipeline(TextClassificationPipeline, NumpyPipeline):  # type: ignore[misc]
    """Labels and scores per text or `{"text", "text_pair"}` pair, `top_k` as transformers'."""

    # Not TextClassificationPipeline.__init__: its model check reads torch's Auto tables.
    __init__ = NumpyPipeline.__init__

    def preprocess(self, inputs: Any, **tokenizer_kwargs: Any) -> Any:  # type: ignore[override]
        """Tokenize a text or a pair to numpy arrays (the cases transformers' accepts)."""
        tokenizer: Any = self.tokenizer
        if isinstance(inputs, dict):
            return tokenizer(**inputs, return_tensors="np", **tokenizer_kwargs)
        if (
            isinstance(inputs, list)
            and len(inputs) == 1
            and isinstance(inputs[0], list)
            and len(inputs[0]) == 2
        ):  # the older [[text, pair]] form transformers still takes
            text, pair = inputs[0]
            return tokenizer(text=text, text_pair=pair, return_tensors="np", **tokenizer_kwargs)
        if isinstance(inputs, list):
            raise ValueError(
                "The pipeline received invalid inputs, if you are trying to send text pairs, you "
                'can try to send a dictionary `{"text": "My text", "text_pair": "My pair"}` in '
                "order to send a text pair."
            )
        return tokenizer(inputs, return_tensors="np", **tokenizer_kwargs)

    def postprocess(  # type: ignore[override]
        self,
        model_outputs: Any,
        function_to_apply: Any = None,
        top_k: int | None = 1,
        _legacy: bool = True,
    ) -> Any:
        """Scores per label (transformers' reads the logits through torch)."""
        config: Any = self.model.config
        id2label = config.id2label
        scores = classification_scores(model_outputs["logits"][0], config, function_to_apply)
        if top_k == 1 and _legacy:
            return {"label": id2label[scores.argmax().item()], "score": scores.max().item()}
        ranked = [{"label": id2label[i], "score": score.item()} for i, score in enumerate(scores)]
        if not _legacy:
            ranked.sort(key=lambda entry: entry["score"], reverse=True)
            if top_k is not None:
                ranked = ranked[:top_k]
        return ranked


class NumpyFillMaskPipeline(FillMaskPipeline, NumpyPipeline):  # type: ignore[misc]
    """The `top_k` tokens for each mask, optionally among `targets`."""

    def get_masked_index(self, input_ids: Any) -> np.ndarray:
        """Positions of the mask token (transformers' uses `torch.nonzero`)."""
        tokenizer: Any = self.tokenizer
        return np.argwhere(np.asarray(input_ids) == tokenizer.mask_token_id)

    def _ensure_exactly_one_mask_token(self, input_ids: Any) -> np.ndarray:
        # transformers' names `model.base_model_prefix`, which ORT models do not have.
        masked = self.get_masked_index(input_ids)
        if masked.size < 1:
            tokenizer: Any = self.tokenizer
            raise PipelineException(
                "fill-mask",
                self.model.config.model_type,
                f"No mask_token ({tokenizer.mask_token}) found on the input",
            )
        return masked

    def preprocess(  # type: ignore[override]
        self,
        inputs: Any,
        return_tensors: str | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **preprocess_parameters: Any,
    ) -> Any:
        """Tokenize to numpy arrays and refuse a text without the mask token."""
        tokenizer: Any = self.tokenizer
        model_inputs = tokenizer(inputs, return_tensors="np", **(tokenizer_kwargs or {}))
        self.ensure_exactly_one_mask_token(model_inputs)
        return model_inputs

    def postprocess(  # type: ignore[override]
        self, model_outputs: Any, top_k: int = 5, target_ids: np.ndarray | None = None
    ) -> Any:
        """Rank tokens per mask (transformers' ranks with torch's softmax and topk)."""
        if target_ids is not None and target_ids.shape[0] < top_k:
            top_k = target_ids.shape[0]
        input_ids = np.asarray(model_outputs["input_ids"][0])
        masked = self.get_masked_index(input_ids)[:, 0]
        probs = softmax(np.asarray(model_outputs["logits"][0][masked], dtype=np.float32))
        if target_ids is not None:
            probs = probs[..., target_ids]
        single_mask = len(masked) == 1
        result = []
        for position, row in zip(masked, probs, strict=True):
            best = np.argsort(-row, kind="stable")[:top_k]
            tokens = [int(target_ids[p]) if target_ids is not None else int(p) for p in best]
            result.append(
                [
                    self._proposition(input_ids, int(position), token, float(row[p]), single_mask)
                    for p, token in zip(best, tokens, strict=True)
                ]
            )
        return result[0] if single_mask else result

    def _proposition(
        self, input_ids: np.ndarray, position: int, token: int, score: float, single_mask: bool
    ) -> dict[str, Any]:
        tokenizer: Any = self.tokenizer
        tokens = input_ids.copy()
        tokens[position] = token
        tokens = tokens[tokens != tokenizer.pad_token_id]
        # With several masks the others stay in the sequence, as transformers writes it.
        sequence = tokenizer.decode(tokens, skip_special_tokens=single_mask)
        return {
            "score": score,
            "token": token,
            "token_str": tokenizer.decode([token]),
            "sequence": sequence,
        }


class NumpyZeroShotClassificationPipeline(ZeroShotClassificationPipeline, NumpyPipeline):  # type: ignore[misc]
    """`candidate_labels` ranked by an NLI model's entailment score for each hypothesis."""

    _args_parser = ZeroShotClassificationArgumentHandler()

    def __init__(self, model: Any, tokenizer: Any | None = None, **kwargs: Any) -> None:
        # Not ZeroShotClassificationPipeline.__init__, which reaches Pipeline.__init__.
        NumpyPipeline.__init__(self, model, tokenizer, **kwargs)
        if self.entailment_id == -1:
            logger.warning(
                "Failed to determine 'entailment' label id from the label2id mapping in the "
                "model config. Setting to -1. Define a descriptive label2id mapping in the model "
                "config to ensure correct outputs."
            )

    def _parse_and_tokenize(
        self,
        sequence_pairs: Any,
        padding: Any = True,
        add_special_tokens: bool = True,
        truncation: Any = TruncationStrategy.ONLY_FIRST,
        **kwargs: Any,
    ) -> Any:
        """Tokenize premise/hypothesis pairs to numpy arrays (transformers' asks for torch)."""
        tokenizer: Any = self.tokenizer
        if tokenizer.pad_token is None:
            logger.error(
                "Tokenizer was not supporting padding necessary for zero-shot, attempting to use "
                "`pad_token=eos_token`"
            )
            tokenizer.pad_token = tokenizer.eos_token
        options = {"add_special_tokens": add_special_tokens, "padding": padding}
        try:
            return tokenizer(sequence_pairs, return_tensors="np", truncation=truncation, **options)
        except Exception as err:
            if "too short" not in str(err):
                raise
            # A premise too short to truncate: transformers tokenizes it whole.
            return tokenizer(
                sequence_pairs,
                return_tensors="np",
                truncation=TruncationStrategy.DO_NOT_TRUNCATE,
                **options,
            )

    def postprocess(  # type: ignore[override]
        self, model_outputs: list[dict[str, Any]], multi_label: bool = False
    ) -> dict[str, Any]:
        """Labels by score (transformers' reads each hypothesis' logits through torch)."""
        labels = [outputs["candidate_label"] for outputs in model_outputs]
        logits = np.concatenate(
            [np.asarray(outputs["logits"], dtype=np.float32) for outputs in model_outputs]
        )
        per_label = logits.reshape((logits.shape[0] // len(labels), len(labels), -1))
        if multi_label or len(labels) == 1:
            entailment = self.entailment_id
            contradiction = -1 if entailment == 0 else 0
            pair = np.exp(per_label[..., [contradiction, entailment]])
            scores = (pair / pair.sum(-1, keepdims=True))[..., 1]
        else:
            entail = np.exp(per_label[..., self.entailment_id])
            scores = entail / entail.sum(-1, keepdims=True)
        order = list(reversed(scores[0].argsort()))
        return {
            "sequence": model_outputs[0]["sequence"],
            "labels": [labels[i] for i in order],
            "scores": scores[0, order].tolist(),
        }
