"""optimize / quantize / benchmark on tiny models: files written, drift bounded, ORT loads them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

import onnxport
from onnxport.cli.main import main
from onnxport.errors import OptimizationError, QuantizationError, VariantError
from onnxport.sessions import CPU, create_session
from onnxport.variants.guard import (
    PADDED_BATCH,
    builtin_texts,
    compare,
    encoder_feeds,
    load_tokenizer,
)
from onnxport.variants.optimize import (
    basic_optimizations,
    fuse,
    optimize,
    optimize_graph,
    split_skip_norms,
)
from onnxport.variants.quantize import (
    _matmuls,
    _quantize_int8_dynamic,
    _sample_feeds,
    collect_activations,
    fold_into_values,
    gelu_fed,
    gptq_round,
    per_row_int8,
    quantize,
    smooth,
)

PROMPTS = ["the quick brown fox", "paris is"]


@pytest.fixture
def bert_dir(tmp_path: Path, exported) -> Path:
    """A private copy of the tiny BERT export, so variants written into it stay per test."""
    folder = tmp_path / "bert"
    shutil.copytree(exported("bert", "feature-extraction"), folder)
    return folder


def _ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def _embeddings(model, tokenizer) -> torch.Tensor:
    inputs = tokenizer(["where is the station", "hi"], return_tensors="pt", padding=True)
    return model(**inputs).last_hidden_state * inputs["attention_mask"][..., None]


def test_optimize_levels_fuse_and_match_pytorch(bert_dir: Path, checkpoint) -> None:
    tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    expected = _embeddings(
        AutoModel.from_pretrained(checkpoint("bert", "feature-extraction")), tokenizer
    )
    o2 = optimize(bert_dir, 2)
    assert o2.files == (bert_dir / "model_O2.onnx",)
    # Per layer: one attention, one GELU, two skip + layer norms (after attention and FFN),
    # written for CPU as Sum + LayerNormalization (ONNX Runtime's CPU SkipLayerNormalization
    # is the slower kernel, and it does not fuse a Sum back into one).
    expected_counts = {
        "attention": 2,
        "bias_gelu": 2,
        "skip_layer_normalization": 4,
        "skip_layer_normalization_split_for_cpu": 4,
    }
    assert {k: o2.fusions.get(k) for k in expected_counts} == expected_counts
    ops = _ops(bert_dir / "model_O2.onnx")
    assert {"Attention", "Sum", "LayerNormalization", "BiasGelu"} <= ops
    assert "SkipLayerNormalization" not in ops
    assert o2.accuracy is not None
    assert o2.accuracy.max_abs_diff < 1e-4
    model = onnxport.ORTModelForFeatureExtraction.from_pretrained(
        bert_dir, file_name="model_O2.onnx"
    )
    torch.testing.assert_close(_embeddings(model, tokenizer), expected, atol=1e-4, rtol=1e-4)

    o3 = optimize(bert_dir, 3)
    assert "FastGelu" in _ops(bert_dir / "model_O3.onnx")
    assert o3.accuracy is not None
    assert o3.accuracy.min_cosine >= 0.99
    o1 = optimize(bert_dir, 1, bert_dir.parent / "o1")
    assert (bert_dir.parent / "o1" / "model.onnx").is_file()  # the copy keeps the export
    assert o1.accuracy is not None
    assert o1.accuracy.max_abs_diff < 1e-5


def test_skip_norms_stay_fused_for_cuda_and_split_ones_run_unfused(bert_dir: Path) -> None:
    source = onnx.load(str(bert_dir / "model.onnx"))
    cuda, counts = optimize_graph(source, 2, device="cuda")
    assert counts["skip_layer_normalization"] == 4
    assert "skip_layer_normalization_split_for_cpu" not in counts
    assert "SkipLayerNormalization" in {n.op_type for n in cuda.graph.node}
    # Written as Sum: ONNX Runtime, loading the graph, must not fuse it back.
    split = onnx.ModelProto()
    split.CopyFrom(cuda)
    assert split_skip_norms(split) == 4
    session = create_session(bert_dir / "model.onnx", None, CPU)
    feeds = encoder_feeds(
        session, load_tokenizer(bert_dir), ["a short one", "and a longer text here"]
    )
    expected = session.run(None, feeds)[0]
    for graph in (cuda, split):
        path = bert_dir.parent / "split.onnx"
        onnx.save(graph, str(path))
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(bert_dir.parent / "loaded.onnx")
        got = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(got.run(None, feeds)[0], expected, atol=1e-4)
    loaded = {n.op_type for n in onnx.load(str(bert_dir.parent / "loaded.onnx")).graph.node}
    assert "SkipLayerNormalization" not in loaded
    assert "LayerNormalization" in loaded


def test_o4_needs_cuda_and_writes_nothing(
    bert_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sorted(p.name for p in bert_dir.iterdir())
    assert main(["optimize", str(bert_dir), "-O", "4"]) == 2
    assert "pays off on CUDA only" in capsys.readouterr().err
    assert sorted(p.name for p in bert_dir.iterdir()) == before


def test_optimized_decoder_generates_the_same_tokens(tmp_path: Path, exported, checkpoint) -> None:
    folder = tmp_path / "llama"
    shutil.copytree(exported("llama", "text-generation"), folder)
    result = optimize(folder, 2)
    # Generation graphs are exported at opset 23, whose RotaryEmbedding, RMSNormalization and
    # Attention (with the cache) torch.onnx writes itself: O2 finds them fused already.
    ops = {node.op_type for node in onnx.load(str(folder / "model_O2.onnx")).graph.node}
    assert {"RotaryEmbedding", "Attention", "RMSNormalization"} <= ops
    assert result.accuracy is not None
    assert result.accuracy.token_agreement == 1.0
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    inputs = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    pt_model = AutoModelForCausalLM.from_pretrained(checkpoint("llama", "text-generation"))
    ort_model = onnxport.ORTModelForCausalLM.from_pretrained(folder, file_name="model_O2.onnx")
    greedy = {"max_new_tokens": 12, "do_sample": False}
    assert torch.equal(
        ort_model.generate(**inputs, **greedy), pt_model.generate(**inputs, **greedy)
    )


def test_optimize_fuses_rotary_embeddings_of_an_opset_18_decoder(
    tmp_path: Path, checkpoint
) -> None:
    """At opset 18 the rotary embedding is plain ops, which onnxscript's rules fuse."""
    folder = tmp_path / "llama18"
    onnxport.export(checkpoint("llama", "text-generation"), folder, opset=18)
    result = optimize(folder, 2)
    assert result.fusions.get("rotary_embedding", 0) > 0
    assert result.accuracy is not None
    assert result.accuracy.token_agreement == 1.0


