"""`ORTModelForTextToAudioGeneration`: MusicGen on ONNX Runtime, without torch.

The export (exporters/music_generation.py) writes the pieces of
`MusicgenForConditionalGeneration.generate`; `generate` runs its loop over them in numpy:
the text encoder once (plus an all-masked copy for classifier-free guidance), the decoder one
token per codebook per step under the delay pattern, guidance mixing the two halves' logits,
greedy or sampled choice (temperature, top-k, top-p), then EnCodec's decoder over the codes
with the delay pattern's padding removed. Defaults come from the folder's generation config
(MusicGen's: sampling, top-k 250, guidance 3), as in transformers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from onnxport.errors import ORTModelError
from onnxport.layout import AUDIO_DECODER_FILE, TEXT_ENCODER_FILE
from onnxport.runtime.base import ORTNumpyGenerator, _as_numpy, is_tensor, to_torch


class ORTModelForTextToAudioGeneration(ORTNumpyGenerator):
    """Text to music or sound (MusicGen): `generate` returns `audio_values` (batch, 1, samples).

    Arguments follow `MusicgenForConditionalGeneration.generate`: `guidance_scale`,
    `max_new_tokens` (or `max_length`), `do_sample`, `temperature`, `top_k`, `top_p`; unset
    ones come from the folder's generation config. `seed` makes sampling repeatable.
    """

    task = "text-to-audio-with-past"

    def __init__(self, session: ort.InferenceSession, config: Any, **kwargs: Any) -> None:
        super().__init__(session, config, **kwargs)
        self.text_encoder = self._session_beside(TEXT_ENCODER_FILE)
        self.audio_decoder = self._session_beside(AUDIO_DECODER_FILE)
        self._past = [name for name in self.input_names if name.startswith("past_key_values.")]
        self.codebooks = int(self._input_shapes["input_ids"][1])

    @property
    def sampling_rate(self) -> int:
        """The audio codec's sampling rate."""
        return int(self.config.audio_encoder.sampling_rate)

    def generate(
        self,
        input_ids: Any,
        attention_mask: Any = None,
        *,
        guidance_scale: float | None = None,
        max_new_tokens: int | None = None,
        max_length: int | None = None,
        do_sample: bool | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        return_dict_in_generate: bool | None = None,
        seed: int | None = None,
        input_values: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Audio for each text: `audio_values` (batch, 1, samples).

        With `return_dict_in_generate` (as transformers' pipeline asks) a dict whose
        `sequences` hold the audio, as transformers' MusicGen returns, and `audio_codes` the
        codes. Other generation settings a pipeline passes are ignored.
        """
        if input_values is not None:
            raise ORTModelError(
                "Audio prompts (input_values) are not supported by the ONNX graphs; prompt "
                "with text only."
            )
        defaults = self.generation_config
        settings = _Settings(
            guidance=_pick(guidance_scale, defaults.guidance_scale),
            sample=bool(_pick(do_sample, defaults.do_sample)),
            temperature=float(_pick(temperature, defaults.temperature, 1.0)),
            top_k=int(_pick(top_k, defaults.top_k, 0)),
            top_p=float(_pick(top_p, defaults.top_p, 1.0)),
        )
        if max_new_tokens is None and max_length is None:
            max_new_tokens = defaults.max_new_tokens
            max_length = None if max_new_tokens is not None else defaults.max_length
        steps = int(max_new_tokens) if max_new_tokens is not None else int(max_length or 20) - 1
        use_torch = is_tensor(input_ids)
        ids = _as_numpy(input_ids).astype(np.int64)
        mask = (
            np.ones_like(ids)
            if attention_mask is None
            else _as_numpy(attention_mask).astype(np.int64)
        )
        codes = self._codes(ids, mask, steps, settings, np.random.default_rng(seed))
        audio = self.audio_decoder.run(None, {"audio_codes": codes})[0]
        output = to_torch(audio, self.device) if use_torch else audio
        if return_dict_in_generate:
            return {"sequences": output, "audio_codes": codes}
        return output

    def _codes(
        self,
        ids: np.ndarray,
        mask: np.ndarray,
        steps: int,
        settings: _Settings,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """The codes (1, batch, codebooks, frames) the decoder writes for the texts."""
        states = self.text_encoder.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        guided = settings.guidance is not None and settings.guidance > 1
        if guided:  # the unconditional half: no text (zero states, all masked), after the texts
            states = np.concatenate([states, np.zeros_like(states)])
            mask = np.concatenate([mask, np.zeros_like(mask)])
        batch, codebooks = ids.shape[0], self.codebooks
        start = int(self.generation_config.decoder_start_token_id)
        pattern = _delay_pattern(batch, codebooks, steps + 1, start)
        tokens = np.full((batch, codebooks, 1), start, dtype=np.int64)
        feed: dict[str, np.ndarray] = {
            "encoder_hidden_states": states,
            "encoder_attention_mask": mask,
        }
        for name in self._past:  # empty: the first step computes the cross-attention cache
            shape = self._input_shapes[name]
            feed[name] = np.zeros((len(states), int(shape[1]), 0, int(shape[3])), np.float32)
        for step in range(steps):
            current = _apply_pattern(tokens, pattern)
            current = current if step == 0 else current[..., -1:]
            feed["input_ids"] = np.concatenate([current, current]) if guided else current
            outputs = dict(zip(self.output_names, self.session.run(None, feed), strict=True))
            for name in self._past:
                if ".encoder." not in name or step == 0:  # later steps return it empty
                    feed[name] = outputs[name.replace("past_key_values.", "present.")]
            logits = outputs["logits"][:, :, -1].astype(np.float64)  # (rows, codebooks, vocab)
            if guided:  # ClassifierFreeGuidanceLogitsProcessor
                conditional, unconditional = logits[:batch], logits[batch:]
                logits = unconditional + (conditional - unconditional) * settings.guidance
            chosen = _choose(logits, settings, rng)
            tokens = np.concatenate([tokens, chosen[..., None]], axis=-1)
        final = _apply_pattern(tokens, pattern)
        # The pattern's start and end padding is one token per codebook row: dropped.
        return final[final != start].reshape(batch, codebooks, -1)[None]


class _Settings:
    """Generation settings resolved against the generation config."""

    def __init__(
        self, *, guidance: float | None, sample: bool, temperature: float, top_k: int, top_p: float
    ) -> None:
        self.guidance, self.sample, self.temperature = guidance, sample, temperature
        self.top_k, self.top_p = top_k, top_p


def _pick(*values: Any) -> Any:
    """The first value that is not None."""
    return next((value for value in values if value is not None), None)


def _delay_pattern(batch: int, codebooks: int, length: int, pad: int) -> np.ndarray:
    """`MusicgenForCausalLM.build_delay_pattern_mask` for a start-token prompt (mono).

    (batch, codebooks, length): `pad` where codebook k is delayed (t <= k) or runs past the
    end (t >= length - codebooks + 1 + k), -1 where a token is generated. Shorter than
    2 * codebooks - 1 there is no pattern, as in transformers.
    """
    pattern = np.full((batch, codebooks, length), -1, dtype=np.int64)
    if length < 2 * codebooks - 1:
        return pattern
    time, book = np.arange(length)[None, :], np.arange(codebooks)[:, None]
    pattern[:, (time <= book) | (time >= length - codebooks + 1 + book)] = pad
    return pattern


def _apply_pattern(tokens: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """`apply_delay_pattern_mask`: the pattern's value wherever it is not -1."""
    window = pattern[..., : tokens.shape[-1]]
    return np.where(window == -1, tokens, window)


def _choose(logits: np.ndarray, settings: _Settings, rng: np.random.Generator) -> np.ndarray:
    """The next token per codebook: argmax, or a draw after temperature, top-k and top-p."""
    if not settings.sample:
        return logits.argmax(-1)
    scores = logits / settings.temperature
    if 0 < settings.top_k < scores.shape[-1]:
        kth = np.sort(scores, axis=-1)[..., -settings.top_k, None]
        scores = np.where(scores < kth, -np.inf, scores)
    probabilities = np.exp(scores - scores.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    if settings.top_p < 1.0:
        order = np.argsort(-probabilities, axis=-1)
        ranked = np.take_along_axis(probabilities, order, -1)
        # Keep the smallest set whose mass reaches top_p (always the most likely token).
        drop = np.cumsum(ranked, -1) - ranked >= settings.top_p
        ranked[drop] = 0
        probabilities = np.zeros_like(probabilities)
        np.put_along_axis(probabilities, order, ranked, -1)
        probabilities /= probabilities.sum(-1, keepdims=True)
    flat = probabilities.reshape(-1, probabilities.shape[-1])
    cumulative = flat.cumsum(-1)
    draws = rng.random((len(flat), 1)) * cumulative[:, -1:]
    return (cumulative < draws).sum(-1).reshape(probabilities.shape[:-1])
