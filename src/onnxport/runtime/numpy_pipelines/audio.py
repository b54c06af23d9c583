"""Text to speech without torch: the folder's tokenizer with numpy arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxport.runtime.numpy_pipelines.base import NumpyPipeline


class NumpyTextToAudioPipeline(NumpyPipeline):
    """`{"audio", "sampling_rate"}` per text, as transformers' text-to-audio pipeline returns.

    For models that synthesize in one forward (VITS) and those that speak frame by frame
    (SpeechT5's `generate`); `forward_params` go to the model (`{"noise_scale": 0.3}`,
    `{"speaker_embeddings": xvector}`).
    """

    batchable = False  # one text per call: the waveform's length follows each text's

    def _sanitize_parameters(
        self, forward_params: dict[str, Any] | None = None, **tokenizer_kwargs: Any
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        return tokenizer_kwargs, {"forward_params": forward_params or {}}, {}

    def preprocess(self, inputs: Any, **tokenizer_kwargs: Any) -> Any:  # type: ignore[override]
        """Tokenize to numpy arrays (transformers' asks for torch tensors)."""
        return self.tokenizer(inputs, return_tensors="np", **tokenizer_kwargs)  # type: ignore[misc]

    def _forward(self, model_inputs: Any, forward_params: dict[str, Any]) -> Any:  # type: ignore[override]
        if self.model.can_generate():
            generate: Any = self.model.generate  # an ORT model's (SpeechT5)
            return generate(**model_inputs, **forward_params)
        return self.model(**model_inputs, **forward_params)[0]

    def postprocess(self, waveform: Any) -> dict[str, Any]:  # type: ignore[override]
        """The waveform as float32 and its sampling rate (the vocoder's, else the config's)."""
        config: Any = self.model.config
        rate = (
            getattr(self.model, "sampling_rate", None)
            or getattr(config, "sampling_rate", None)
            or getattr(config, "sample_rate", None)
        )
        return {"audio": np.asarray(waveform, dtype=np.float32).squeeze(), "sampling_rate": rate}
