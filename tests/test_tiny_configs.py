"""Tiny configs must stay valid configs: transformers 5 validates them when they are loaded."""

from __future__ import annotations

import pytest
from transformers import AutoConfig

from onnxport.testing import tiny_config


@pytest.mark.parametrize(
    "model_type",
    ["axk2", "gpt_neo", "xlnet", "olmo_hybrid", "mamba2", "bamba", "esmc", "granite_docling",
     "laguna", "moshi", "deepseek_v32"],
)  # fmt: skip
def test_tiny_config_survives_a_save_and_load(model_type: str) -> None:
    config = tiny_config(model_type)
    reloaded = type(config).from_dict(config.to_dict())  # runs the config's validators
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads"):
        assert getattr(reloaded, key, None) == getattr(config, key, None)


def test_per_layer_lists_follow_the_depth_and_keep_every_kind() -> None:
    original = AutoConfig.for_model("olmo_hybrid")
    config = tiny_config(original)
    assert len(config.layer_types) == config.num_hidden_layers == 2
    assert set(config.layer_types) == set(original.layer_types)  # attention and linear layers


def test_widths_tied_across_sub_configs_follow_the_shrink() -> None:
    config = tiny_config("granite_docling")
    assert config.vision_config.out_hidden_size == config.text_config.hidden_size


@pytest.mark.parametrize("model_type", ["layoutlmv3", "lilt"])
def test_document_models_export_with_boxes(model_type: str) -> None:
    """Their 2-D layout embeddings split the hidden size in six: the tiny config must allow it,
    and the export derives `bbox` (and LayoutLMv3's image) and validates."""
    from onnxport.coverage.runner import PASS, run_pair

    result = run_pair(model_type, "token-classification")
    assert result.status == PASS, result.reason


def test_multimodal_rotary_sections_fit_the_shrunk_heads() -> None:
    """Qwen2-VL's config sets no mrope_section; its rotary code falls back to [16, 24, 24],
    which must shrink with the heads (the text path failed in split_with_sizes)."""
    from onnxport.coverage.runner import PASS, run_pair

    text = tiny_config("qwen2_vl").get_text_config()
    head_dim = text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    result = run_pair("qwen2_vl", "feature-extraction")
    assert result.status == PASS, result.reason


def test_heterogeneous_configs_keep_their_per_layer_overrides() -> None:
    """Gemma 4's full-attention layers have twice the head size of its sliding ones: the tiny
    config keeps one layer of each kind and the override, scaled with the global head size."""
    config = tiny_config("gemma4_text")
    assert config.layer_types == ["sliding_attention", "full_attention"]
    sliding, full = config.per_layer_config[0], config.per_layer_config[1]
    assert full.head_dim == 2 * sliding.head_dim == 2 * (config.hidden_size // 4)
    reloaded = type(config).from_dict(config.to_dict())
    assert reloaded.per_layer_config[1].head_dim == full.head_dim


def test_grouped_convolutions_follow_the_width_they_group() -> None:
    """Mimi's upsampling groups equal its hidden size (a depthwise convolution)."""
    config = tiny_config("mimi")
    assert config.upsample_groups == config.hidden_size