def test_optimized_seq2seq_pairs_encoder_and_decoder(tmp_path: Path, exported, checkpoint) -> None:
    folder = tmp_path / "t5"
    shutil.copytree(exported("t5", "text2text-generation"), folder)
    result = optimize(folder, 2)
    assert {p.name for p in result.files} == {"encoder_model_O2.onnx", "decoder_model_O2.onnx"}
    tokenizer = AutoTokenizer.from_pretrained(folder)
    inputs = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    pt_model = AutoModelForSeq2SeqLM.from_pretrained(checkpoint("t5", "text2text-generation"))
    ort_model = onnxport.ORTModelForSeq2SeqLM.from_pretrained(
        folder, file_name="decoder_model_O2.onnx"
    )
    assert ort_model.encoder.session._model_path.endswith("encoder_model_O2.onnx")
    greedy = {"max_new_tokens": 10, "do_sample": False}
    assert torch.equal(
        ort_model.generate(**inputs, **greedy), pt_model.generate(**inputs, **greedy)
    )


def test_int8_dynamic_is_guarded_and_loads(bert_dir: Path) -> None:
    result = quantize(bert_dir, "int8-dynamic")
    path = bert_dir / "model_int8.onnx"
    assert result.files == (path,)
    ops = _ops(path)
    assert "MatMulInteger" in ops
    assert "MultiHeadAttention" in ops  # Q, K, V stay separate MatMuls, so they are quantized
    assert result.quantized_nodes == 12  # 6 MatMuls per layer, 2 layers
    assert result.accuracy is not None
    assert result.accuracy.min_cosine >= 0.99
    model = onnxport.ORTModelForFeatureExtraction.from_pretrained(bert_dir, file_name=path.name)
    reference = onnxport.ORTModelForFeatureExtraction.from_pretrained(bert_dir)
    tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    a, b = _embeddings(reference, tokenizer), _embeddings(model, tokenizer)
    cosine = torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1))
    assert cosine.min() > 0.99


