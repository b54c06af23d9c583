"""sentence-transformers' inference API over ONNX Runtime, without torch.

`SentenceTransformer(folder)` runs a sentence-transformers export (`onnxport export onnx` of
a folder with `modules.json`): its graph already pools, projects and normalizes, so `encode`
only tokenizes as sentence-transformers does (prompts, truncation at `max_seq_length`, batches
of inputs sorted by length, longest first) and puts the results back in input order.
`CrossEncoder(folder)` runs a cross-encoder's text-classification export and applies the
activation sentence-transformers would (the one saved with the model; else sigmoid for one
label, identity for more). Results match sentence-transformers' PyTorch ones to float32
rounding (checked by tests/test_sentence_transformers.py).

    >>> model = SentenceTransformer("out/")  # doctest: +SKIP
    >>> embeddings = model.encode(["The cat sat.", "A dog ran."])  # doctest: +SKIP
    >>> model.similarity(embeddings, embeddings)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onnxport.errors import ORTModelError
from onnxport.layout import (
    META_ACTIVATION,
    SENTENCE_EMBEDDING,
    ST_CONFIG_FILE,
    ST_MODULE_CONFIG_FILE,
    TOKEN_EMBEDDINGS,
    cross_encoder_activation,
    read_json,
    sentence_transformers_modules,
)
from onnxport.runtime.modeling import (
    ORTModelForFeatureExtraction,
    ORTModelForSequenceClassification,
)

logger = logging.getLogger(__name__)

Activation = Callable[[np.ndarray], np.ndarray]
SIMILARITY_FUNCTIONS = ("cosine", "dot", "euclidean", "manhattan")
_EPS = 1e-12  # torch.nn.functional.normalize's


def _normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as `torch.nn.functional.normalize(x, dim=-1)`."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.asarray(x / np.maximum(norms, _EPS), dtype=x.dtype)


def _batch(x: Any) -> np.ndarray:
    array = np.asarray(_as_numpy(x), dtype=np.float32)
    return array[None, :] if array.ndim == 1 else array


def _as_numpy(x: Any) -> Any:
    if hasattr(x, "detach"):  # a torch tensor (torch is loaded when one is passed)
        return x.detach().cpu().float().numpy()
    if isinstance(x, list) and x and hasattr(x[0], "detach"):
        return np.stack([_as_numpy(each) for each in x])
    return x


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(_normalize(a) @ _normalize(b).T)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(a @ b.T)


def _euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    difference = a[:, None, :].astype(np.float64) - b[None, :, :]
    return np.asarray(-np.sqrt((difference**2).sum(-1)), dtype=np.float32)


def _manhattan(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    difference = a[:, None, :].astype(np.float64) - b[None, :, :]
    return np.asarray(-np.abs(difference).sum(-1), dtype=np.float32)


_SIMILARITIES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "cosine": _cosine,
    "dot": _dot,
    "euclidean": _euclidean,
    "manhattan": _manhattan,
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=x.dtype)


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True), dtype=x.dtype)


# sentence-transformers saves a cross-encoder's activation as the torch class's dotted path.
ACTIVATIONS: dict[str, Activation] = {
    "Identity": lambda x: x,
    "Sigmoid": _sigmoid,
    "Tanh": np.tanh,
    "Softmax": _softmax,
    "ReLU": lambda x: np.maximum(x, 0),
}


def activation_from_path(path: str) -> Activation:
    """The numpy twin of the torch activation `path` names (`torch.nn.modules...Sigmoid`)."""
    found = ACTIVATIONS.get(path.rsplit(".", 1)[-1]) if path.startswith("torch.") else None
    if found is None:
        raise ORTModelError(
            f"The cross-encoder's activation '{path}' has no numpy equivalent in onnxport "
            f"({', '.join(ACTIVATIONS)} do); pass activation_fn=<a function on numpy arrays>."
        )
    return found


def _max_seq_length(folder: Path, tokenizer: Any, config: Any) -> int | None:
    """The truncation length sentence-transformers uses for this folder's model.

    `sentence_bert_config.json`'s max_seq_length when saved there, else the tokenizer's
    model_max_length capped at the model's max_position_embeddings.
    """
    saved = read_json(folder / ST_MODULE_CONFIG_FILE).get("max_seq_length")
    if isinstance(saved, int):
        return saved
    length = getattr(tokenizer, "model_max_length", None)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0 and isinstance(length, int):
        return min(length, positions)
    return length if isinstance(length, int) else None


def _load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise ORTModelError(
            f"No usable tokenizer in '{folder}' ({err}); export the model with its tokenizer."
        ) from err


class _Encoder:
    """What both classes share: the ORT model, its tokenizer, prompts and batching."""

    def __init__(self, model: Any, prompts: dict[str, str] | None, default_prompt_name: str | None):
        self.model = model
        self.model_dir: Path = model.model_dir
        self.session = model.session
        self.config = model.config
        self.tokenizer = _load_tokenizer(self.model_dir)
        settings = read_json(self.model_dir / ST_CONFIG_FILE)
        saved = settings.get("prompts")
        merged = {**(saved if isinstance(saved, dict) else {}), **(prompts or {})}
        self.prompts: dict[str, str] = {k: v or "" for k, v in merged.items()}
        self.default_prompt_name: str | None = (
            default_prompt_name
            if default_prompt_name is not None
            else settings.get("default_prompt_name")
        )
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise ORTModelError(
                f"Default prompt name '{self.default_prompt_name}' is not one of the prompts "
                f"({', '.join(self.prompts) or 'none'})."
            )
        self._max_seq_length = _max_seq_length(self.model_dir, self.tokenizer, self.config)
        self._input_names = [i.name for i in self.session.get_inputs()]

    def _resolve_prompt(self, prompt: str | None, prompt_name: str | None) -> str | None:
        if prompt is not None:
            return prompt
        if prompt_name is not None:
            if prompt_name not in self.prompts:
                raise ORTModelError(
                    f"Prompt name '{prompt_name}' is not one of the prompts "
                    f"({', '.join(self.prompts) or 'none'})."
                )
            return self.prompts[prompt_name]
        if self.default_prompt_name is not None:
            return self.prompts.get(self.default_prompt_name)
        return None

    def _tokenize(self, texts: list[Any]) -> dict[str, np.ndarray]:
        """Tokenize as sentence-transformers' Transformer module does (pad to the longest)."""
        encoded = self.tokenizer(
            texts,
            padding=True,
            truncation="longest_first",
            max_length=self._max_seq_length,
            return_tensors="np",
        )
        return {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()}

    def _feed(self, encoded: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {}
        for name in self._input_names:
            if name in encoded:
                feed[name] = encoded[name]
            elif name == "token_type_ids":
                feed[name] = np.zeros_like(encoded["input_ids"])
            elif name == "attention_mask":
                feed[name] = np.ones_like(encoded["input_ids"])
            else:
                raise ORTModelError(
                    f"The graph takes '{name}', which the tokenizer does not return "
                    f"({', '.join(encoded)})."
                )
        return feed

    @property
    def max_seq_length(self) -> int | None:
        """Inputs are truncated to this many tokens (sentence-transformers' max_seq_length)."""
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int | None) -> None:
        self._max_seq_length = value

    @staticmethod
    def _batches(count: int, batch_size: int, show_progress_bar: bool | None) -> Iterable[int]:
        if batch_size <= 0:
            raise ORTModelError(f"batch_size must be a positive integer, not {batch_size}.")
        starts = range(0, count, batch_size)
        if not show_progress_bar:
            return starts
        from tqdm.auto import tqdm

        return tqdm(starts, desc="Batches")

    @staticmethod
    def _check_device(device: Any) -> None:
        if device is not None and str(device) not in ("cpu", "cpu:0"):
            raise ORTModelError(
                f"device='{device}' is not supported; load the model with "
                "provider='CUDAExecutionProvider' instead."
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_dir='{self.model_dir}', file='{self.model.file_name}')"


