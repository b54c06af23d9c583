"""Vision towers that pack every image's patches into one sequence (Qwen2-VL, GLM-4V, ...).

Their processors flatten each image into patches, `pixel_values` (patches, patch size),
and describe the images by `image_grid_thw` (images, 3): frames, height and width in
patches. The tower attends within one frame of one image at a time and places each patch by
rotary positions; transformers computes both from `image_grid_thw` in Python (a loop over
`grid_thw.tolist()` and `torch.split` per image), which no graph can hold.

transformers' `vision_utils` lets a caller pass those tensors precomputed (`position_ids`,
`cu_seqlens`, `max_seqlen`). Traced, this module computes them from `image_grid_thw` with
tensor arithmetic only (any number of images, of any sizes), and swaps the per-image split
for one attention call whose mask keeps each patch inside its own frame. Eager, it runs the
model's own `get_image_features`, so validation compares the graph with transformers' path.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

import torch

from onnxport.exporters.dummy import BATCH, PATCHES, Template

# Registered with transformers' AttentionInterface (its extension point; nothing is
# replaced). The name holds "flash" because only that branch of these towers passes the
# packed sequence to the attention function whole (the other splits it with `.tolist()`).
SEGMENT_ATTENTION = "onnxport_flash_segments"


def takes_image_grid(model: Any) -> bool:
    """Whether the model's `get_image_features` takes `image_grid_thw` (packed patches)."""
    method = getattr(model, "get_image_features", None)
    return method is not None and "image_grid_thw" in inspect.signature(method).parameters