def test_int8_feed_forward_outputs_per_row_and_gptq_weights(
    bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rounded: list[np.ndarray] = []

    def spy(*args, **kwargs):  # GPTQ's codes must be the ones written
        codes = gptq_round(*args, **kwargs)
        rounded.append(codes)
        return codes

    monkeypatch.setattr("onnxport.variants.quantize.gptq_round", spy)
    result = quantize(bert_dir, "int8-dynamic")
    model = onnx.load(str(bert_dir / "model_int8.onnx"))
    per_row = [n for n in model.graph.node if n.op_type == "MatMulIntegerToFloat"]
    assert len(per_row) == 2  # one feed-forward output per layer
    assert {"QuantizeLinear", "ReduceMax"} <= {n.op_type for n in model.graph.node}
    assert result.quantized_nodes == 12
    assert len(rounded) == 12
    written = [numpy_helper.to_array(i) for i in model.graph.initializer if i.data_type == 3]
    for codes in rounded:
        assert any(w.shape == codes.shape and np.array_equal(w, codes) for w in written)
    model_path = bert_dir / "model_int8.onnx"
    ort_model = onnxport.ORTModelForFeatureExtraction.from_pretrained(
        bert_dir, file_name=model_path.name
    )
    tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    reference = onnxport.ORTModelForFeatureExtraction.from_pretrained(bert_dir)
    a, b = _embeddings(reference, tokenizer), _embeddings(ort_model, tokenizer)
    cosine = torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1))
    assert cosine.min() > 0.99


def _gelu_matmul(tmp_path: Path, weight: np.ndarray) -> onnx.ModelProto:
    """x -> Gelu -> MatMul(weight): the shape of a feed-forward output."""
    graph = helper.make_graph(
        [
            helper.make_node("Gelu", ["x"], ["g"], "gelu", domain="com.microsoft"),
            helper.make_node("MatMul", ["g", "w"], ["mm"], "ffn_out"),
            helper.make_node("Add", ["mm", "bias"], ["y"], "ffn_bias"),
        ],
        "ffn",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["b", "s", weight.shape[0]])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(np.linspace(-1, 1, weight.shape[1], dtype=np.float32), "bias"),
        ],
    )
    for name in ("g", "mm"):  # the contrib Gelu's output type, for ONNX Runtime's quantizer
        graph.value_info.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return _run_feeds(model, {"x": x})


def test_per_row_int8_keeps_every_token_precise_next_to_loud_ones(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(64, 16)).astype(np.float32)
    x = rng.normal(size=(2, 6, 64)).astype(np.float32)
    x[0, 0] *= 200  # one loud token: with one scale per batch it sets every token's step
    graph = _gelu_matmul(tmp_path, weight)
    expected = _run(graph, x)
    rows = onnx.ModelProto()
    rows.CopyFrom(graph)
    assert [n.name for n in gelu_fed(rows)] == ["ffn_out"]
    assert per_row_int8(rows, {"ffn_out"}, {}) == 1
    assert "w" not in {i.name for i in rows.graph.initializer}  # the fp32 weight is gone
    assert "ffn_bias" not in {n.name for n in rows.graph.node}  # folded into the correction
    got = _run(rows, x)
    assert got.shape == expected.shape
    error = np.linalg.norm(got - expected, axis=-1) / np.linalg.norm(expected, axis=-1)
    assert error.max() < 0.02  # every token, the quiet ones included
    per_tensor = _quantize_int8_dynamic(graph, [])
    shared = np.linalg.norm(_run(per_tensor, x) - expected, axis=-1)
    assert (shared / np.linalg.norm(expected, axis=-1)).max() > 0.1  # what per-row avoids


def test_attention_output_smoothing_folds_exactly_into_the_values(bert_dir: Path) -> None:
    model = basic_optimizations(fuse(onnx.load(str(bert_dir / "model.onnx")), pack_qkv=False)[0])
    rng = np.random.default_rng(0)
    for node in model.graph.node:  # a random model's biases are 0: give them values
        if node.op_type == "MultiHeadAttention":
            size = next(i.dims[0] for i in model.graph.initializer if i.name == node.input[3])
            bias = rng.normal(size=size).astype(np.float32)
            model.graph.initializer.append(numpy_helper.from_array(bias, f"{node.name}_b"))
            node.input[3] = f"{node.name}_b"
    texts = ["a short one", "and a rather longer text than that"]
    feeds = list(_sample_feeds(bert_dir / "model.onnx", bert_dir, texts))
    inputs = sorted({n.input[0] for n in _matmuls(model)})
    smooth(model, collect_activations(model, feeds, inputs))
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    assert fold_into_values(folded) == 2  # one attention per layer
    assert (
        sum(n.op_type == "Mul" for n in folded.graph.node)
        == sum(n.op_type == "Mul" for n in model.graph.node) - 2
    )
    session = create_session(bert_dir / "model.onnx", None, CPU)
    batch = encoder_feeds(session, load_tokenizer(bert_dir), texts)
    expected = _run_feeds(model, batch)
    np.testing.assert_allclose(_run_feeds(folded, batch), expected, atol=1e-5)


