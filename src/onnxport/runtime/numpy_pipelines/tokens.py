"""Token classification (NER) without torch.

transformers' `TokenClassificationPipeline` gathers, aggregates and groups entities in numpy
(`gather_pre_entities`, `aggregate`, `aggregate_words`, `group_entities`,
`aggregate_overlapping_entities`); those run unchanged. Only tokenizing (it asks for torch
tensors) and reading the logits (through torch) are rewritten.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from transformers.pipelines import TokenClassificationPipeline
from transformers.pipelines.text_classification import softmax
from transformers.pipelines.token_classification import (
    AggregationStrategy,
    TokenClassificationArgumentHandler,
)

from onnxport.runtime.numpy_pipelines.base import NumpyPipeline


class NumpyTokenClassificationPipeline(TokenClassificationPipeline, NumpyPipeline):  # type: ignore[misc]
    """Entities per token or grouped (`aggregation_strategy`), with character offsets.

    With `stride=`, a text longer than the model takes runs as overlapping windows whose
    entities are merged, as in transformers.
    """

    _args_parser = TokenClassificationArgumentHandler()
    # Not TokenClassificationPipeline.__init__: its model check reads torch's Auto tables.
    __init__ = NumpyPipeline.__init__

    def preprocess(  # type: ignore[override]
        self, sentence: Any, offset_mapping: Any = None, **preprocess_params: Any
    ) -> Iterator[dict[str, Any]]:
        """Tokenize to numpy arrays: one model input per window of the text."""
        tokenizer: Any = self.tokenizer
        tokenizer_params = dict(preprocess_params.pop("tokenizer_params", {}))
        words_map = None
        text: str | list[str]
        if preprocess_params["is_split_into_words"]:
            sentence, text, words_map = _join_words(sentence, preprocess_params["delimiter"])
            tokenizer_params["is_split_into_words"] = True
            if not tokenizer.is_fast:
                raise ValueError("is_split_into_words=True is only supported with fast tokenizers.")
        elif isinstance(sentence, str):
            text = sentence
        else:
            raise ValueError(
                "When `is_split_into_words=False`, `sentence` must be an untokenized string."
            )
        inputs = tokenizer(
            text,
            return_tensors="np",
            truncation=bool(tokenizer.model_max_length and tokenizer.model_max_length > 0),
            return_special_tokens_mask=True,
            return_offsets_mapping=tokenizer.is_fast,
            **tokenizer_params,
        )
        inputs.pop("overflow_to_sample_mapping", None)
        windows = len(inputs["input_ids"])
        for index in range(windows):
            model_inputs = {key: value[index : index + 1] for key, value in inputs.items()}
            if offset_mapping is not None:
                model_inputs["offset_mapping"] = offset_mapping
            model_inputs["sentence"] = sentence if index == 0 else None
            model_inputs["is_last"] = index == windows - 1
            if words_map is not None:
                model_inputs["word_ids"] = inputs.word_ids(index)
                model_inputs["word_to_chars_map"] = words_map
            yield model_inputs

    def postprocess(  # type: ignore[override]
        self,
        all_outputs: list[dict[str, Any]],
        aggregation_strategy: AggregationStrategy = AggregationStrategy.NONE,
        ignore_labels: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Entities of every window, without `ignore_labels`, overlaps merged."""
        ignored = ["O"] if ignore_labels is None else ignore_labels
        entities = [
            entity
            for outputs in all_outputs
            for entity in self._window_entities(outputs, all_outputs[0], aggregation_strategy)
            if entity.get("entity") not in ignored and entity.get("entity_group") not in ignored
        ]
        if len(all_outputs) > 1:
            return list(self.aggregate_overlapping_entities(entities))
        return entities

    def _window_entities(
        self, outputs: dict[str, Any], first: dict[str, Any], strategy: AggregationStrategy
    ) -> list[dict[str, Any]]:
        # transformers' postprocess reads the logits through torch; the rest is its own.
        scores = softmax(np.asarray(outputs["logits"][0], dtype=np.float32))
        offsets = outputs["offset_mapping"]
        pre_entities = self.gather_pre_entities(
            first["sentence"],
            outputs["input_ids"][0],
            scores,
            offsets[0] if offsets is not None else None,
            np.asarray(outputs["special_tokens_mask"][0]),
            strategy,
            word_ids=outputs.get("word_ids"),
            word_to_chars_map=first.get("word_to_chars_map"),
        )
        return list(self.aggregate(pre_entities, strategy))


def _join_words(words: Any, delimiter: str) -> tuple[str, list[str], list[tuple[int, int]]]:
    """Pre-split words -> (the sentence they make, the words, each word's character span)."""
    if not isinstance(words, list):
        raise ValueError("When `is_split_into_words=True`, `sentence` must be a list of tokens.")
    spans = []
    start = 0
    for word in words:
        spans.append((start, start + len(word)))
        start += len(word) + len(delimiter)
    return delimiter.join(words), words, spans