def _segment_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    cu_seq_lens_q: torch.Tensor,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention within segments: patch i sees patch j when both lie in one frame.

    The towers hand their `cu_seqlens` to the attention function as `cu_seq_lens_q`.
    """
    from transformers.integrations.sdpa_attention import repeat_kv

    index = torch.arange(query.shape[-2], device=query.device)
    segments = (index[:, None] >= cu_seq_lens_q[None, 1:]).sum(-1)
    mask = (segments[:, None] == segments[None, :])[None, None]
    groups = query.shape[1] // key.shape[1]  # grouped-query towers (EXAONE 4.5)
    output = torch.nn.functional.scaled_dot_product_attention(
        query, repeat_kv(key, groups), repeat_kv(value, groups), attn_mask=mask, scale=scaling
    )
    return output.transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(SEGMENT_ATTENTION, _segment_attention)


def packed_layout(
    grid_thw: torch.Tensor, merge: int, patches: int, *, temporal: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary positions and `cu_seqlens` of `patches` packed patches, from `grid_thw`.

    Positions follow transformers' `get_vision_position_ids`: (h, w) per patch (t first
    with `temporal`), block-major over merge x merge blocks, repeated per frame.
    `cu_seqlens` holds the start of every frame, then `patches` to the end (patches + 1
    values in all: the frame count is data, a graph's sizes are not): transformers' own
    where each image is one frame, as its image processors make them, with empty segments
    after.
    """
    t, h, w = grid_thw.long().unbind(-1)
    sizes = t * h * w
    ends = sizes.cumsum(0)
    index = torch.arange(patches, device=grid_thw.device)
    image = (index[:, None] >= ends[None, :]).sum(-1)
    local = index - (ends - sizes)[image]
    frame_size = h[image] * w[image]
    frame, within = local // frame_size, local % frame_size
    block, offset = within // (merge * merge), within % (merge * merge)
    blocks_per_row = w[image] // merge
    rows = (block // blocks_per_row) * merge + offset // merge
    columns = (block % blocks_per_row) * merge + offset % merge
    axes = [frame, rows, columns] if temporal else [rows, columns]
    starts = torch.where(within == 0, index, torch.full_like(index, patches)).sort().values
    cu_seqlens = torch.cat([starts, index.new_full((1,), patches)]).to(torch.int32)
    return torch.stack(axes, dim=-1), cu_seqlens


def window_layout(
    grid_thw: torch.Tensor, merge: int, window: int, patch: int, patches: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`window_index` and `cu_window_seqlens` of windowed towers (Qwen2.5-VL), from the grids.

    As transformers' `get_vision_window_index`: merged tokens reordered window by window
    (windows of `window` pixels, row-major within a frame, then row-major inside each), and
    the start of every window in patches, padded with `patches` as `packed_layout` pads.
    """
    side = window // merge // patch  # merged tokens per window side
    unit = merge * merge
    tokens = patches // unit
    t, h, w = grid_thw.long().unbind(-1)
    rows_of, columns_of = h // merge, w // merge
    sizes = t * rows_of * columns_of
    ends = sizes.cumsum(0)
    index = torch.arange(tokens, device=grid_thw.device)
    image = (index[:, None] >= ends[None, :]).sum(-1)
    local = index - (ends - sizes)[image]
    height, width = rows_of[image], columns_of[image]
    frame_size = height * width
    frame_start = (ends - sizes)[image] + (local // frame_size) * frame_size
    row, column = (local % frame_size) // width, (local % frame_size) % width
    # transformers pads every side to a whole window and one more when it already is one
    per_row = (width + side - width % side) // side
    window_id = (row // side) * per_row + column // side
    most = ((rows_of + side) // side * ((columns_of + side) // side)).max()
    inside = (row % side) * side + column % side
    key = (frame_start * most + window_id) * side * side + inside
    order = torch.argsort(key)
    windows = key[order] // (side * side)
    first = torch.cat([torch.ones_like(windows[:1], dtype=torch.bool), windows[1:] != windows[:-1]])
    starts = torch.where(first, index * unit, torch.full_like(index, patches)).sort().values
    cu_window_seqlens = torch.cat([starts, index.new_full((1,), patches)]).to(torch.int32)
    return order, cu_window_seqlens


@contextlib.contextmanager
def attention_implementation(config: Any, implementation: str) -> Iterator[None]:
    """`config` (the tower's own) set to `implementation` while tracing, then restored."""
    before = config._attn_implementation
    config._attn_implementation = implementation
    try:
        yield
    finally:
        config._attn_implementation = before


def takes_grid(model: Any) -> bool:
    """Whether `model` is a packed tower itself (its forward takes `grid_thw`)."""
    return "grid_thw" in inspect.signature(model.forward).parameters


class _Tower:
    """How to run one packed tower traced: its merge size, position axes and windows."""

    def __init__(self, tower: Any) -> None:
        from onnxport.exporters import modality

        _register()
        self.tower = tower
        config = tower.config
        self.merge = int(getattr(config, "spatial_merge_size", 1) or 1)
        frames = int(getattr(config, "temporal_patch_size", 1) or 1)
        patch = int(config.patch_size)
        self.patch_size = modality.num_channels(config) * frames * patch * patch
        self.temporal = bool(getattr(tower, "include_temporal", False))
        window = getattr(tower, "window_size", None)
        self.window = None if not window else (int(window), int(tower.patch_size))

    def traced(self, patches: torch.Tensor, grid_thw: torch.Tensor) -> Any:
        """The tower's output, with every grid-derived tensor computed in graph form."""
        positions, cu_seqlens = packed_layout(
            grid_thw, self.merge, patches.shape[0], temporal=self.temporal
        )
        extra: dict[str, Any] = {}
        if self.window is not None:  # windowed attention in most layers (Qwen2.5-VL)
            extra["window_index"], extra["cu_window_seqlens"] = window_layout(
                grid_thw, self.merge, *self.window, patches.shape[0]
            )
            extra["max_window_seqlen"] = 0
        with attention_implementation(self.tower.config, SEGMENT_ATTENTION):
            return self.tower(
                patches.to(self.tower.dtype), grid_thw=grid_thw,
                position_ids=positions, cu_seqlens=cu_seqlens, max_seqlen=0, **extra,
            )  # fmt: skip


class PackedTower(torch.nn.Module):
    """A bare packed tower (Qwen2.5-VL's vision model): patches and `grid_thw` in.

    Its outputs come out as they are: per-patch states and merged tokens.
    """

    def __init__(self, tower: Any) -> None:
        super().__init__()
        self.tower = tower
        self.config = tower.config
        self.runner = _Tower(tower)
        accepted = inspect.signature(tower.forward).parameters
        self.patches = "pixel_values" if "pixel_values" in accepted else "hidden_states"
        self.input_templates: dict[str, Template] = {
            self.patches: (PATCHES, self.runner.patch_size),
            "grid_thw": (BATCH, 3),
        }

    def input_names(self) -> list[str]:
        """The graph's inputs."""
        return [self.patches, "grid_thw"]

    def forward(
        self,
        grid_thw: torch.Tensor,
        hidden_states: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> dict[str, torch.Tensor]:
        """The tower's tensor outputs."""
        patches = hidden_states if hidden_states is not None else pixel_values
        assert patches is not None
        if torch.compiler.is_exporting():
            output = self.runner.traced(patches, grid_thw)
        else:
            output = self.tower(**{self.patches: patches}, grid_thw=grid_thw)
        return {k: v for k, v in output.items() if isinstance(v, torch.Tensor)}


class PackedVisionPart(torch.nn.Module):
    """`pixel_values` (patches, patch size) and `image_grid_thw` -> `image_features`.

    The features are one row per image token, all images' in order (as the model's
    forward concatenates them before splicing).
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.config = model.config
        self.runner = _Tower(model.get_encoder(modality="image"))
        self.merge = self.runner.merge
        self.input_templates: dict[str, Template] = {
            "pixel_values": (PATCHES, self.runner.patch_size),
            "image_grid_thw": (BATCH, 3),
        }
        self.one_image = False  # every image in one call: nothing to loop

    def input_names(self) -> list[str]:
        """The graph's inputs."""
        return ["pixel_values", "image_grid_thw"]

    def forward(
        self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor, return_dict: bool = True
    ) -> dict[str, torch.Tensor]:
        """`image_features`: (image tokens of all images, hidden size)."""
        if torch.compiler.is_exporting():
            return {
                "image_features": self.runner.traced(pixel_values, image_grid_thw).pooler_output
            }
        output = self.model.get_image_features(
            pixel_values=pixel_values, image_grid_thw=image_grid_thw, return_dict=True
        )
        features = output.pooler_output
        if isinstance(features, (list, tuple)):
            features = torch.cat(list(features))
        return {"image_features": features}