def _to_tensor(array: np.ndarray) -> Any:
    try:
        import torch
    except ImportError as err:
        raise ORTModelError(
            "convert_to_tensor=True needs torch, which is not installed; use the numpy result."
        ) from err
    return torch.from_numpy(np.ascontiguousarray(array))


class SentenceTransformer(_Encoder):
    """`sentence_transformers.SentenceTransformer`'s inference API on an ONNX export.

    `model_name_or_path` is an exported folder (or Hub repo); `file_name` picks a variant
    (`model_O2.onnx`, `model_int8.onnx`). `prompts`, `default_prompt_name`,
    `similarity_fn_name` and `truncate_dim` override what the model saved, as in
    sentence-transformers.

    Example:
        >>> model = SentenceTransformer("out/", file_name="model_int8.onnx")  # doctest: +SKIP
        >>> model.encode("Hello").shape  # doctest: +SKIP
        (384,)

    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str],
        *,
        file_name: str | None = None,
        provider: str = "CPUExecutionProvider",
        providers: Sequence[str] | None = None,
        session_options: Any | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        export: bool = False,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        similarity_fn_name: str | None = None,
        truncate_dim: int | None = None,
    ) -> None:
        model = ORTModelForFeatureExtraction.from_pretrained(
            model_name_or_path, file_name=file_name, provider=provider, providers=providers,
            session_options=session_options, revision=revision,
            trust_remote_code=trust_remote_code, export=export,
        )  # fmt: skip
        if SENTENCE_EMBEDDING not in model.output_names:
            raise ORTModelError(
                f"'{model.model_dir / model.file_name}' has no '{SENTENCE_EMBEDDING}' output "
                f"(it returns {', '.join(model.output_names)}): it is a bare transformer. Export "
                "the sentence-transformers folder without --library transformers."
            )
        super().__init__(model, prompts, default_prompt_name)
        settings = read_json(self.model_dir / ST_CONFIG_FILE)
        name = similarity_fn_name or settings.get("similarity_fn_name") or "cosine"
        if name not in SIMILARITY_FUNCTIONS:
            raise ORTModelError(
                f"Unknown similarity_fn_name '{name}'; choose one of "
                f"{', '.join(SIMILARITY_FUNCTIONS)}."
            )
        self.similarity_fn_name: str = str(name)
        self.truncate_dim = truncate_dim
        # Pooling with include_prompt=false needs the prompt's length, which the graph does
        # not take: such a model cannot be given a prompt here.
        self._pooling_skips_prompt = any(
            read_json(self.model_dir / str(entry.get("path")) / "config.json").get("include_prompt")
            is False
            for entry in sentence_transformers_modules(self.model_dir)
            if entry.get("path")
        )

    def get_embedding_dimension(self) -> int | None:
        """The length of the vectors `encode` returns (after `truncate_dim`)."""
        output = next(o for o in self.session.get_outputs() if o.name == SENTENCE_EMBEDDING)
        size = output.shape[-1] if isinstance(output.shape[-1], int) else None
        if self.truncate_dim is not None:
            return self.truncate_dim if size is None else min(size, self.truncate_dim)
        return size

    def get_sentence_embedding_dimension(self) -> int | None:
        """The name sentence-transformers had for `get_embedding_dimension` before v6."""
        return self.get_embedding_dimension()

    def encode(
        self,
        sentences: str | Sequence[str],
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        output_value: str | None = SENTENCE_EMBEDDING,
        precision: str = "float32",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: str | None = None,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Embed `sentences`: a 1-D array for one string, a 2-D array for a list of them.

        As `sentence_transformers.SentenceTransformer.encode`: `output_value="token_embeddings"`
        gives each input's token vectors (padding cut off), `None` a dict per input.
        """
        unknown = set(kwargs) - {"task"}
        if unknown:
            raise ORTModelError(f"encode() got unexpected arguments: {', '.join(sorted(unknown))}.")
        if precision != "float32":
            raise ORTModelError(
                f"precision='{precision}' is not supported here; quantize the float32 "
                "embeddings yourself (sentence_transformers.quantization.quantize_embeddings)."
            )
        if output_value not in (SENTENCE_EMBEDDING, TOKEN_EMBEDDINGS, None):
            raise ORTModelError(
                f"output_value must be '{SENTENCE_EMBEDDING}', '{TOKEN_EMBEDDINGS}' or None, "
                f"not '{output_value}'."
            )
        self._check_device(device)
        single = isinstance(sentences, str)
        texts: list[str] = [sentences] if single else list(sentences)  # type: ignore[list-item]
        prompt = self._resolve_prompt(prompt, prompt_name)
        if prompt and self._pooling_skips_prompt:
            raise ORTModelError(
                "This model's pooling leaves prompt tokens out (include_prompt=false), which "
                "the exported graph cannot do; encode without a prompt."
            )
        truncate_dim = truncate_dim if truncate_dim is not None else self.truncate_dim
        # As sentence-transformers: longest first, so each batch pads little.
        order = np.argsort([-len(text) for text in texts])
        results: list[Any] = []
        outputs = [SENTENCE_EMBEDDING] if output_value == SENTENCE_EMBEDDING else None
        for start in self._batches(len(texts), batch_size, show_progress_bar):
            batch = [texts[i] for i in order[start : start + batch_size]]
            if prompt:
                batch = [prompt + text for text in batch]
            encoded = self._tokenize(batch)
            values = self.session.run(outputs, self._feed(encoded))
            names = outputs or [o.name for o in self.session.get_outputs()]
            named = dict(zip(names, values, strict=True))
            embeddings = named[SENTENCE_EMBEDDING]
            if truncate_dim is not None:
                named[SENTENCE_EMBEDDING] = embeddings = embeddings[..., :truncate_dim]
            if output_value == SENTENCE_EMBEDDING:
                results.extend(_normalize(embeddings) if normalize_embeddings else embeddings)
            elif output_value == TOKEN_EMBEDDINGS:
                for tokens, mask in zip(
                    named[TOKEN_EMBEDDINGS], encoded["attention_mask"], strict=True
                ):
                    kept = np.flatnonzero(mask)
                    results.append(tokens[: (int(kept[-1]) if kept.size else 0) + 1])
            else:
                for row in range(len(batch)):
                    item = {name: value[row] for name, value in {**encoded, **named}.items()}
                    results.append(item)
        restored = [results[i] for i in np.argsort(order)]
        if output_value != SENTENCE_EMBEDDING:
            return restored[0] if single else restored
        if convert_to_tensor:
            stacked = _to_tensor(np.stack(restored)) if restored else _to_tensor(np.array([]))
            return stacked[0] if single else stacked
        if convert_to_numpy:
            array = np.stack(restored) if restored else np.array([])
            return array[0] if single else array
        return restored[0] if single else restored

    def encode_query(self, sentences: str | Sequence[str], **kwargs: Any) -> Any:
        """`encode` with the "query" prompt when the model has one and none is given."""
        unset = kwargs.get("prompt") is None and kwargs.get("prompt_name") is None
        if unset and "query" in self.prompts:
            kwargs["prompt_name"] = "query"
        return self.encode(sentences, **kwargs)

    def encode_document(self, sentences: str | Sequence[str], **kwargs: Any) -> Any:
        """`encode` with the first of the "document", "passage", "corpus" prompts it has."""
        if kwargs.get("prompt") is None and kwargs.get("prompt_name") is None:
            for name in ("document", "passage", "corpus"):
                if name in self.prompts:
                    kwargs["prompt_name"] = name
                    break
        return self.encode(sentences, **kwargs)

    def similarity(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """Scores of every pair, shape (len(embeddings1), len(embeddings2)).

        With the model's `similarity_fn_name`, defined as sentence-transformers defines it:
        cosine, dot product, or the negative euclidean or manhattan distance.
        """
        return _SIMILARITIES[self.similarity_fn_name](_batch(embeddings1), _batch(embeddings2))

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """Scores of `embeddings1[i]` with `embeddings2[i]`, shape (n,)."""
        a, b = _batch(embeddings1), _batch(embeddings2)
        if self.similarity_fn_name == "cosine":
            a, b = _normalize(a), _normalize(b)
        if self.similarity_fn_name in ("cosine", "dot"):
            return np.asarray((a * b).sum(-1))
        difference = a.astype(np.float64) - b
        if self.similarity_fn_name == "euclidean":
            return np.asarray(-np.sqrt((difference**2).sum(-1)), dtype=np.float32)
        return np.asarray(-np.abs(difference).sum(-1), dtype=np.float32)


class CrossEncoder(_Encoder):
    """`sentence_transformers.CrossEncoder`'s `predict` and `rank` on an ONNX export.

    The activation applied to the logits is `activation_fn` (a function on numpy arrays), else
    the one recorded at export (what sentence-transformers would apply: the model's saved one,
    sigmoid for one label, identity for more).

    Example:
        >>> model = CrossEncoder("out/")  # doctest: +SKIP
        >>> model.rank("Who wrote it?", ["Harper Lee wrote it.", "It rained."])  # doctest: +SKIP

    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str],
        *,
        file_name: str | None = None,
        provider: str = "CPUExecutionProvider",
        providers: Sequence[str] | None = None,
        session_options: Any | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        export: bool = False,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        max_length: int | None = None,
        activation_fn: Activation | None = None,
    ) -> None:
        model = ORTModelForSequenceClassification.from_pretrained(
            model_name_or_path, file_name=file_name, provider=provider, providers=providers,
            session_options=session_options, revision=revision,
            trust_remote_code=trust_remote_code, export=export,
        )  # fmt: skip
        super().__init__(model, prompts, default_prompt_name)
        if max_length is not None:
            self._max_seq_length = max_length
        self.num_labels = int(getattr(self.config, "num_labels", 1) or 1)
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.activation_fn_name: str = metadata.get(META_ACTIVATION) or cross_encoder_activation(
            self.model_dir, trust_remote_code=trust_remote_code
        )
        self._activation = activation_fn

    @property
    def max_length(self) -> int | None:
        """The name sentence-transformers had for `max_seq_length` before v6."""
        return self._max_seq_length

    @property
    def activation_fn(self) -> Activation:
        """The function applied to the logits when `predict` is given none."""
        if self._activation is None:
            self._activation = activation_from_path(self.activation_fn_name)
        return self._activation

    @activation_fn.setter
    def activation_fn(self, value: Activation) -> None:
        self._activation = value

    def predict(
        self,
        sentences: Sequence[str] | Sequence[Sequence[str]],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Activation | None = None,
        apply_softmax: bool | None = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
        device: str | None = None,
    ) -> Any:
        """Score text pairs: one score (or one per label) per `[text, text_pair]`.

        A single pair gives a single result, a list of pairs an array, as in
        sentence-transformers.
        """
        self._check_device(device)
        single = bool(sentences) and not isinstance(sentences[0], (list, tuple))
        pairs = [list(sentences)] if single else [list(pair) for pair in sentences]
        prompt = self._resolve_prompt(prompt, prompt_name)
        activation = activation_fn if activation_fn is not None else self.activation_fn
        order = np.argsort([-sum(len(part) for part in pair) for pair in pairs])
        scores: list[np.ndarray] = []
        for start in self._batches(len(pairs), batch_size, show_progress_bar):
            batch = [pairs[i] for i in order[start : start + batch_size]]
            if prompt:
                batch = [[prompt + pair[0], *pair[1:]] for pair in batch]
            logits = self.session.run(None, self._feed(self._tokenize(batch)))[0]
            values = activation(logits.astype(np.float32))
            if self.num_labels == 1 and values.ndim > 1:
                values = values.squeeze(-1)
            if apply_softmax and values.ndim > 1:
                values = _softmax(values)
            scores.extend(values)
        restored = [scores[i] for i in np.argsort(order)]
        if convert_to_tensor:
            result = _to_tensor(np.stack(restored)) if restored else _to_tensor(np.array([]))
        elif convert_to_numpy:
            result = np.stack(restored) if restored else np.array([])
        else:
            result = restored
        return result[0] if single else result

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: int | None = None,
        return_documents: bool = False,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Activation | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
    ) -> list[dict[str, Any]]:
        """The documents scored against `query`, best first: `{corpus_id, score[, text]}`."""
        if self.num_labels != 1:
            raise ORTModelError(
                f"rank() needs a model with one label, this one has {self.num_labels}; "
                "use predict() on [query, document] pairs instead."
            )
        scores = self.predict(
            [[query, document] for document in documents],
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            activation_fn=activation_fn,
            prompt_name=prompt_name,
            prompt=prompt,
        )
        results: list[dict[str, Any]] = []
        for index, score in enumerate(np.asarray(scores).tolist()):
            results.append({"corpus_id": index, "score": score})
            if return_documents:
                results[-1]["text"] = documents[index]
        return sorted(results, key=lambda item: item["score"], reverse=True)[:top_k]
