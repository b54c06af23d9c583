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
