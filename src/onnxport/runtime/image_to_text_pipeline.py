"""Image-to-text (captioning, OCR) as a transformers `Pipeline`.

Transformers 5 folded its image-to-text pipeline into image-text-to-text, which needs a
processor and a text prompt; encoder-decoder captioners (VisionEncoderDecoderModel: TrOCR,
ViT-GPT2) have neither, and are run by a bare image processor and tokenizer. This pipeline is
transformers 4's contract for them: images in (paths, URLs, PIL images), `generate()` on the
model (PyTorch or ORT alike, so the two compare one to one), one `{"generated_text": ...}` per
sequence.
"""

from __future__ import annotations

from typing import Any

from transformers import Pipeline
from transformers.image_utils import load_image


class ImageToTextPipeline(Pipeline):
    """Generate text from an image with an encoder-decoder model.

    Example:
        >>> captioner = onnxport.pipeline("image-to-text", model="out/")  # doctest: +SKIP
        >>> captioner("receipt.png", max_new_tokens=20)  # doctest: +SKIP
        [{'generated_text': 'total 12.50'}]

    """

    def _sanitize_parameters(
        self, timeout: float | None = None, **generate_kwargs: Any
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        preprocess = {} if timeout is None else {"timeout": timeout}
        return preprocess, generate_kwargs, {}

    def preprocess(self, image: Any, timeout: float | None = None) -> dict[str, Any]:  # type: ignore[override]
        """The image processor's tensors for one image.

        (`pixel_values`; Pix2Struct's processor gives `flattened_patches` and their mask.)
        """
        processor: Any = self.image_processor
        return dict(processor(images=load_image(image, timeout=timeout), return_tensors="pt"))

    def _forward(self, model_inputs: dict[str, Any], **generate_kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        model: Any = self.model
        return {"output_ids": model.generate(**model_inputs, **generate_kwargs)}

    def postprocess(self, model_outputs: dict[str, Any]) -> list[dict[str, Any]]:  # type: ignore[override]
        """One dict per generated sequence (several with num_return_sequences)."""
        tokenizer: Any = self.tokenizer
        return [
            {"generated_text": tokenizer.decode(ids, skip_special_tokens=True)}
            for ids in model_outputs["output_ids"]
        ]
