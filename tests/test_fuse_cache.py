"""The key/value cache folded into ONNX Attention (exporters/fuse_cache.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnxport.exporters.capture import DEFAULT_OPSET, GENERATION_OPSET
from onnxport.exporters.fuse_cache import fold_cache

# GQA (kv heads < query heads, so repeat_kv is in the graph), MHA, and another attention.
MODEL_TYPES = ["llama", "gpt2", "qwen3"]


def _load(folder: Path) -> onnx.ModelProto:
    return onnx.load(str(folder / "model.onnx"))


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_generation_export_carries_the_cache_in_attention(model_type: str, exported) -> None:
    model = _load(exported(model_type, "text-generation"))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert opset == GENERATION_OPSET
    producers = {name: node for node in model.graph.node for name in node.output}
    presents = [o.name for o in model.graph.output if o.name.startswith("present.")]
    assert presents
    for name in presents:  # every present comes out of an Attention node that took its past
        node = producers[name]
        assert node.op_type == "Attention", (name, node.op_type)
        past = name.replace("present.", "past_key_values.")
        assert past in node.input
        for key in node.input[1:3]:  # new keys/values go in per kv head: no repeat_kv copy
            assert (
                producers[key].op_type != "Reshape"
                or producers[producers[key].input[0]].op_type != "Expand"
            )


def _unfolded(folder: Path) -> onnx.ModelProto:
    """The same graph with the fold undone: past and new keys concatenated outside."""
    model = _load(folder)
    graph = model.graph
    for node in list(graph.node):
        if node.op_type != "Attention" or len(node.input) < 6:
            continue
        q, k, v, mask, past_k, past_v = node.input[:6]
        present_k, present_v = node.output[1], node.output[2]
        concat_k = onnx.helper.make_node("Concat", [past_k, k], [present_k], axis=2)
        concat_v = onnx.helper.make_node("Concat", [past_v, v], [present_v], axis=2)
        del node.input[:]
        node.input.extend([q, present_k, present_v, mask])
        del node.output[1:]
        position = list(graph.node).index(node)
        graph.node.insert(position, concat_v)
        graph.node.insert(position, concat_k)
    return model


def _feed(session: ort.InferenceSession, past: int, new: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    batch = 2
    feed: dict[str, np.ndarray] = {}
    for arg in session.get_inputs():
        if arg.name.startswith("past_key_values."):
            shape = (batch, arg.shape[1], past, arg.shape[3])
            feed[arg.name] = rng.standard_normal(shape).astype(np.float32)
    feed["input_ids"] = rng.integers(3, 90, (batch, new))
    mask = np.ones((batch, past + new), dtype=np.int64)
    mask[1, :2] = 0  # the second row is left-padded
    feed["attention_mask"] = mask
    names = {arg.name for arg in session.get_inputs()}
    if "position_ids" in names:
        feed["position_ids"] = np.clip(np.cumsum(mask, -1) - 1, 0, None)[:, -new:]
    return {k: v for k, v in feed.items() if k in names}


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_fold_computes_what_the_concatenation_did(model_type: str, exported) -> None:
    folder = exported(model_type, "text-generation")
    folded = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    plain = ort.InferenceSession(
        _unfolded(folder).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    for past, new in ((0, 5), (4, 1), (4, 3)):  # prefill, a step, several tokens on a past
        feed = _feed(folded, past, new)
        for a, b in zip(folded.run(None, feed), plain.run(None, feed), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_fold_leaves_other_graphs_alone(exported) -> None:
    """An encoder's attention has no cache: nothing to fold, nothing changed."""
    model = onnx.load(str(exported("bert", "feature-extraction") / "model.onnx"))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert opset == DEFAULT_OPSET
    before = model.SerializeToString()
    assert fold_cache(model.graph) == 0
    assert model.SerializeToString() == before
