"""Encoder-decoders compute cross-attention keys and values once per input, not per step.

The decoder graph takes `past_key_values.<i>.encoder.*`: empty on the first step (an If per
layer computes them from the encoder's states), the first step's presents afterwards (the states
are not read again, the cache is not copied, the presents come back empty). Checked on the graph
itself and on what the runtime feeds it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

import onnxport
from onnxport.exporters.postprocess import read_names
from onnxport.sessions import create_session

CASES = [("t5", "text2text-generation"), ("whisper", "automatic-speech-recognition")]


def _first_step_feed(session: Any, batch: int, encoder: int, rng: np.random.Generator) -> dict:
    feed: dict[str, np.ndarray] = {}
    for value in session.get_inputs():
        if value.name == "input_ids":
            feed[value.name] = rng.integers(5, 90, (batch, 1))
        elif value.name == "encoder_attention_mask":
            feed[value.name] = np.ones((batch, encoder), dtype=np.int64)
        elif value.name == "encoder_hidden_states":
            feed[value.name] = rng.standard_normal((batch, encoder, value.shape[2]), np.float32)
        else:  # an empty cache, self- and cross-attention alike
            feed[value.name] = np.zeros((batch, value.shape[1], 0, value.shape[3]), np.float32)
    return feed


@pytest.mark.parametrize(("model_type", "task"), CASES)
def test_cross_attention_is_read_from_the_cache_after_the_first_step(
    model_type: str, task: str, exported
) -> None:
    path = exported(model_type, task) / "decoder_model.onnx"
    graph = onnx.load(str(path), load_external_data=False).graph
    cross = [i.name for i in graph.input if ".encoder." in i.name]
    layers = len([i for i in graph.input if i.name.startswith("past_key_values.")]) // 2
    assert len(cross) == layers  # every decoder layer's cross-attention, key and value
    # One If per layer; outside their compute branches the encoder's states only give sizes.
    ifs = [n for n in graph.node if n.op_type == "If"]
    assert len(ifs) == layers // 2
    readers = [n for n in graph.node if "encoder_hidden_states" in read_names(n)]
    assert {n.op_type for n in readers} == {"Shape", "If"}
    for node in ifs:
        reuse = next(a.g for a in node.attribute if a.name == "else_branch")
        assert not any("encoder_hidden_states" in read_names(n) for n in reuse.node)
        # The reused cache is read in place: no Identity/Concat copies it, per step.
        copies = {n.op_type for n in reuse.node if set(cross) & set(n.input)}
        assert copies <= {"Attention", "Slice"}, copies

    session = create_session(path)
    rng = np.random.default_rng(0)
    batch, encoder = 2, 11
    feed = _first_step_feed(session, batch, encoder, rng)
    names = [o.name for o in session.get_outputs()]
    first = dict(zip(names, session.run(None, feed), strict=True))
    present_cross = [name.replace("past_key_values.", "present.") for name in cross]
    assert all(first[name].shape[2] == encoder for name in present_cross)

    step = dict(feed, input_ids=rng.integers(5, 90, (batch, 1)))
    step.update({n: first[n.replace("past_key_values.", "present.")] for n in step if "past" in n})
    expected, *presents = session.run(["logits", *present_cross], step)
    assert all(p.shape[2] == 0 for p in presents)  # the caller keeps the first step's
    noise = rng.standard_normal(step["encoder_hidden_states"].shape, np.float32)
    # Filled cache: other states give the same logits (they are not read).
    reused = session.run(["logits"], dict(step, encoder_hidden_states=noise))[0]
    np.testing.assert_array_equal(reused, expected)
    # Empty cache: they are (the first step computes from them).
    recomputed = session.run(["logits"], dict(feed, encoder_hidden_states=noise))[0]
    assert not np.allclose(recomputed, session.run(["logits"], feed)[0], atol=1e-3)


class _Recording:
    """An ORT session that records the cross-attention cache length of every run."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.lengths: list[int] = []

    def run(self, names: Any, feed: dict[str, np.ndarray]) -> Any:
        self.lengths.append(int(feed["past_key_values.0.encoder.key"].shape[2]))
        return self.session.run(names, feed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def test_generate_feeds_the_first_steps_cross_attention_back(checkpoint, exported) -> None:
    folder = exported("t5", "text2text-generation")
    pt_model = AutoModelForSeq2SeqLM.from_pretrained(checkpoint("t5", "text2text-generation"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    inputs = tokenizer(["a longer source text here", "short"], padding=True, return_tensors="pt")
    model = onnxport.ORTModelForSeq2SeqLM.from_pretrained(folder)
    recording = _Recording(model.session)
    model.session = recording
    for options in ({"num_beams": 1}, {"num_beams": 3}):
        recording.lengths.clear()
        settings = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False, **options}
        tokens = model.generate(**inputs, **settings)
        assert torch.equal(tokens, pt_model.eval().generate(**inputs, **settings))
        source = inputs["input_ids"].shape[1]
        assert recording.lengths == [0] + [source] * 5, options