def _run_feeds(model: onnx.ModelProto, feeds: dict) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})[0]


def test_gptq_rounding_beats_rounding_to_nearest_on_unseen_inputs() -> None:
    rng = np.random.default_rng(1)
    mixing = rng.normal(size=(8, 48))  # correlated inputs, as a layer's are

    def inputs(n: int) -> np.ndarray:
        return rng.normal(size=(n, 8)) @ mixing + 0.1 * rng.normal(size=(n, 48))

    weight = rng.normal(size=(48, 24)).astype(np.float32)
    scale = np.abs(weight).max(0) / 127
    calibration = inputs(2000)
    codes = gptq_round(weight, scale, calibration.T @ calibration)
    assert codes.dtype == np.int8
    assert np.abs(codes.astype(int) - np.round(weight / scale)).max() <= 127
    unseen = inputs(500)
    exact = unseen @ weight
    nearest = np.linalg.norm(unseen @ (np.round(weight / scale) * scale) - exact)
    gptq = np.linalg.norm(unseen @ (codes * scale) - exact)
    assert gptq < 0.5 * nearest  # measured: 0.28


def test_guard_keeps_sensitive_matmuls_in_fp32_or_fails_cleanly(bert_dir: Path) -> None:
    # A target the all-int8 model misses: the guard must exclude nodes until it is met.
    loose = quantize(bert_dir, "int8-dynamic", min_cosine=0.5, smoothing=False)
    assert loose.accuracy is not None
    assert not loose.excluded
    target = 1 - (1 - loose.accuracy.min_cosine) / 4
    strict = quantize(bert_dir, "int8-dynamic", min_cosine=target, smoothing=False)
    assert strict.excluded
    assert strict.accuracy is not None
    assert strict.accuracy.min_cosine >= target
    assert strict.quantized_nodes == 12 - len(strict.excluded)
    # An impossible one fails with one message and leaves no file behind.
    (bert_dir / "model_int8.onnx").unlink()
    with pytest.raises(QuantizationError, match=r"cannot reach cosine 1\.0"):
        quantize(bert_dir, "int4-weight-only", min_cosine=1.0)
    assert not (bert_dir / "model_int4.onnx").exists()
    assert not list(bert_dir.glob(".variants.*"))


def test_int8_static_calibrates_from_a_file_and_a_dataset(bert_dir: Path, tmp_path: Path) -> None:
    texts = tmp_path / "calib.txt"
    texts.write_text("good tools make hard work easy\nwhere is the station\ncats sleep\n")
    result = quantize(bert_dir, "int8-static", calibration_file=texts, min_cosine=0.98)
    assert "QuantizeLinear" in _ops(bert_dir / "model_int8_static.onnx")
    assert result.accuracy is not None
    table = tmp_path / "calib.csv"
    table.write_text("sentence\nthe quick brown fox\nparis is the capital\n")
    from_dataset = quantize(
        bert_dir,
        "int8-static",
        calibration_dataset=str(table),
        calibration_column="sentence",
        min_cosine=0.98,
        force=True,
    )
    assert from_dataset.accuracy is not None
    with pytest.raises(VariantError, match="no column 'text'"):
        quantize(bert_dir, "int8-static", calibration_dataset=str(table))


