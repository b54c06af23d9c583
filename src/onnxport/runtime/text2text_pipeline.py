"""Text-to-text generation, summarization and translation as transformers `Pipeline`s.

Transformers 5 removed these three pipelines; encoder-decoder models (and their ONNX exports)
still serve exactly these jobs. They run on a PyTorch model or an ORT model alike, calling
its `generate()`, so the two can be compared one to one. Each returns, per input, a list of
dicts keyed `generated_text`, `summary_text` or `translation_text`.
"""

from __future__ import annotations

import re
from typing import Any

from transformers import Pipeline


class Text2TextGenerationPipeline(Pipeline):
    """Generate text from text with an encoder-decoder model.

    Example:
        >>> t2t = onnxport.pipeline("text2text-generation", model="out/")  # doctest: +SKIP
        >>> t2t("question: What is 42? context: 42 is the answer.")  # doctest: +SKIP
        [{'generated_text': 'the answer'}]

    """

    return_name = "generated"
    # The key of config.task_specific_params holding this task's prefix and generation defaults.
    task_key = "text2text-generation"

    def _sanitize_parameters(
        self,
        truncation: bool | None = None,
        clean_up_tokenization_spaces: bool | None = None,
        return_tensors: bool | None = None,
        src_lang: str | None = None,
        tgt_lang: str | None = None,
        **generate_kwargs: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        preprocess: dict[str, Any] = {}
        if truncation is not None:
            preprocess["truncation"] = truncation
        if src_lang is not None:
            preprocess["src_lang"] = src_lang
        if tgt_lang is not None:
            preprocess["tgt_lang"] = tgt_lang
            forced = self._language_token_id(tgt_lang)
            if forced is not None:
                generate_kwargs.setdefault("forced_bos_token_id", forced)
        postprocess: dict[str, Any] = {}
        if clean_up_tokenization_spaces is not None:
            postprocess["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        if return_tensors is not None:
            postprocess["return_tensors"] = return_tensors
        return preprocess, generate_kwargs, postprocess

    def _language_token_id(self, language: str) -> int | None:
        """The token that starts a target-language output (mBART, M2M100), if the model has one."""
        tokenizer: Any = self.tokenizer
        if hasattr(tokenizer, "get_lang_id"):
            return int(tokenizer.get_lang_id(language))
        token_id = tokenizer.convert_tokens_to_ids(language)
        return None if token_id == tokenizer.unk_token_id else int(token_id)

    def _prefix(self) -> str:
        config = self.model.config
        specific = (getattr(config, "task_specific_params", None) or {}).get(self.task_key, {})
        return str(specific.get("prefix") or getattr(config, "prefix", None) or "")

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """Generate for one text or a list of texts."""
        result = super().__call__(inputs, *args, **kwargs)
        if isinstance(inputs, list) and all(isinstance(r, list) and len(r) == 1 for r in result):
            return [r[0] for r in result]
        return result

    def preprocess(  # type: ignore[override]
        self,
        text: str,
        truncation: bool = False,
        src_lang: str | None = None,
        tgt_lang: str | None = None,
    ) -> dict[str, Any]:
        """Tokenize the prefixed text (the source language set first, where it matters)."""
        if not isinstance(text, str):
            raise ValueError(f"{self.task_key} takes a string or a list of strings.")
        tokenizer: Any = self.tokenizer
        if src_lang is not None and hasattr(tokenizer, "src_lang"):
            tokenizer.src_lang = src_lang
        if tgt_lang is not None and hasattr(tokenizer, "tgt_lang"):
            tokenizer.tgt_lang = tgt_lang
        encoded = tokenizer(self._prefix() + text, truncation=truncation, return_tensors="pt")
        return {k: encoded[k] for k in ("input_ids", "attention_mask") if k in encoded}

    def _forward(self, model_inputs: dict[str, Any], **generate_kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        model: Any = self.model
        output_ids = model.generate(**model_inputs, **generate_kwargs)
        return {"output_ids": output_ids}

    def postprocess(  # type: ignore[override]
        self,
        model_outputs: dict[str, Any],
        return_tensors: bool = False,
        clean_up_tokenization_spaces: bool = False,
    ) -> list[dict[str, Any]]:
        """One dict per generated sequence (several with num_return_sequences)."""
        tokenizer: Any = self.tokenizer
        records = []
        for ids in model_outputs["output_ids"]:
            if return_tensors:
                records.append({f"{self.return_name}_token_ids": ids})
                continue
            text = tokenizer.decode(
                ids,
                skip_special_tokens=True,
                clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            )
            records.append({f"{self.return_name}_text": text})
        return records


class SummarizationPipeline(Text2TextGenerationPipeline):
    """Summarize text; each result is `{"summary_text": ...}`."""

    return_name = "summary"
    task_key = "summarization"


class TranslationPipeline(Text2TextGenerationPipeline):
    """Translate text; each result is `{"translation_text": ...}`.

    The task may name the languages (`translation_en_to_fr` picks T5's prefix for them);
    multilingual models take `src_lang=` and `tgt_lang=` instead.
    """

    return_name = "translation"
    task_key = "translation"

    def __init__(self, *args: Any, task: str = "translation", **kwargs: Any) -> None:
        kwargs["task"] = task
        super().__init__(*args, **kwargs)
        self.task_key = task if re.fullmatch(r"translation_\w+_to_\w+", task) else "translation"


PIPELINE_CLASSES: dict[str, type[Text2TextGenerationPipeline]] = {
    "text2text-generation": Text2TextGenerationPipeline,
    "summarization": SummarizationPipeline,
    "translation": TranslationPipeline,
}


def pipeline_class(task: str) -> type[Text2TextGenerationPipeline]:
    """The pipeline for a text-to-text task name (`translation_xx_to_yy` is translation)."""
    if task.startswith("translation"):
        return TranslationPipeline
    return PIPELINE_CLASSES.get(task, Text2TextGenerationPipeline)
