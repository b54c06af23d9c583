"""Image classification without torch: the folder's image processor with numpy arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers.image_utils import load_image
from transformers.pipelines import ImageClassificationPipeline

from onnxport.runtime.numpy_pipelines.base import NumpyPipeline, classification_scores


class NumpyImageClassificationPipeline(ImageClassificationPipeline, NumpyPipeline):  # type: ignore[misc]
    """The `top_k` labels per image (a PIL image, a path or URL, or an HWC array)."""

    # Not ImageClassificationPipeline.__init__: its model check reads torch's Auto tables.
    __init__ = NumpyPipeline.__init__

    def preprocess(self, image: Any, timeout: float | None = None) -> Any:  # type: ignore[override]
        """Pixel values as numpy arrays (transformers' asks for torch tensors).

        The ORT model casts them to its graph's input type, as transformers' `.to(dtype)` does.
        """
        if not isinstance(image, np.ndarray):
            image = load_image(image, timeout=timeout)
        processor: Any = self.image_processor
        return processor(images=image, return_tensors="np")

    def postprocess(  # type: ignore[override]
        self, model_outputs: Any, function_to_apply: Any = None, top_k: int = 5
    ) -> list[dict[str, Any]]:
        """Labels by score (transformers' reads the logits through torch)."""
        config: Any = self.model.config
        scores = classification_scores(model_outputs["logits"][0], config, function_to_apply)
        ranked = [{"label": config.id2label[i], "score": s.item()} for i, s in enumerate(scores)]
        ranked.sort(key=lambda entry: entry["score"], reverse=True)
        return ranked[: min(top_k, config.num_labels)]
