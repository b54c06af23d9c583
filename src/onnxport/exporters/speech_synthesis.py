"""Spectrogram text-to-speech (SpeechT5) split into the graphs its generation loop runs.

SpeechT5 speaks frame by frame: its text encoder runs once, then a decoder step turns the mel
frames so far (through a prenet, with the speaker's x-vector) into the next `reduction_factor`
frames and a stop probability, until the probability passes a threshold. A postnet refines
the whole spectrogram, and a separate vocoder (HiFi-GAN) turns it into a waveform.
transformers runs that loop in `_generate_speech`; the graphs are its pieces:

- `encoder_model.onnx`: the text encoder (`input_ids`, `attention_mask`);
- `decoder_model.onnx`: one step with a key/value cache, taking `output_sequence` (every frame
  so far, a zero frame first), `speaker_embeddings`, the encoder's states and mask, and
  returning `output_sequence_out` (one frame longer), `spectrum` (the new frames) and `prob`;
- `decoder_postnet.onnx`: the postnet over the frames of a finished utterance (`spectrum`
  in, `spectrogram` out);
- `vocoder.onnx`: the vocoder given at export, spectrogram to waveform.

The prenet's dropout runs at inference too (a "consistent dropout" of probability
`speech_decoder_prenet_dropout`, one mask for the whole batch) and draws its mask with
`torch.bernoulli` at a probability read from the config, so the decoder graph takes the
probability as a scalar input of that name: the runtime passes the config's, and validation
passes 0, where PyTorch and ONNX Runtime are both deterministic.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from onnxport.errors import ExportOptionError, UnsupportedModelError, first_line
from onnxport.exporters.capture import DEFAULT_OPSET
from onnxport.exporters.dummy import BATCH, ENCODER, SEQUENCE, TOTAL, Template
from onnxport.exporters.seq2seq import _as_encoder_decoder_cache
from onnxport.layout import (
    DECODER_FILE,
    ENCODER_FILE,
    ONNXPORT,
    POSTNET_FILE,
    VOCODER_FILE,
)

logger = logging.getLogger(__name__)

PRENET_DROPOUT = "speech_decoder_prenet_dropout"
MAX_RANDOM_OPSET = 21


def _check_synthesizer(model: Any) -> None:
    """Refuse a text-to-spectrogram model without SpeechT5's decoder loop, naming it."""
    speecht5 = getattr(model, "speecht5", None)
    if speecht5 is None or not hasattr(model, "speech_decoder_postnet"):
        raise UnsupportedModelError(
            f"text-to-spectrogram export supports SpeechT5 (a decoder that speaks frame by "
            f"frame); '{model.config.model_type}' is not supported yet.",
            model_type=model.config.model_type,
        )


