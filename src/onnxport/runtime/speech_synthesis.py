"""`ORTModelForTextToSpectrogram`: SpeechT5 text-to-speech on ONNX Runtime, without torch.

The export (exporters/speech_synthesis.py) writes the pieces of transformers'
`_generate_speech`; `generate` runs its loop over them in numpy: the text encoder once, the
decoder step until a stop probability passes `threshold` (or `maxlenratio` runs out), the
postnet over each finished utterance, and the vocoder. Arguments and return values are
`SpeechT5ForTextToSpeech.generate`'s, so transformers' text-to-audio pipeline runs it too.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

import numpy as np
import onnxruntime as ort

from onnxport.errors import ORTModelError
from onnxport.layout import (
    ENCODER_FILE,
    POSTNET_FILE,
    VOCODER_CONFIG,
    VOCODER_FILE,
)
from onnxport.runtime.base import ORTNumpyGenerator, _as_numpy, is_tensor, to_torch

PRENET_DROPOUT = "speech_decoder_prenet_dropout"


class ORTModelForTextToSpectrogram(ORTNumpyGenerator):
    """Text to speech frame by frame (SpeechT5): `generate` returns a waveform or spectrogram.

    With the folder's `vocoder.onnx` (exported with `--vocoder`) `generate` returns speech at
    `sampling_rate`; pass `vocoder=False` for the spectrogram, or any callable vocoder (a
    PyTorch `SpeechT5HifiGan`) to use that one. The prenet's dropout, which SpeechT5 applies
    at inference too, draws at the config's `speech_decoder_prenet_dropout`.
    """

    task = "text-to-spectrogram"

    def __init__(self, session: ort.InferenceSession, config: Any, **kwargs: Any) -> None:
        super().__init__(session, config, **kwargs)
        self.main_input_name = "input_ids"  # type: ignore[misc]  # generate's; a step takes frames
        self.encoder = self._session_beside(ENCODER_FILE)
        self.postnet = self._session_beside(POSTNET_FILE)
        self.vocoder: ort.InferenceSession | None = None
        vocoder_config = self.model_dir / VOCODER_CONFIG
        self.vocoder_config = (
            json.loads(vocoder_config.read_text()) if vocoder_config.is_file() else {}
        )
        with contextlib.suppress(ORTModelError):  # exported without --vocoder: spectrograms
            self.vocoder = self._session_beside(VOCODER_FILE)
        self._past = [name for name in self.input_names if name.startswith("past_key_values.")]

    @property
    def sampling_rate(self) -> int | None:
        """The vocoder's sampling rate (None without a vocoder)."""
        rate = self.vocoder_config.get("sampling_rate")
        return int(rate) if rate is not None and self.vocoder is not None else None

    def generate_speech(self, input_ids: Any, speaker_embeddings: Any = None, **kwargs: Any) -> Any:
        """`SpeechT5ForTextToSpeech.generate_speech`: see `generate`."""
        return self.generate(input_ids, speaker_embeddings=speaker_embeddings, **kwargs)

    def generate(
        self,
        input_ids: Any,
        attention_mask: Any = None,
        speaker_embeddings: Any = None,
        threshold: float = 0.5,
        minlenratio: float = 0.0,
        maxlenratio: float = 20.0,
        vocoder: Any = None,
        output_cross_attentions: bool = False,
        return_output_lengths: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Speech for `input_ids` in the voice of `speaker_embeddings` (an x-vector per text).

        Returns what `SpeechT5ForTextToSpeech.generate` returns: the waveform (or, with
        `vocoder=False` or no vocoder in the folder, the spectrogram) of one text, a padded
        batch of them, or with `return_output_lengths` the batch and each one's length. Other
        keyword arguments (generation settings a pipeline passes) are ignored, as there.
        """
        if speaker_embeddings is None:
            raise ORTModelError(
                "speaker_embeddings are required: an x-vector per text (512 values for "
                "SpeechT5), e.g. from the Matthijs/cmu-arctic-xvectors dataset."
            )
        if output_cross_attentions:
            raise ORTModelError("output_cross_attentions is not supported by the ONNX graphs.")
        use_torch = is_tensor(input_ids)
        ids = _as_numpy(input_ids).astype(np.int64)
        if ids.ndim != 2:
            raise ORTModelError(f"input_ids must be (batch, tokens), not {list(ids.shape)}.")
        if attention_mask is None:
            mask = (ids != self.config.pad_token_id).astype(np.int64)
        else:
            mask = _as_numpy(attention_mask).astype(np.int64)
        speakers = _as_numpy(speaker_embeddings).astype(np.float32)
        if speakers.ndim == 1:
            speakers = speakers[None]
        if speakers.shape[0] == 1 and ids.shape[0] > 1:
            speakers = np.repeat(speakers, ids.shape[0], axis=0)
        spectrograms = self._spectrograms(ids, mask, speakers, threshold, minlenratio, maxlenratio)
        run_vocoder = self._vocoder(vocoder)
        lengths = [len(s) for s in spectrograms]
        padded = _pad(spectrograms)
        if not return_output_lengths:
            spectrogram = spectrograms[0] if len(spectrograms) == 1 else padded
            output = spectrogram if run_vocoder is None else run_vocoder(spectrogram, use_torch)
            return self._out(output, use_torch)
        if run_vocoder is None:
            return self._out(padded, use_torch), lengths
        waveforms = run_vocoder(padded, use_torch)
        samples = int(waveforms.shape[1] / max(lengths))
        return self._out(waveforms, use_torch), [samples * n for n in lengths]

    def _spectrograms(
        self,
        ids: np.ndarray,
        mask: np.ndarray,
        speakers: np.ndarray,
        threshold: float,
        minlenratio: float,
        maxlenratio: float,
    ) -> list[np.ndarray]:
        """`_generate_speech`'s loop: each text's spectrogram after the postnet."""
        hidden = self.encoder.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        batch, bins = ids.shape[0], int(self.config.num_mel_bins)
        reduction = int(self.config.reduction_factor)
        maxlen = int(hidden.shape[1] * maxlenratio / reduction)
        minlen = int(hidden.shape[1] * minlenratio / reduction)
        feed: dict[str, np.ndarray] = {
            "output_sequence": np.zeros((batch, 1, bins), dtype=np.float32),
            "speaker_embeddings": speakers,
            "encoder_hidden_states": hidden,
            "encoder_attention_mask": mask,
            PRENET_DROPOUT: np.array(self.config.speech_decoder_prenet_dropout, np.float32),
        }
        for name in self._past:  # empty: the first step computes the cross-attention cache
            shape = self._input_shapes[name]
            feed[name] = np.zeros((batch, int(shape[1]), 0, int(shape[3])), dtype=np.float32)
        frames: list[np.ndarray] = []
        finished: dict[int, np.ndarray] = {}
        step = 0
        while len(finished) < batch:
            step += 1
            outputs = dict(zip(self.output_names, self.session.run(None, feed), strict=True))
            frames.append(outputs["spectrum"])
            feed["output_sequence"] = outputs["output_sequence_out"]
            for name in self._past:
                present = outputs[name.replace("past_key_values.", "present.")]
                if ".encoder." not in name or step == 1:  # later steps return it empty
                    feed[name] = present
            if step < minlen:
                continue
            if step < maxlen:
                stop = outputs["prob"][:, -1].sum(-1) >= threshold
                done = [int(i) for i in np.flatnonzero(stop)]
            else:
                done = list(range(batch))
            done = [i for i in done if i not in finished]
            if done:
                spectrum = np.concatenate(frames, axis=1)
                refined = self.postnet.run(None, {"spectrum": spectrum})[0]
                for index in done:
                    finished[index] = refined[index]
        return [finished[i] for i in range(batch)]

    def _vocoder(self, vocoder: Any) -> Any:
        """A function spectrogram -> waveform: the given vocoder, the folder's, or None."""
        if vocoder is False:
            return None
        if vocoder is not None:

            def run_given(spectrogram: np.ndarray, use_torch: bool) -> np.ndarray:
                torch = sys.modules.get("torch")  # loaded if the vocoder is a torch module
                if torch is not None and isinstance(vocoder, torch.nn.Module):
                    with torch.no_grad():
                        return _as_numpy(vocoder(torch.from_numpy(spectrogram)))
                return _as_numpy(vocoder(spectrogram))

            return run_given
        if self.vocoder is None:
            return None
        session = self.vocoder

        def run_folder(spectrogram: np.ndarray, use_torch: bool) -> np.ndarray:
            batched = spectrogram.ndim == 3
            inputs = spectrogram if batched else spectrogram[None]
            waveform = session.run(None, {"spectrogram": inputs.astype(np.float32)})[0]
            return waveform if batched else waveform[0]

        return run_folder

    def _out(self, value: np.ndarray, use_torch: bool) -> Any:
        return to_torch(value, self.device) if use_torch else value


def _pad(spectrograms: list[np.ndarray]) -> np.ndarray:
    """Stack with zeros after the shorter ones (torch's pad_sequence, batch first)."""
    longest = max(len(s) for s in spectrograms)
    padded = np.zeros((len(spectrograms), longest, *spectrograms[0].shape[1:]), np.float32)
    for index, spectrogram in enumerate(spectrograms):
        padded[index, : len(spectrogram)] = spectrogram
    return padded