def test_int4_weight_only_quantizes_every_matmul_within_the_guard(tmp_path: Path) -> None:
    from onnxport.testing import save_tiny_checkpoint
    from onnxport.variants.quantize import DEFAULT_MIN_COSINE, _matmuls

    # Weights at transformers' usual scale (initializer_range 0.02), not the model table's 0.5:
    # that one makes the random model chaotic (int4 leaves cosine 0.63 there), which says
    # nothing about int4 on a trained model. Measured here: cosine min 0.993 on the built-in
    # texts, 0.992-0.995 per prompt below.
    checkpoint = save_tiny_checkpoint(
        "llama", "text-generation", tmp_path / "ckpt", num_key_value_heads=2
    )
    folder = tmp_path / "llama"
    onnxport.export(checkpoint, folder, task="text-generation")
    matmuls = len(_matmuls(onnx.load(str(folder / "model.onnx"))))
    # At the guard's own default for int4 (0.95) no MatMul needs to stay in fp32.
    result = quantize(folder, "int4-weight-only")
    threshold = DEFAULT_MIN_COSINE["int4-weight-only"]
    assert result.accuracy is not None
    assert result.accuracy.min_cosine >= threshold
    assert result.excluded == ()
    assert result.quantized_nodes == matmuls == 15
    ops = [node.op_type for node in onnx.load(str(folder / "model_int4.onnx")).graph.node]
    assert ops.count("MatMulNBits") == matmuls
    assert "MatMul" not in ops
    # The runtime class on the int4 file, against the fp32 export, prompt by prompt. Greedy
    # tokens are not compared: a tiny random model's top logits lie closer together
    # (0.002-0.05) than int4 moves them (up to 0.05), so ties flip either way.
    tokenizer = AutoTokenizer.from_pretrained(folder)
    fp32 = onnxport.ORTModelForCausalLM.from_pretrained(folder)
    int4 = onnxport.ORTModelForCausalLM.from_pretrained(folder, file_name="model_int4.onnx")
    for prompt in PROMPTS:
        inputs = tokenizer([prompt], return_tensors="pt")
        expected = fp32(**inputs).logits[0, -1].double()
        got = int4(**inputs).logits[0, -1].double()
        assert torch.nn.functional.cosine_similarity(got, expected, dim=0) >= threshold
        generated = int4.generate(**inputs, max_new_tokens=4, do_sample=False)
        assert generated.shape == (1, inputs["input_ids"].shape[1] + 4)


def test_int4_quantizer_leaves_the_fp32_graph_as_it_was(bert_dir: Path) -> None:
    from onnxport.variants.quantize import _QUANTIZERS, _matmuls

    # The guard quantizes one fused graph again and again, keeping more MatMuls in fp32 each
    # time; the ranking quantizes it once per MatMul. Each must start from fp32.
    model = onnx.load(str(bert_dir / "model.onnx"))
    before = model.SerializeToString()
    first = _QUANTIZERS["int4-weight-only"](model, [])
    assert model.SerializeToString() == before
    keep = _matmuls(model)[0].name
    second = _QUANTIZERS["int4-weight-only"](model, [keep])
    count = [sum(n.op_type == "MatMulNBits" for n in g.graph.node) for g in (first, second)]
    assert count == [12, 11]


def test_fp16_keeps_fp32_inputs_and_outputs(tmp_path: Path, exported) -> None:
    folder = tmp_path / "llama"
    shutil.copytree(exported("llama", "text-generation"), folder)
    half = quantize(folder, "fp16", min_cosine=0.99)
    graph = onnx.load(str(folder / "model_fp16.onnx"))
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    logits = next(o for o in graph.graph.output if o.name == "logits")
    assert logits.type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 I/O kept
    assert half.accuracy is not None
    assert half.accuracy.min_cosine >= 0.99