class TextEncoderPart(torch.nn.Module):
    """SpeechT5's text encoder: its states over the input tokens."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.encoder = model.speecht5.encoder
        self.config = model.config

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, return_dict: bool = True
    ) -> dict[str, torch.Tensor]:
        """`last_hidden_state` (batch, tokens, hidden)."""
        output = self.encoder(input_values=input_ids, attention_mask=attention_mask)
        return {"last_hidden_state": output.last_hidden_state}


class SpectrogramDecoderPart(torch.nn.Module):
    """One step of SpeechT5's speech decoder, as `_generate_speech` runs it.

    The prenet runs over every frame so far (its positional encoding counts them) and the
    decoder stack over the frames past the cache. With one new frame (generation) that is
    transformers' step exactly; validation also runs several.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        _check_synthesizer(model)
        self.model = model
        self.config = config = model.config
        self.prenet = model.speecht5.decoder.prenet
        self.decoder = model.speecht5.decoder.wrapped_decoder
        self.postnet = model.speech_decoder_postnet
        self.input_templates: dict[str, Template] = {
            "output_sequence": (BATCH, TOTAL, int(config.num_mel_bins)),
            "speaker_embeddings": (BATCH, int(config.speaker_embedding_dim)),
            "encoder_hidden_states": (BATCH, ENCODER, int(config.hidden_size)),
            PRENET_DROPOUT: (),
        }
        self.names = [
            "output_sequence", "speaker_embeddings", "encoder_hidden_states",
            "encoder_attention_mask", PRENET_DROPOUT,
        ]  # fmt: skip

    def _prenet(
        self, frames: torch.Tensor, speaker_embeddings: torch.Tensor, dropout: torch.Tensor
    ) -> torch.Tensor:
        """SpeechT5SpeechDecoderPrenet.forward with its dropout probability a tensor.

        transformers' `_consistent_dropout` takes the probability as a Python float from the
        config (`torch.bernoulli(x, p=...)`), which a trace would freeze; the same draw (keep
        where a uniform sample is below p, scale by 1 / (1 - p)) is written here with it.
        """
        prenet = self.prenet
        embeds = frames
        for layer in prenet.layers:
            embeds = torch.nn.functional.relu(layer(embeds))
            keep = torch.rand_like(embeds[0]) < dropout
            embeds = torch.where(keep.unsqueeze(0), embeds, 0.0) / (1 - dropout)
        embeds = prenet.encode_positions(prenet.final_layer(embeds))
        speaker = torch.nn.functional.normalize(speaker_embeddings)
        speaker = speaker.unsqueeze(1).expand(-1, embeds.size(1), -1)
        return torch.nn.functional.relu(
            prenet.speaker_embeds_layer(torch.cat([embeds, speaker], dim=-1))
        )

    def step(
        self,
        hidden: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        cache: Any,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """The decoder stack over prenet states `hidden` (what CrossAttentionPart reads).

        CrossAttentionPart passes token ids of shape (batch, 1): any states of that length
        will do, since the cross-attention keys and values depend on the encoder's alone.
        """
        if not hidden.is_floating_point():
            hidden = encoder_hidden_states.new_zeros(
                (hidden.shape[0], hidden.shape[1], encoder_hidden_states.shape[-1])
            )
        output = self.decoder(
            hidden_states=hidden,
            attention_mask=None,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            cache=_as_encoder_decoder_cache(cache),
            use_cache=True,
            return_dict=True,
        )
        return {"last_hidden_state": output.last_hidden_state, "cache": output.cache}

    def forward(
        self,
        output_sequence: torch.Tensor,
        speaker_embeddings: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        speech_decoder_prenet_dropout: torch.Tensor,
        cache: Any = None,
        use_cache: bool = True,
        return_dict: bool = True,
    ) -> dict[str, Any]:
        """The next frames and stop probabilities, and the sequence one frame longer."""
        cache = _as_encoder_decoder_cache(cache)
        past = cache.get_seq_length()
        hidden = self._prenet(output_sequence, speaker_embeddings, speech_decoder_prenet_dropout)
        step = self.step(hidden[:, past:], encoder_hidden_states, cache, encoder_attention_mask)
        states = step["last_hidden_state"]  # (batch, new frames, hidden)
        batch, mel = states.shape[0], int(self.config.num_mel_bins)
        spectrum = self.postnet.feat_out(states).reshape(batch, -1, mel)
        prob = torch.sigmoid(self.postnet.prob_out(states))  # (batch, new frames, reduction)
        return {
            "output_sequence_out": torch.cat([output_sequence, spectrum[:, -1:]], dim=1),
            "spectrum": spectrum,
            "prob": prob,
            "cache": step["cache"],
        }


class PostnetPart(torch.nn.Module):
    """SpeechT5's postnet over a whole spectrogram (batch, frames, mel bins)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.postnet = model.speech_decoder_postnet
        self.config = model.config
        self.input_templates: dict[str, Template] = {
            "spectrum": (BATCH, SEQUENCE, int(model.config.num_mel_bins))
        }

    def forward(self, spectrum: torch.Tensor, return_dict: bool = True) -> dict[str, Any]:
        """The decoder's frames (its `spectrum` outputs, joined) refined: `spectrogram`."""
        return {"spectrogram": self.postnet.postnet(spectrum)}


class VocoderPart(torch.nn.Module):
    """A spectrogram vocoder (SpeechT5HifiGan): spectrogram (batch, frames, mel) to waveform."""

    def __init__(self, vocoder: Any, model: Any) -> None:
        super().__init__()
        self.vocoder = vocoder
        self.config = model.config  # the synthesizer's: the graph's metadata names it
        bins = int(getattr(vocoder.config, "model_in_dim", model.config.num_mel_bins))
        if bins != int(model.config.num_mel_bins):
            raise UnsupportedModelError(
                f"The vocoder takes {bins} mel bins but '{model.config.model_type}' makes "
                f"{model.config.num_mel_bins}: pass the vocoder trained with this model.",
                model_type=model.config.model_type,
            )
        self.input_templates: dict[str, Template] = {"spectrogram": (BATCH, SEQUENCE, bins)}

    def forward(self, spectrogram: torch.Tensor, return_dict: bool = True) -> dict[str, Any]:
        """`waveform` (batch, samples)."""
        return {"waveform": self.vocoder(spectrogram)}


def graph_parts(
    model: Any, vocoder: Any | None = None
) -> list[tuple[str, torch.nn.Module, list[str], bool]]:
    """(file name, module, input names, cached) of each graph; the decoder's last."""
    decoder = SpectrogramDecoderPart(model)
    parts: list[tuple[str, torch.nn.Module, list[str], bool]] = [
        (ENCODER_FILE, TextEncoderPart(model), ["input_ids", "attention_mask"], False),
        (POSTNET_FILE, PostnetPart(model), ["spectrum"], False),
    ]
    if vocoder is not None:
        parts.append((VOCODER_FILE, VocoderPart(vocoder, model), ["spectrogram"], False))
    parts.append((DECODER_FILE, decoder, decoder.names, True))
    return parts


def is_synthesizer(task: Any) -> bool:
    """Whether `task` exports a spectrogram synthesizer (these graphs)."""
    return bool(task.name == "text-to-spectrogram")


def synthesizer_opset(opset: int | None) -> int:
    """The opset of a synthesizer's graphs: at most 21, DEFAULT_OPSET when none is asked.

    The prenet's dropout is a random draw, and ONNX Runtime has no kernels for the random
    operators' opset-22 versions (RandomUniform, RandomUniformLike, Bernoulli: checked on
    1.32), so a graph at opset 22 or above would not load.
    """
    if opset is None:
        return DEFAULT_OPSET
    if opset > MAX_RANDOM_OPSET:
        raise ExportOptionError(
            f"--opset {opset} is too new for SpeechT5's decoder: its prenet draws random "
            f"numbers, which ONNX Runtime runs up to opset {MAX_RANDOM_OPSET}; pass "
            f"--opset {MAX_RANDOM_OPSET} or less.",
            option="--opset",
        )
    return opset


def check_layout_for_speech(layout: str) -> None:
    """transformers.js loads SpeechT5 and MusicGen in its own splits: refused for now."""
    if layout != ONNXPORT:
        raise ExportOptionError(
            f"--layout {layout} does not hold a speech or music generator yet (SpeechT5, "
            "MusicGen); export it with the default layout.",
            option="--layout",
        )


def load_vocoder(
    vocoder: str | os.PathLike[str] | torch.nn.Module | None,
    *,
    revision: str | None = None,
    device: str = "cpu",
) -> Any:
    """The vocoder module to export beside a synthesizer: given, loaded, or None.

    None writes no vocoder graph (the folder makes spectrograms), as transformers'
    `generate_speech` returns spectrograms without one; a warning says how to add it.
    """
    if vocoder is None:
        logger.warning(
            "No --vocoder: the export makes spectrograms, not speech. Pass the model's "
            "vocoder (for SpeechT5: --vocoder microsoft/speecht5_hifigan) to export it beside."
        )
        return None
    if isinstance(vocoder, torch.nn.Module):
        return vocoder.eval().to(device)
    from transformers import SpeechT5HifiGan

    from onnxport import hub

    try:
        folder = hub.resolve_model_path(vocoder, revision=revision)
        loaded = SpeechT5HifiGan.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise ExportOptionError(
            f"Could not load the vocoder '{vocoder}' ({first_line(err, 160)}); pass a "
            "SpeechT5HifiGan folder or Hub id, such as microsoft/speecht5_hifigan.",
            option="--vocoder",
        ) from err
    return loaded.eval().to(device)
