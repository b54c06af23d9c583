"""Decoder-only export with a key/value cache, and generate() through ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

import onnxport
from model_table import DECODER_CASES, DECODER_INIT, DECODER_SLOW_CASES
from onnxport.coverage.support import TESTED_DECODERS
from onnxport.errors import ORTModelError
from onnxport.exporters.dummy import PAST, TOTAL

PROMPTS = ["the quick brown fox jumps over", "paris"]


def test_table_covers_every_tested_decoder() -> None:
    assert set(DECODER_CASES) == set(TESTED_DECODERS)


def _pair(model_type: str, checkpoint, exported) -> tuple[Path, Path]:
    return checkpoint(model_type, "text-generation"), exported(model_type, "text-generation")


def _prompts(folder: Path) -> tuple[object, dict[str, torch.Tensor]]:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    return tokenizer, tokenizer(PROMPTS, return_tensors="pt", padding=True)


@pytest.mark.parametrize(
    "model_type",
    [
        *sorted(DECODER_CASES),
        *(pytest.param(m, marks=pytest.mark.slow) for m in sorted(DECODER_SLOW_CASES)),
    ],
)
def test_export_and_greedy_parity(model_type: str, checkpoint, exported) -> None:
    ckpt, folder = _pair(model_type, checkpoint, exported)
    spec = onnxport.get_onnx_config(AutoModelForCausalLM.from_pretrained(ckpt), "text-generation")
    assert spec.decoder is not None
    layers = spec.decoder.num_layers
    assert spec.output_names == ["logits"] + [
        f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")
    ]
    assert spec.inputs["past_key_values.0.key"] == {0: "batch_size", 2: PAST}
    assert spec.outputs["present.0.key"][2] == TOTAL

    tokenizer, inputs = _prompts(folder)
    assert inputs["attention_mask"][1, 0] == 0  # really left-padded
    pt_model = AutoModelForCausalLM.from_pretrained(ckpt).eval()
    ort_model = onnxport.ORTModelForCausalLM.from_pretrained(folder)
    settings = {"max_new_tokens": 20, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    expected = pt_model.generate(**inputs, **settings)
    actual = ort_model.generate(**inputs, **settings)
    assert torch.equal(actual, expected)
    new_tokens = expected[:, -20:]
    for row in new_tokens:
        assert len(set(row.tolist())) >= 4, f"degenerate greedy path: {row.tolist()}"


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_generation_modes(model_type: str, checkpoint, exported) -> None:
    ckpt, folder = _pair(model_type, checkpoint, exported)
    tokenizer, inputs = _prompts(folder)
    pt_model = AutoModelForCausalLM.from_pretrained(ckpt).eval()
    ort_model = onnxport.ORTModelForCausalLM.from_pretrained(folder)
    pad = {"pad_token_id": tokenizer.pad_token_id}

    greedy = {"max_new_tokens": 12, "do_sample": False, **pad}
    expected = pt_model.generate(**inputs, **greedy)
    assert torch.equal(ort_model.generate(**inputs, **greedy, use_cache=False), expected)

    beams = {"max_new_tokens": 10, "num_beams": 3, "do_sample": False, **pad}
    assert torch.equal(ort_model.generate(**inputs, **beams), pt_model.generate(**inputs, **beams))

    sampling = {"max_new_tokens": 10, "do_sample": True, "top_k": 20, **pad}
    torch.manual_seed(7)
    sampled_pt = pt_model.generate(**inputs, **sampling)
    torch.manual_seed(7)
    assert torch.equal(ort_model.generate(**inputs, **sampling), sampled_pt)

    stop = int(expected[0, inputs["input_ids"].shape[1] + 2])
    with_eos = {"max_new_tokens": 12, "do_sample": False, "eos_token_id": stop, **pad}
    assert torch.equal(
        ort_model.generate(**inputs, **with_eos), pt_model.generate(**inputs, **with_eos)
    )


def test_text_generation_pipelines(checkpoint, exported) -> None:
    ckpt, folder = _pair("llama", checkpoint, exported)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    settings = {"max_new_tokens": 8, "do_sample": False}
    pt_pipe = transformers.pipeline(
        "text-generation", model=AutoModelForCausalLM.from_pretrained(ckpt), tokenizer=tokenizer
    )
    expected = pt_pipe(PROMPTS[0], **settings)
    assert onnxport.pipeline("text-generation", model=folder)(PROMPTS[0], **settings) == expected
    ort_model = onnxport.ORTModelForCausalLM.from_pretrained(folder)
    theirs = transformers.pipeline("text-generation", model=ort_model, tokenizer=tokenizer)
    assert theirs(PROMPTS[0], **settings) == expected


def _greedy(ckpt: Path, folder: Path, new_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy tokens of PyTorch's checkpoint and of its export on the left-padded prompts."""
    tokenizer, inputs = _prompts(folder)
    settings = {"max_new_tokens": new_tokens, "do_sample": False,
                "pad_token_id": tokenizer.pad_token_id}  # fmt: skip
    expected = AutoModelForCausalLM.from_pretrained(ckpt).eval().generate(**inputs, **settings)
    actual = onnxport.ORTModelForCausalLM.from_pretrained(folder).generate(**inputs, **settings)
    return expected, actual


