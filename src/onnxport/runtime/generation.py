"""Generative ORT models: transformers' own `GenerationMixin` over ONNX Runtime sessions.

The graphs take the cache as flat `past_key_values.<i>.key/value` tensors and return
`present.<i>.key/value`; here they are wrapped in transformers caches, so greedy search,
sampling and beam search (which reorders the cache) are transformers' code, unchanged.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort

from onnxport.runtime.arrays import torch_missing

try:
    import torch
except ModuleNotFoundError as missing:  # GenerationMixin is torch code: say what to install
    raise torch_missing("Generation (transformers' GenerationMixin)") from missing
from transformers import DynamicCache, EncoderDecoderCache, GenerationConfig
from transformers.generation import GenerationMixin
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutputWithPast, Seq2SeqLMOutput
from transformers.models.whisper.generation_whisper import WhisperGenerationMixin

from onnxport.errors import ORTModelError, first_line
from onnxport.layout import (
    DECODER_FILE,
    EMBED_FILE,
    ENCODER_FILE,
    META_CACHE,
    NO_CACHE,
    ONNX_FILE,
    VISION_FILE,
    encoder_file_for,
    image_token_id,
)
from onnxport.runtime.base import ORTModel, _as_numpy
from onnxport.sessions import create_session


class ORTGenerativeModel(ORTModel, GenerationMixin):
    """Shared by generative ORT models: the graph's flat cache <-> a transformers cache."""

    _is_stateful = False
    _supports_cache_class = True
    # Between decoding steps transformers runs torch code (logits processors, the cache);
    # ORT's idle workers spinning meanwhile take the cores it needs. Measured on the 100M
    # Llama of benchmarks/generate.py, 2 cores, batch 4: 1.42x PyTorch with spinning, 1.89x
    # without (batch 1: 2.04x and 1.84x).
    session_config: ClassVar[dict[str, str]] = {"session.intra_op.allow_spinning": "0"}

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
        past = [n for n in self.input_names if n.startswith("past_key_values.")]
        present = [n for n in self.output_names if n.startswith("present.")]
        # An encoder-decoder's cross-attention cache (`.encoder.`) is filled once per input.
        self._past_names = [n for n in past if ".encoder." not in n]
        self._present_names = [n for n in present if ".encoder." not in n]
        self._cross_past_names = [n for n in past if ".encoder." in n]
        self._cross_present_names = [n for n in present if ".encoder." in n]
        metadata = session.get_modelmeta().custom_metadata_map
        # A graph exported without a cache (a state onnxport cannot export yet) takes the whole
        # sequence at every step; transformers' generate() runs it with use_cache off.
        self.recomputes = metadata.get(META_CACHE) == NO_CACHE and not past and not present
        if not self.recomputes and (
            not self._past_names
            or len(self._past_names) != len(self._present_names)
            or len(self._cross_past_names) != len(self._cross_present_names)
        ):
            raise ORTModelError(
                f"'{model_dir / file_name}' has no key/value cache inputs and outputs; export it "
                f"with --task {self.task}."
            )
        limit = metadata.get("max_total_length")
        self.max_total_length = int(limit) if limit else None
        shapes = {i.name: i.shape for i in session.get_inputs()}
        # The cache is fed in the graph's own float type (float16 for an fp16 export).
        self._past_dtype = (
            _numpy_type(self._input_types[self._past_names[0]]) if past else np.float32
        )
        self._past_static = {name: (int(shapes[name][1]), int(shapes[name][3])) for name in past}
        try:
            self.generation_config = GenerationConfig.from_pretrained(model_dir)
        except OSError:
            self.generation_config = GenerationConfig.from_model_config(config)
        if self.recomputes:
            self.generation_config.use_cache = False

    @classmethod
    def can_generate(cls) -> bool:
        """Generative models generate."""
        return True

    # GenerationMixin calls these PreTrainedModel hooks; a graph has fixed answers to them.
    def get_experts_implementation(self) -> dict[str, str]:
        """No mixture-of-experts kernels to switch: the graph fixes them."""
        return {}

    def set_experts_implementation(self, implementation: Any) -> None:
        """Nothing to switch in a graph."""

    @staticmethod
    def _step_cache(cache: Any, past_key_values: Any, use_cache: bool | None = True) -> Any:
        """The cache to continue from, or None when caching is off.

        Transformers passes it as `cache` (5.24) or `past_key_values` (before).
        """
        if use_cache is False:
            return None
        return cache if cache is not None else past_key_values

    def _past_feed(
        self, cache: Any, batch: int, names: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        """The graph's `names` inputs (the self-attention cache's) from `cache`; empty if none."""
        names = self._past_names if names is None else names
        if cache is None or cache.get_seq_length() == 0:
            empty = {
                name: (batch, heads, 0, size) for name, (heads, size) in self._past_static.items()
            }
            return {name: np.zeros(empty[name], dtype=self._past_dtype) for name in names}
        tensors = [t for layer in cache.layers for t in (layer.keys, layer.values)]
        if len(tensors) != len(names):
            raise ORTModelError(
                f"The cache holds {len(tensors) // 2} layers; this model has {len(names) // 2}."
            )
        return {
            name: tensor.detach().cpu().numpy().astype(self._past_dtype, copy=False)
            for name, tensor in zip(names, tensors, strict=True)
        }

    def _store_cache(
        self, cache: Any, outputs: dict[str, np.ndarray], names: list[str] | None = None
    ) -> DynamicCache:
        """The graph's present tensors as the cache's contents, without copying them.

        As transformers' own models do, the cache passed in is updated in place and carries
        on (no new cache object per step); its layers hold torch views of ORT's arrays, which
        the next step feeds back as they are. `present.<i>.key`, `present.<i>.value` come in
        layer order (`.decoder.` in transformers.js' names for an encoder-decoder).
        """
        names = self._present_names if names is None else names
        tensors = [torch.from_numpy(outputs[name]) for name in names]
        count = len(tensors) // 2
        if not isinstance(cache, DynamicCache) or len(cache.layers) not in (0, count):
            cache = DynamicCache()
        if not cache.layers:  # a cache without a config grows one layer per update
            for layer in range(count):
                key, value = tensors[2 * layer], tensors[2 * layer + 1]
                cache.update(key[..., :0, :], value[..., :0, :], layer)
        for layer, key, value in zip(cache.layers, tensors[0::2], tensors[1::2], strict=True):
            if not layer.is_initialized:
                layer.lazy_initialization(key, value)
            layer.keys, layer.values = key, value
        return cache

    def _run_step(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            results = self.session.run(None, feed)
        except Exception as err:
            raise ORTModelError(
                f"ONNX Runtime failed on a decoding step: {first_line(err)}"
            ) from err
        return dict(zip(self.output_names, results, strict=True))


class ORTModelForCausalLM(ORTGenerativeModel):
    """Decoder-only language model with a key/value cache; `generate()` as in transformers.

    Example:
        >>> model = ORTModelForCausalLM.from_pretrained("out/")  # doctest: +SKIP
        >>> model.generate(**tokenizer(["Hello"], return_tensors="pt"), max_new_tokens=20)

    """

    task = "text-generation"
    main_input_name = "input_ids"

    def forward(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        position_ids: Any = None,
        token_type_ids: Any = None,
        cache: Any = None,
        past_key_values: Any = None,
        use_cache: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """One decoding step: logits for `input_ids` given the cache so far."""
        if input_ids is None:
            raise ORTModelError(f"Missing input 'input_ids'; this model takes {self._expected()}.")
        ids = _as_numpy(input_ids).astype(np.int64)
        types = np.zeros_like(ids) if token_type_ids is None else _as_numpy(token_type_ids)
        logits, new_cache = self._decode(
            {"input_ids": ids}, self._step_cache(cache, past_key_values),
            attention_mask, position_ids, types, use_cache,
        )  # fmt: skip
        result: Any = (
            logits if not isinstance(input_ids, torch.Tensor) else torch.from_numpy(logits)
        )
        return CausalLMOutputWithPast(logits=result, cache=new_cache)

    def _decode(
        self,
        tokens: dict[str, np.ndarray],
        cache: Any,
        attention_mask: Any,
        position_ids: Any,
        token_type_ids: np.ndarray,
        use_cache: bool | None,
    ) -> tuple[np.ndarray, Any]:
        """One decoder step on `tokens` (`input_ids` or `inputs_embeds`): logits, new cache.

        The mask defaults to all ones, positions follow the mask, and a sliding-window
        export refuses a step past the length it is exact for.
        """
        batch, length = next(iter(tokens.values())).shape[:2]
        past_length = cache.get_seq_length() if cache is not None else 0
        if self.max_total_length is not None and past_length + length > self.max_total_length:
            raise ORTModelError(
                f"'{self.config.model_type}' uses sliding-window attention: this export is exact "
                f"up to {self.max_total_length} tokens (prompt and generated together), and this "
                f"step would reach {past_length + length}. Longer sequences are not supported yet."
            )
        if attention_mask is None:
            mask = np.ones((batch, past_length + length), dtype=np.int64)
        else:
            mask = _as_numpy(attention_mask).astype(np.int64)
        feed: dict[str, np.ndarray] = {**tokens, "attention_mask": mask}
        if "position_ids" in self.input_names:
            if position_ids is None:
                positions = np.clip(np.cumsum(mask, axis=-1) - 1, 0, None)
                position_ids = positions[:, -length:]
            feed["position_ids"] = _as_numpy(position_ids).astype(np.int64)
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = token_type_ids.astype(np.int64)
        if self.recomputes:
            return self._run_step(feed)["logits"], None
        feed.update(self._past_feed(cache, batch))
        outputs = self._run_step(feed)
        new_cache = self._store_cache(cache, outputs) if use_cache is not False else None
        return outputs["logits"], new_cache

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.Tensor,
        cache: Any = None,
        past_key_values: Any = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        use_cache: bool = True,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Feed only the tokens the cache has not seen; positions follow the mask."""
        if self.recomputes:  # no cache: every step feeds the whole sequence
            cache, past_key_values, use_cache = None, None, False
        cache = self._step_cache(cache, past_key_values, use_cache)
        past_length = cache.get_seq_length() if cache is not None else 0
        step_ids = input_ids[:, past_length:]
        position_ids = None
        if attention_mask is not None:
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            position_ids = positions[:, -step_ids.shape[1] :]
        if token_type_ids is not None:
            token_type_ids = token_type_ids[:, -step_ids.shape[1] :]
        return {
            "token_type_ids": token_type_ids,
            "input_ids": step_ids,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
            "cache": cache,
            "use_cache": use_cache,
        }


class ORTModelForImageTextToText(ORTModelForCausalLM):
    """Vision-language generation (LLaVA, Qwen2-VL, Gemma 3); `generate()` as in transformers.

    `vision_encoder.onnx` turns `pixel_values` into image features on the first step,
    `embed_tokens.onnx` embeds the tokens, and the features replace the embeddings of the
    image placeholder tokens (`config.image_token_id`), as the model's forward does;
    `decoder_model.onnx` then runs every step with the cache.

    Example:
        >>> model = ORTModelForImageTextToText.from_pretrained("out/")  # doctest: +SKIP
        >>> inputs = processor(images=image, text=prompt, return_tensors="pt")  # doctest: +SKIP
        >>> model.generate(**inputs, max_new_tokens=20)  # doctest: +SKIP

    """

    task = "image-text-to-text"
    default_file = DECODER_FILE

    def __init__(
        self,
        session: ort.InferenceSession,
        config: Any,
        *,
        model_dir: Path,
        file_name: str = DECODER_FILE,
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
        # The graphs paired with this decoder (a variant's own: vision_encoder_int8.onnx).
        self.vision_file, self.embed_file = (
            self._graph_beside(VISION_FILE),
            self._graph_beside(EMBED_FILE),
        )
        self.vision = create_session(self.vision_file, options, providers)
        self.embed = create_session(self.embed_file, options, providers)
        token = image_token_id(config)
        if token is None:
            raise ORTModelError(
                "The folder's config.json has no image_token_id: it is not a VLM export."
            )
        self.image_token_id = token
        self._vision_inputs = {i.name: i for i in self.vision.get_inputs()}
        positions = next((i for i in session.get_inputs() if i.name == "position_ids"), None)
        # 3-D rotary positions (Qwen2-VL's M-RoPE) come from the model's own get_rope_index.
        self._rope = _positions_model(config) if positions and len(positions.shape) == 3 else None

    def image_features(
        self, pixel_values: Any, pixel_attention_mask: Any = None, image_grid_thw: Any = None
    ) -> np.ndarray:
        """The vision encoder's features for `pixel_values`, one row per placeholder token."""
        pixels = _as_numpy(pixel_values)
        graph = self._vision_inputs["pixel_values"]
        if "image_grid_thw" in self._vision_inputs:  # patches of all images, packed
            return self._packed_features(pixels, image_grid_thw, graph)
        if pixels.ndim != len(graph.shape):
            raise ORTModelError(
                f"The vision encoder takes pixel_values of {len(graph.shape)} dimensions "
                f"{tuple(graph.shape)}, not of shape {pixels.shape}: pass what the folder's "
                "processor returns."
            )
        lead = pixels.ndim - 3
        images = pixels.reshape(-1, *pixels.shape[lead:]).astype(_numpy_type(graph.type))
        masks = None
        if "pixel_attention_mask" in self._vision_inputs:
            if pixel_attention_mask is None:
                mask = np.ones((*pixels.shape[:-3], *pixels.shape[-2:]), dtype=np.int64)
            else:
                mask = _as_numpy(pixel_attention_mask)
            masks = mask.reshape(-1, *mask.shape[lead:])
            # Images that are all zeros pad a prompt's image list; the model drops them too.
            real = np.abs(images).reshape(len(images), -1).max(axis=1) > 0
            images, masks = images[real], masks[real]
        # One image per row; (images, 1, ...) where the graph takes images per prompt.
        shape = (-1, *(1,) * (lead - 1))
        feed = {"pixel_values": images.reshape(*shape, *images.shape[1:])}
        if masks is not None:
            feed["pixel_attention_mask"] = masks.reshape(*shape, *masks.shape[1:]).astype(np.int64)
        return self._run_vision(feed)

    def _run_vision(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """The vision encoder on `feed`: one row of features per image token."""
        try:
            (result,) = self.vision.run(["image_features"], feed)
        except Exception as err:
            raise ORTModelError(
                f"ONNX Runtime failed on the vision encoder: {first_line(err)}"
            ) from err
        return result.reshape(-1, result.shape[-1])

    def _packed_features(self, pixels: np.ndarray, grid: Any, graph: Any) -> np.ndarray:
        if grid is None:
            raise ORTModelError(
                "This vision encoder takes image_grid_thw beside pixel_values: pass what the "
                "folder's processor returns."
            )
        grid = _as_numpy(grid).astype(np.int64)
        if pixels.ndim != 2 or grid.ndim != 2 or int(grid.prod(-1).sum()) != len(pixels):
            raise ORTModelError(
                f"pixel_values {pixels.shape} do not match image_grid_thw {tuple(grid.shape)} "
                "(one row per patch of every image): build the inputs with the folder's processor."
            )
        feed = {"pixel_values": pixels.astype(_numpy_type(graph.type)), "image_grid_thw": grid}
        return self._run_vision(feed)

    def _prepare_position_ids_for_generation(self, inputs_tensor: Any, model_kwargs: Any) -> Any:
        """3-D rotary positions by the model's own method where the decoder takes them."""
        if self._rope is None:
            return super()._prepare_position_ids_for_generation(inputs_tensor, model_kwargs)
        return self._rope._prepare_position_ids_for_generation(inputs_tensor, model_kwargs)

    def _rotary_positions(
        self, ids: np.ndarray, attention_mask: Any, cache: Any, grid: Any, types: Any
    ) -> torch.Tensor:
        """(3, batch, length) positions of a step called without them, as forward builds them."""
        assert self._rope is not None
        batch, length = ids.shape
        past = cache.get_seq_length() if cache is not None else 0
        if types is None and grid is not None:  # as the processor marks them: images are 1
            types = (ids == self.image_token_id).astype(np.int64)
        positions = self._rope.model.compute_3d_position_ids(
            input_ids=torch.from_numpy(ids),
            inputs_embeds=torch.empty((batch, length, 0)),
            image_grid_thw=None if grid is None else torch.as_tensor(_as_numpy(grid)),
            attention_mask=None if attention_mask is None else torch.as_tensor(
                _as_numpy(attention_mask)
            ),
            cache=cache,
            mm_token_type_ids=None if types is None else torch.as_tensor(_as_numpy(types)),
        )  # fmt: skip
        if positions is None:  # text only, as the language model counts then
            positions = torch.arange(past, past + length).view(1, 1, -1).expand(3, batch, -1)
        return positions[..., -length:]

    def forward(  # type: ignore[override]
        self,
        input_ids: Any = None,
        pixel_values: Any = None,
        attention_mask: Any = None,
        position_ids: Any = None,
        token_type_ids: Any = None,
        pixel_attention_mask: Any = None,
        cache: Any = None,
        past_key_values: Any = None,
        use_cache: bool | None = None,
        image_grid_thw: Any = None,
        mm_token_type_ids: Any = None,
        **kwargs: Any,
    ) -> Any:
        """One step: embed the tokens, splice in the image features, run the decoder."""
        if input_ids is None:
            raise ORTModelError(f"Missing input 'input_ids'; this model takes {self._expected()}.")
        cache = self._step_cache(cache, past_key_values)
        ids = _as_numpy(input_ids).astype(np.int64)
        past_length = cache.get_seq_length() if cache is not None else 0
        try:
            (embeds,) = self.embed.run(["inputs_embeds"], {"input_ids": ids})
        except Exception as err:
            raise ORTModelError(f"ONNX Runtime failed on embed_tokens: {first_line(err)}") from err
        placeholders = ids == self.image_token_id
        if pixel_values is not None:
            features = self.image_features(pixel_values, pixel_attention_mask, image_grid_thw)
            if int(placeholders.sum()) != len(features):
                raise ORTModelError(
                    f"The prompts hold {int(placeholders.sum())} image tokens but the images give "
                    f"{len(features)} features: build the inputs with the folder's processor."
                )
            embeds = embeds.copy()
            embeds[placeholders] = features.astype(embeds.dtype, copy=False)
        elif placeholders.any() and past_length == 0:
            raise ORTModelError("The prompts hold image tokens but no pixel_values were given.")
        if self._rope is not None:
            if position_ids is None:
                position_ids = self._rotary_positions(
                    ids, attention_mask, cache, image_grid_thw, mm_token_type_ids
                )
            elif position_ids.shape[0] == 4:  # generate's: text positions first, then 3-D
                position_ids = position_ids[1:]
        # Image tokens are type 1 (they attend to each other both ways), text 0.
        types = placeholders if token_type_ids is None else _as_numpy(token_type_ids)
        logits, new_cache = self._decode(
            {"inputs_embeds": embeds}, cache, attention_mask, position_ids, types, use_cache
        )
        return CausalLMOutputWithPast(logits=torch.from_numpy(logits), cache=new_cache)

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.Tensor,
        cache: Any = None,
        past_key_values: Any = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        use_cache: bool = True,
        pixel_values: torch.Tensor | None = None,
        pixel_attention_mask: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The causal step's inputs; images only on the first step (the cache holds them after)."""
        inputs = super().prepare_inputs_for_generation(
            input_ids, cache=cache, past_key_values=past_key_values,
            attention_mask=attention_mask, token_type_ids=token_type_ids, use_cache=use_cache,
        )  # fmt: skip
        step = self._step_cache(cache, past_key_values, use_cache)
        first = step is None or step.get_seq_length() == 0
        if not first:
            inputs["token_type_ids"] = None  # generated tokens are text
        inputs["pixel_values"] = pixel_values if first else None
        inputs["pixel_attention_mask"] = pixel_attention_mask if first else None
        inputs["image_grid_thw"] = image_grid_thw if first else None
        if self._rope is not None and position_ids is not None:
            inputs["position_ids"] = position_ids[..., -inputs["input_ids"].shape[1] :]
        return inputs


def _positions_model(config: Any) -> Any:
    """The config's transformers model on the meta device: its methods, none of its weights.

    Multimodal rotary positions depend on the image grids in ways each family defines (and
    transformers keeps in the model's `get_rope_index`); running that method, rather than a
    copy of it, keeps the positions exactly the model's.
    """
    import transformers

    name = next(iter(getattr(config, "architectures", None) or []), None)
    model_class: Any = getattr(transformers, name, None) if name else None
    if model_class is None:
        model_class = transformers.AutoModelForImageTextToText._model_mapping[type(config)]
    with torch.device("meta"):
        return model_class._from_config(config)


@dataclass
class SpeechEncoderOutput(BaseModelOutput):
    """A speech encoder's states and the mask over them (padding frames are 0).

    Speech encoders that take audio of any length (Moonshine, Speech2Text) return the mask
    their decoder's cross-attention uses; the decoder step feeds it as is.
    """

    encoder_attention_mask: torch.Tensor | None = None


class _ORTEncoder:
    """The encoder graph, which GenerationMixin calls through `get_encoder()`.

    It takes token ids (and a mask), speech (`input_features` or raw `input_values`, with a
    mask where the graph takes one), `pixel_values` (image captioning) or Pix2Struct's
    `flattened_patches` (with their mask).
    """

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.main_input_name = self.input_names[0]

    def __call__(self, *args: Any, **kwargs: Any) -> BaseModelOutput:
        return self.forward(*args, **kwargs)

    def forward(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        input_features: Any = None,
        pixel_values: Any = None,
        input_values: Any = None,
        flattened_patches: Any = None,
        **kwargs: Any,
    ) -> BaseModelOutput:
        """Encode the source; other keyword arguments (return_dict, ...) are ignored."""
        feed: dict[str, np.ndarray] = {}
        floats = {
            "input_features": input_features, "pixel_values": pixel_values,
            "input_values": input_values, "flattened_patches": flattened_patches,
        }  # fmt: skip
        if self.main_input_name in floats:
            value = floats[self.main_input_name]
            if value is None:
                raise ORTModelError(f"Missing {self.main_input_name} for the encoder.")
            graph_input = self.session.get_inputs()[0]
            array = _as_numpy(value)
            if array.ndim != len(graph_input.shape):
                raise ORTModelError(
                    f"The encoder takes {self.main_input_name} of {len(graph_input.shape)} "
                    f"dimensions {tuple(graph_input.shape)}, not of shape {array.shape}: pass "
                    "what the folder's preprocessor returns."
                )
            feed[self.main_input_name] = array.astype(_numpy_type(graph_input.type), copy=False)
            if "attention_mask" in self.input_names:  # audio of any length, padded
                mask = (
                    np.ones(array.shape[:2], dtype=np.int64)
                    if attention_mask is None
                    else _as_numpy(attention_mask).astype(np.int64)
                )
                if mask.ndim == 3:  # generate() passes a spectrogram-shaped mask: per frame
                    mask = mask[:, :, -1]
                feed["attention_mask"] = mask
        else:
            if input_ids is None:
                raise ORTModelError("Missing input_ids for the encoder.")
            ids = _as_numpy(input_ids).astype(np.int64)
            feed["input_ids"] = ids
            if "attention_mask" in self.input_names:
                mask = np.ones_like(ids) if attention_mask is None else _as_numpy(attention_mask)
                feed["attention_mask"] = mask.astype(np.int64)
        outputs = [o.name for o in self.session.get_outputs()]
        try:
            values = dict(zip(outputs, self.session.run(outputs, feed), strict=True))
        except Exception as err:
            raise ORTModelError(f"ONNX Runtime failed on the encoder: {first_line(err)}") from err
        hidden = torch.from_numpy(values["last_hidden_state"])
        if "encoder_attention_mask" in values:
            frames = torch.from_numpy(values["encoder_attention_mask"])
            return SpeechEncoderOutput(last_hidden_state=hidden, encoder_attention_mask=frames)
        return BaseModelOutput(last_hidden_state=hidden)


class _ORTEncoderDecoder(ORTGenerativeModel):
    """`encoder_model.onnx` runs once per input, `decoder_model.onnx` once per step."""

    default_file = DECODER_FILE
    # Main inputs an encoder of this class may take besides `main_input_name`.
    encoder_inputs: ClassVar[tuple[str, ...]] = ()
    # GenerationMixin looks the encoder up as `self.<base_model_prefix>.encoder` or
    # `self.encoder`; ours is the latter, so the prefix names nothing.
    base_model_prefix = ""

    def __init__(
        self,
        session: ort.InferenceSession,
        config: Any,
        *,
        model_dir: Path,
        file_name: str = DECODER_FILE,
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
        # A variant's encoder is named like its decoder: decoder_model_O2.onnx pairs with
        # encoder_model_O2.onnx.
        encoder_name = encoder_file_for(file_name)
        if encoder_name == file_name:
            encoder_name = str(Path(file_name).with_name(ENCODER_FILE).as_posix())
        encoder_path = Path(model_dir) / encoder_name
        if not encoder_path.is_file():
            raise ORTModelError(f"No {encoder_name} beside {file_name} in '{model_dir}'.")
        # The caller's session options apply to both graphs.
        options = session_options if session_options is not None else self.default_session_options()
        self.encoder = _ORTEncoder(create_session(encoder_path, options, session.get_providers()))
        if self.encoder.main_input_name in self.encoder_inputs:
            # What generate() feeds it (as ORTModel does for its first input).
            self.main_input_name = self.encoder.main_input_name  # type: ignore[misc]
        elif self.encoder.main_input_name != self.main_input_name:
            raise ORTModelError(
                f"The encoder in '{model_dir}' takes {self.encoder.main_input_name}, not "
                f"{self.main_input_name}: it was exported for another task."
            )

    def get_encoder(self) -> _ORTEncoder:
        """The encoder, as GenerationMixin expects."""
        return self.encoder

    def forward(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        decoder_input_ids: Any = None,
        encoder_outputs: Any = None,
        cache: Any = None,
        past_key_values: Any = None,
        use_cache: bool | None = None,
        input_features: Any = None,
        pixel_values: Any = None,
        input_values: Any = None,
        **kwargs: Any,
    ) -> Any:
        """One decoding step (running the encoder first when no encoder_outputs are given)."""
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                input_features=input_features,
                pixel_values=pixel_values,
                input_values=input_values,
            )
        if decoder_input_ids is None:
            raise ORTModelError("Missing decoder_input_ids for the decoding step.")
        hidden = encoder_outputs[0]
        cache = self._step_cache(cache, past_key_values)
        self_cache = getattr(cache, "self_attention_cache", cache)
        ids = _as_numpy(decoder_input_ids).astype(np.int64)
        states = _as_numpy(hidden).astype(
            _numpy_type(self._input_types["encoder_hidden_states"]), copy=False
        )
        feed: dict[str, np.ndarray] = {"input_ids": ids, "encoder_hidden_states": states}
        if "encoder_attention_mask" in self.input_names:
            frames = getattr(encoder_outputs, "encoder_attention_mask", None)
            if frames is not None:  # a speech encoder's mask over its states
                mask = _as_numpy(frames).astype(np.int64)
            elif attention_mask is None:
                mask = np.ones(states.shape[:2], dtype=np.int64)
            else:
                mask = _as_numpy(attention_mask).astype(np.int64)
            feed["encoder_attention_mask"] = mask
        cross_cache = getattr(cache, "cross_attention_cache", None)
        feed.update(self._past_feed(self_cache, ids.shape[0]))
        feed.update(self._past_feed(cross_cache, ids.shape[0], self._cross_past_names))
        outputs = self._run_step(feed)
        new_cache = None
        if use_cache is not False:
            if not isinstance(cache, EncoderDecoderCache):
                cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            cache.self_attention_cache = self._store_cache(cache.self_attention_cache, outputs)
            if self._cross_present_names and cache.cross_attention_cache.get_seq_length() == 0:
                # Computed by the first step; the next ones feed these back unchanged.
                cache.cross_attention_cache = self._store_cache(
                    cache.cross_attention_cache, outputs, self._cross_present_names
                )
                cache.is_updated = dict.fromkeys(range(len(self._cross_past_names) // 2), True)
            new_cache = cache
        return Seq2SeqLMOutput(
            logits=torch.from_numpy(outputs["logits"]),
            cache=new_cache,
            encoder_last_hidden_state=torch.as_tensor(hidden),
        )

    def prepare_inputs_for_generation(
        self,
        decoder_input_ids: torch.Tensor,
        cache: Any = None,
        past_key_values: Any = None,
        attention_mask: torch.Tensor | None = None,
        encoder_outputs: Any = None,
        use_cache: bool = True,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Feed only the decoder tokens the cache has not seen."""
        cache = self._step_cache(cache, past_key_values, use_cache)
        past_length = cache.get_seq_length() if cache is not None else 0
        return {
            "decoder_input_ids": decoder_input_ids[:, past_length:],
            "encoder_outputs": encoder_outputs,
            "attention_mask": attention_mask,
            "cache": cache,
            "use_cache": use_cache,
        }


class ORTModelForSeq2SeqLM(_ORTEncoderDecoder):
    """Encoder-decoder model (T5, BART, Marian, ...); `generate()` as in transformers.

    `encoder_model.onnx` runs once per input, `decoder_model.onnx` once per step.

    Example:
        >>> model = ORTModelForSeq2SeqLM.from_pretrained("out/")  # doctest: +SKIP
        >>> model.generate(**tokenizer(["translate: hi"], return_tensors="pt"))  # doctest: +SKIP

    """

    task = "text2text-generation"
    main_input_name = "input_ids"


class ORTModelForVision2Seq(_ORTEncoderDecoder):
    """Image to text (TrOCR, Donut, Pix2Struct): `generate()`.

    `generate()` is transformers'. `encoder_model.onnx` encodes `pixel_values` once,
    `decoder_model.onnx` runs once per step.

    Example:
        >>> model = ORTModelForVision2Seq.from_pretrained("out/")  # doctest: +SKIP
        >>> model.generate(pixel_values=processor(images=image, return_tensors="pt").pixel_values)

    """

    task = "image-to-text"
    main_input_name = "pixel_values"
    encoder_inputs = ("flattened_patches",)  # Pix2Struct's patches, with their mask


class _EncoderLayout:
    """What WhisperGenerationMixin reads off `model.encoder`: the two convolutions' strides.

    They set how many log-mel frames make one 30-second window; the graph has no modules to
    read them from, so they come from the encoder input's fixed frame count.
    """

    def __init__(self, frames: int, positions: int) -> None:
        self.conv1 = SimpleNamespace(stride=(1,))
        self.conv2 = SimpleNamespace(stride=(frames // positions,))


class ORTModelForSpeechSeq2Seq(WhisperGenerationMixin, _ORTEncoderDecoder):
    """Speech recognition with an encoder-decoder export; `generate()` is transformers'.

    Whisper folders get Whisper's generate: language and task tokens, timestamps as tokens,
    long-form audio (sequential 30-second windows) and temperature fallback all come from
    `WhisperGenerationMixin`. Word-level timestamps (`return_token_timestamps`) need
    cross-attention weights the graph does not return, and are refused. Other speech
    encoder-decoders (Speech2Text's filter banks, audio of any length with a padding mask)
    get `GenerationMixin.generate`, as their PyTorch classes do.

    Example:
        >>> model = ORTModelForSpeechSeq2Seq.from_pretrained("out/")  # doctest: +SKIP
        >>> model.generate(input_features=processor(audio, return_tensors="pt").input_features)

    """

    task = "automatic-speech-recognition"
    main_input_name = "input_features"
    encoder_inputs = ("input_features", "input_values")

    @property
    def whisper_style(self) -> bool:
        """Whether the encoder takes one fixed number of log-mel frames (Whisper's layout)."""
        return (
            isinstance(self.encoder.session.get_inputs()[0].shape[-1], int)
            and hasattr(self.config, "max_source_positions")
            and "attention_mask" not in self.encoder.input_names
        )

    @functools.cached_property
    def model(self) -> SimpleNamespace:
        """What WhisperGenerationMixin reads as `self.model`: encoder strides and the config."""
        frames = self.encoder.session.get_inputs()[0].shape[-1]
        if not isinstance(frames, int):
            raise ORTModelError(f"The encoder in '{self.model_dir}' has no fixed number of frames.")
        positions = int(self.config.max_source_positions)
        return SimpleNamespace(encoder=_EncoderLayout(frames, positions), config=self.config)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """Whisper's generate for Whisper folders, transformers' plain generate otherwise."""
        if not self.whisper_style:
            return GenerationMixin.generate(self, *args, **kwargs)
        if kwargs.get("return_token_timestamps"):
            raise ORTModelError(
                "return_token_timestamps (word-level timestamps) needs cross-attention weights, "
                "which the exported decoder does not return; use return_timestamps=True instead."
            )
        return super().generate(*args, **kwargs)


def _numpy_type(ort_type: str) -> Any:
    """Numpy dtype of an ORT float input type: `tensor(float16)` -> float16."""
    return np.float16 if ort_type == "tensor(float16)" else np.float32
