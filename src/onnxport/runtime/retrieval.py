"""ColPali-style retrievers: multi-vector embeddings of page images and text queries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from onnxport.errors import ORTModelError, first_line
from onnxport.layout import EMBED_FILE, ONNX_FILE, VISION_FILE, image_token_id
from onnxport.runtime.base import _as_numpy
from onnxport.runtime.modeling import _ArchitectureOutput
from onnxport.sessions import create_session


class ORTModelForRetrieval(_ArchitectureOutput):
    """Late-interaction retrieval (ColPali): one unit vector per token, pages and queries alike.

    `embed_tokens.onnx` embeds the tokens; for pages, `vision_encoder.onnx` turns
    `pixel_values` into features that replace the image placeholder tokens' embeddings (as
    the model's forward does); `model.onnx` returns `embeddings` (batch, tokens, dim).
    Score a query against a page as the processor does (`processor.score_retrieval`).

    Example:
        >>> model = ORTModelForRetrieval.from_pretrained("colpali-onnx/")  # doctest: +SKIP
        >>> pages = model(**processor(images=pages, return_tensors="pt"))  # doctest: +SKIP
        >>> queries = model(**processor(text=queries, return_tensors="pt"))  # doctest: +SKIP
        >>> processor.score_retrieval(queries.embeddings, pages.embeddings)  # doctest: +SKIP

    """

    task = "retrieval"

    def __init__(
        self,
        session: ort.InferenceSession,
        config: Any,
        *,
        model_dir: Path,
        file_name: str = ONNX_FILE,
        session_options: ort.SessionOptions | None = None,
        _keep_alive: Any = None,
    ) -> None:
        super().__init__(
            session,
            config,
            model_dir=model_dir,
            file_name=file_name,
            session_options=session_options,
            _keep_alive=_keep_alive,
        )
        options = session_options if session_options is not None else self.default_session_options()
        providers = session.get_providers()
        self.vision = create_session(self._graph_beside(VISION_FILE), options, providers)
        self.embed = create_session(self._graph_beside(EMBED_FILE), options, providers)
        inner = getattr(config, "vlm_config", None)
        token = image_token_id(config) if inner is None else image_token_id(inner)
        if token is None:
            raise ORTModelError("The folder's config.json names no image token: not a retriever.")
        self.image_token_id = token
        self._pixel_type = np.float16 if "16" in self.vision.get_inputs()[0].type else np.float32

    def forward(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        pixel_values: Any = None,
        token_type_ids: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Embed a batch of pages (with `pixel_values`) or of queries (text alone)."""
        if input_ids is None:
            raise ORTModelError(f"Missing input 'input_ids'; this model takes {self._expected()}.")
        ids = _as_numpy(input_ids).astype(np.int64)
        try:
            (embeds,) = self.embed.run(["inputs_embeds"], {"input_ids": ids})
            placeholders = ids == self.image_token_id
            if pixel_values is not None:
                pixels = _as_numpy(pixel_values).astype(self._pixel_type)
                (features,) = self.vision.run(["image_features"], {"pixel_values": pixels})
                features = features.reshape(-1, features.shape[-1])
                if int(placeholders.sum()) != len(features):
                    raise ORTModelError(
                        f"input_ids hold {int(placeholders.sum())} image tokens but the images "
                        f"give {len(features)} features: build the inputs with the folder's "
                        "processor."
                    )
                embeds[placeholders] = features.astype(embeds.dtype)
            elif placeholders.any():
                raise ORTModelError(
                    "input_ids hold image tokens but no pixel_values were given: pass the "
                    "processor's whole output."
                )
        except ORTModelError:
            raise
        except Exception as err:
            message = f"ONNX Runtime failed on the given inputs: {first_line(err)}"
            raise ORTModelError(message) from err
        tensors: dict[str, Any] = {"inputs_embeds": embeds}
        if attention_mask is not None:
            tensors["attention_mask"] = attention_mask
        if token_type_ids is not None and "token_type_ids" in self.input_names:
            tensors["token_type_ids"] = token_type_ids
        return super().forward(**tensors)