@pytest.mark.parametrize(
    ("model_type", "init"),
    [("megatron-bert", 0.5), pytest.param("rembert", 0.2, marks=pytest.mark.slow)],
)
def test_encoder_architecture_as_a_decoder(model_type: str, init: float, tmp_path: Path) -> None:
    """BERT-like causal LMs (is_decoder=True) return an EncoderDecoderCache without
    cross-attention; their self-attention cache alone is the graph's past."""
    from onnxport.testing import save_tiny_checkpoint

    ckpt = save_tiny_checkpoint(
        model_type, "text-generation", tmp_path / "ckpt", initializer_range=init
    )
    folder = tmp_path / "onnx"
    onnxport.export(ckpt, folder, task="text-generation")
    expected, actual = _greedy(ckpt, folder, 12)
    assert torch.equal(actual, expected)
    assert len(set(expected[0, -12:].tolist())) >= 3, "degenerate greedy path"


@pytest.mark.parametrize(
    "model_type", ["mamba2", pytest.param("qwen3_next", marks=pytest.mark.slow)]
)
def test_a_state_without_graph_form_exports_without_a_cache(model_type: str, tmp_path) -> None:
    """Qwen3-Next's linear attention and Mamba-2 keep recurrent states onnxport cannot export
    yet: the graph takes the whole sequence each step, and generate() gives PyTorch's tokens."""
    import onnx

    from onnxport.testing import save_tiny_checkpoint

    ckpt = save_tiny_checkpoint(model_type, "text-generation", tmp_path / "ckpt", **DECODER_INIT)
    folder = tmp_path / "onnx"
    result = onnxport.export(ckpt, folder, task="text-generation")
    assert result.spec.decoder is None
    assert result.spec.input_names[:2] == ["input_ids", "attention_mask"]
    assert not [name for name in result.spec.output_names if name.startswith("present.")]
    metadata = {p.key: p.value for p in onnx.load(str(result.onnx_path)).metadata_props}
    assert metadata["cache"] == "none"
    expected, actual = _greedy(ckpt, folder, 10)
    assert torch.equal(actual, expected)
    assert len(set(expected[0, -10:].tolist())) >= 3, "degenerate greedy path"


def test_causal_lm_class_refuses_an_encoder_export(exported) -> None:
    with pytest.raises(ORTModelError, match="exported for feature-extraction"):
        onnxport.ORTModelForCausalLM.from_pretrained(exported("bert", "feature-extraction"))


def test_sliding_window_limit_is_recorded_and_enforced(checkpoint, exported) -> None:
    import onnx

    folder = exported("mistral", "text-generation")
    metadata = {p.key: p.value for p in onnx.load(str(folder / "model.onnx")).metadata_props}
    window = AutoModelForCausalLM.from_pretrained(checkpoint("mistral", "text-generation"))
    assert metadata["max_total_length"] == str(window.config.sliding_window - 1)
    model = onnxport.ORTModelForCausalLM.from_pretrained(folder)
    assert model.max_total_length == window.config.sliding_window - 1
    model.max_total_length = 12  # as if the window were 13 tokens
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with pytest.raises(ORTModelError, match=r"sliding-window attention.*up to 12 tokens"):
        model.generate(input_ids=ids, max_new_tokens=10, do_sample=False, pad_token_id=0)
    assert onnxport.ORTModelForCausalLM.from_pretrained(folder).max_total_length is not None


def test_window_too_small_to_export_is_refused(tmp_path: Path) -> None:
    from onnxport.errors import SpecError
    from onnxport.testing import save_tiny_checkpoint

    ckpt = save_tiny_checkpoint("mistral", "text-generation", tmp_path / "ckpt", sliding_window=4)
    with pytest.raises(
        SpecError, match="'mistral' uses sliding-window attention with a window of 4"
    ):
        onnxport.export(ckpt, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_llama_has_no_window_limit(exported) -> None:
    model = onnxport.ORTModelForCausalLM.from_pretrained(exported("llama", "text-generation"))
    assert model.max_total_length is None


def test_fp16_decoder_generates_with_a_float16_cache(tmp_path: Path) -> None:
    from onnxport.testing import save_tiny_checkpoint

    # At transformers' usual weight scale: the table's chaotic one (initializer_range 0.5)
    # moves logits by more than fp16's tolerance.
    ckpt = save_tiny_checkpoint("llama", "text-generation", tmp_path / "ckpt")
    folder = tmp_path / "fp16"
    result = onnxport.export(ckpt, folder, task="text-generation", dtype="fp16")
    assert result.validation is not None
    assert result.validation.passed
    model = onnxport.ORTModelForCausalLM.from_pretrained(folder)
    assert model.dtype == torch.float16  # the graph's float type, not a float32 default
    tokenizer, inputs = _prompts(folder)
    settings = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    # The cache comes back float16 and must go in again as float16 at every step.
    generated = model.generate(**inputs, **settings)
    assert generated.shape == (2, inputs["input_ids"].shape[1] + 6)
    step = model(**inputs)
    assert step.logits.dtype == torch.float16
    pt_model = AutoModelForCausalLM.from_pretrained(ckpt).eval()
    with torch.no_grad():
        expected = pt_model(**inputs).logits[:, -1]
    # fp16 export's own validation tolerance (atol 1e-2), on the last position.
    torch.testing.assert_close(step.logits[:, -1].float(), expected, atol=1e-2, rtol=1e-2)