def test_export_with_optimize_and_quantize_in_one_go(
    tmp_path: Path, checkpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    ckpt = str(checkpoint("bert", "feature-extraction"))
    code = main(
        [
            "export",
            "onnx",
            "--model",
            ckpt,
            "--optimize",
            "O2",
            "--quantize",
            "int8-dynamic",
            str(out),
        ]
    )
    assert code == 0
    assert {"model.onnx", "model_O2.onnx", "model_int8.onnx"} <= {p.name for p in out.iterdir()}
    stdout = capsys.readouterr().out
    assert "Fusions:" in stdout
    assert "cosine min" in stdout


def test_benchmark_writes_table_json_and_png(bert_dir: Path, tmp_path: Path, capsys) -> None:
    optimize(bert_dir, 2)
    report = tmp_path / "report"
    code = main(["benchmark", str(bert_dir), "--shapes", "1x16,2x16", "--blocks", "2",
                 "--repeats", "1", "--threads", "1", "--output", str(report)])  # fmt: skip
    assert code == 0
    stdout = capsys.readouterr().out
    assert "pytorch" in stdout
    assert "model_O2.onnx" in stdout
    data = json.loads((report / "benchmark.json").read_text())
    rows = {(m["variant"], m["batch_size"]) for m in data["measurements"]}
    assert rows == {(v, b) for v in ("pytorch", "model.onnx", "model_O2.onnx") for b in (1, 2)}
    drifts = [m["max_abs_diff"] for m in data["measurements"] if m["variant"] != "pytorch"]
    assert max(drifts) < 1e-4  # fp32 variants against PyTorch
    assert all(m["median_ms"] > 0 for m in data["measurements"])
    assert (report / "benchmark.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["optimize", "{empty}"], "No exported model in"),
        (["quantize", "{bert}", "--min-cosine", "2"], "--min-cosine must be in (0, 1]"),
        (["benchmark", "{bert}", "--shapes", "8by128"], "BATCHxSEQUENCE"),
        (["benchmark", "{bert}", "--variants", "nope.onnx"], "No variant nope.onnx"),
        (["quantize", "{bert}", "--eval-file", "{missing}"], "does not exist"),
    ],
)
def test_user_mistakes_get_one_line(
    argv: list[str], message: str, bert_dir: Path, tmp_path: Path, capsys
) -> None:
    (tmp_path / "empty").mkdir()
    values = {"empty": tmp_path / "empty", "bert": bert_dir, "missing": tmp_path / "missing.txt"}
    assert main([a.format(**values) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err
    assert np.all([not p.name.startswith(".variants") for p in bert_dir.iterdir()])


def test_guard_works_without_a_tokenizer(tmp_path: Path, exported) -> None:
    folder = tmp_path / "gpt2"
    shutil.copytree(exported("gpt2", "text-generation"), folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    result = optimize(folder, 2)
    assert result.fusions.get("skip_layer_normalization", 0) > 0
    assert result.accuracy is not None
    assert result.accuracy.token_agreement == 1.0


def _fails_without_a_message(*args: object, **kwargs: object) -> None:
    raise RuntimeError()  # str() is '': a first-line reader must not index into nothing


def test_a_failure_with_an_empty_message_is_still_one_clean_line(
    bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onnxport.variants import optimize as optimize_module
    from onnxport.variants import quantize as quantize_module

    monkeypatch.setattr(optimize_module, "optimize_graph", _fails_without_a_message)
    with pytest.raises(OptimizationError, match=r"model.onnx at O2 failed: RuntimeError$"):
        optimize(bert_dir, 2)
    monkeypatch.setitem(quantize_module._QUANTIZERS, "int8-dynamic", _fails_without_a_message)
    with pytest.raises(QuantizationError, match=r"of model.onnx failed: RuntimeError$"):
        quantize(bert_dir, "int8-dynamic")
    assert not list(bert_dir.glob(".variants.*"))


def test_one_list_of_generative_tasks_flagged_in_the_task_table() -> None:
    import re

    from onnxport.runtime import registry
    from onnxport.tasks import TASKS
    from onnxport.variants import benchmark, guard

    # The runtime serves these with generation classes (or, for speech and music, its own
    # numpy loops); the table flags them as taking a cache.
    with_past = {task.name for task in TASKS if task.with_past}
    assert with_past == registry.GENERATIVE_TASKS | registry.LOOP_TASKS
    assert not registry.GENERATIVE_TASKS & registry.LOOP_TASKS
    # The guard (greedy-token agreement) and the benchmark (refusal) use that same list...
    assert guard.GENERATIVE_TASKS is registry.GENERATIVE_TASKS
    assert benchmark.GENERATIVE_TASKS is registry.GENERATIVE_TASKS
    # ...and no other module keeps a copy that could drift from it.
    source = Path(onnxport.__file__).parent
    defining = sorted(
        str(path.relative_to(source))
        for path in source.rglob("*.py")
        if re.search(r"^GENERATIVE_TASKS\b.*=", path.read_text(encoding="utf-8"), re.MULTILINE)
    )
    assert defining == ["runtime/registry.py"]


def _unloadable_graph() -> onnx.ModelProto:
    """A well-formed ONNX file ONNX Runtime refuses: its one op is in an unknown domain."""
    from onnx import TensorProto, helper

    node = helper.make_node("Frobnicate", ["input_ids"], ["last_hidden_state"], domain="acme")
    graph = helper.make_graph(
        [node],
        "unloadable",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, 4])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("acme", 1)]
    )


def test_a_graph_onnx_runtime_refuses_is_the_stage_error(bert_dir: Path) -> None:
    from onnxport.errors import BenchmarkError
    from onnxport.variants.benchmark import benchmark
    from onnxport.variants.guard import compare

    onnx.save(_unloadable_graph(), str(bert_dir / "model_bad.onnx"))
    loads = r"ONNX Runtime cannot load '.*model_bad.onnx': .*Frobnicate"
    with pytest.raises(BenchmarkError, match=loads):
        benchmark(bert_dir, variants=["model.onnx", "model_bad.onnx"], shapes=[(1, 4)])
    with pytest.raises(VariantError, match=loads):
        compare(bert_dir, "model.onnx", "model_bad.onnx")


def test_guard_texts_span_lengths_and_languages_with_a_quarter_held_out() -> None:
    texts = builtin_texts()
    assert len(texts.search) >= 200
    assert len(texts.held_out) >= 60
    assert not set(texts.search) & set(texts.held_out)
    for part in (texts.search, texts.held_out):
        lengths = [len(text.split()) for text in part]
        assert min(lengths) == 1
        assert max(lengths) >= 60  # one word to a paragraph
        assert any(not text.isascii() for text in part)  # other languages than English


def test_quantize_reports_held_out_texts_the_search_never_saw(
    bert_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from onnxport.variants import optimize as optimize_module

    seen: list[list[str]] = []
    compare = optimize_module.compare

    def spy(*args: object, texts: list[str], **kwargs: object) -> object:
        seen.append(list(texts))
        return compare(*args, texts=texts, **kwargs)

    monkeypatch.setattr(optimize_module, "compare", spy)
    # A strict target makes the exclusion search run several rounds on the search texts.
    loose = quantize(bert_dir, "int8-dynamic", min_cosine=0.5, smoothing=False)
    target = 1 - (1 - loose.accuracy.min_cosine) / 4  # type: ignore[union-attr]
    seen.clear()
    result = quantize(bert_dir, "int8-dynamic", min_cosine=target, smoothing=False)
    held = set(builtin_texts().held_out)
    assert len(seen) > 2  # rounds of the search, then the held-out check
    assert all(not held & set(texts) for texts in seen[:-1])
    assert set(seen[-1]) == held
    assert result.held_out is not None
    assert result.held_out.samples == len(held) + PADDED_BATCH  # each text, then one batch
    # A user's own texts are all searched: nothing is held out of them.
    own = tmp_path / "texts.txt"
    own.write_text("one text\nanother text here\n")
    assert quantize(bert_dir, "int8-dynamic", eval_file=own).held_out is None


def test_guard_catches_a_variant_that_ignores_the_padding_mask(bert_dir: Path) -> None:
    # One text at a time a mask of ones changes nothing; only a padded batch shows the bug
    # (ONNX Runtime's quantizer once turned an Attention's additive mask into no mask at all).
    model = onnx.load(str(bert_dir / "model.onnx"))
    ones = onnx.helper.make_node(
        "ConstantOfShape", ["mask_shape"], ["mask_ones"],
        value=onnx.helper.make_tensor("one", onnx.TensorProto.INT64, [1], [1]),
    )  # fmt: skip
    shape = onnx.helper.make_node("Shape", ["attention_mask"], ["mask_shape"])
    for node in model.graph.node:
        node.input[:] = ["mask_ones" if name == "attention_mask" else name for name in node.input]
    model.graph.node.insert(0, ones)
    model.graph.node.insert(0, shape)
    onnx.save(model, str(bert_dir / "model_nomask.onnx"))
    texts = ["a", "a somewhat longer text that needs many tokens to say", "paris is"]
    alone = compare(bert_dir, "model.onnx", "model_nomask.onnx", texts=texts[1:2])
    assert alone.max_abs_diff == 0  # one text (no batch to pad): the bug does not show
    report = compare(bert_dir, "model.onnx", "model_nomask.onnx", texts=texts)
    assert report.samples == len(texts) * 2  # each alone, then the three padded together
    # The tiny random model barely attends (MiniLM's int8 QAttention fell to cosine 0.67),
    # but the padded rows now differ where the fp32 graph against itself does not.
    assert report.max_abs_diff > 1e-3
    assert report.min_cosine < 1 - 1e-5
    same = compare(bert_dir, "model.onnx", "model.onnx", texts=texts)
    assert same.max_abs_diff == 0
