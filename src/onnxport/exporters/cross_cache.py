"""Join a seq2seq decoder traced with its cross-attention cache to the graph that fills it.

`DecoderPart` is traced reusing `past_key_values.<i>.encoder.key/value` (transformers'
`is_updated` path); `CrossAttentionPart` is traced computing them from
`encoder_hidden_states`. Here the second goes into the first as the `then` branch of an `If`
on whether that cache is empty, so one decoder graph does both:

    first step   past_key_values.<i>.encoder.* empty  -> computed from encoder_hidden_states
    later steps  past_key_values.<i>.encoder.* given  -> passed through, no projection runs

and returns them as `present.<i>.encoder.*`. That is the protocol of transformers.js (it
feeds an empty encoder cache first and the first step's presents afterwards) and of
onnxport's runtime. torch.onnx cannot write it: `torch.cond` over branches whose outputs
differ in length (0 vs the encoder's) does not export, hence this graph edit.
The branch's weights join the decoder's initializers (outer scope); nothing is duplicated.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper

from onnxport.errors import CaptureError

_PREFIX = "cross_attention/"
# The cross cache's length axis, apart from the encoder's: 0 on the first step.
CROSS_AXIS = "encoder_past_sequence_length"


def attach_cross_attention(
    decoder_path: Path, cross_path: Path, past_names: list[str], present_names: list[str]
) -> None:
    """Rewrite `decoder_path` in place with the cross graph at `cross_path` inside an If."""
    decoder = onnx.load(str(decoder_path), load_external_data=False)
    cross = onnx.load(str(cross_path))
    graph, branch = decoder.graph, cross.graph
    inputs = {value.name: value for value in graph.input}
    missing = [name for name in (*past_names, "encoder_hidden_states") if name not in inputs]
    if [value.name for value in branch.output] != present_names:
        missing.append("the cross-attention outputs")
    if missing:
        if "encoder_hidden_states" in missing and len(missing) == 1:
            graph.input.append(_hidden_input(branch))
        else:
            raise CaptureError(_cannot(f"no {', '.join(missing)}"), failures=())
    _merge_opsets(decoder, cross)

    rename = {value.name: _PREFIX + value.name for value in branch.output}
    for node in branch.node:
        for name in node.output:
            rename.setdefault(name, _PREFIX + name)
    for tensor in branch.initializer:
        rename[tensor.name] = _PREFIX + tensor.name
        tensor.name = rename[tensor.name]
        graph.initializer.append(tensor)
    then_nodes = []
    for node in branch.node:
        node.input[:] = [rename.get(name, name) for name in node.input]
        node.output[:] = [rename[name] for name in node.output]
        if node.name:
            node.name = _PREFIX + node.name
        then_nodes.append(node)
    then_outputs = [_renamed(value, rename[value.name]) for value in branch.output]
    then_branch = helper.make_graph(then_nodes, "cross_attention_compute", [], then_outputs)
    then_branch.value_info.extend(_renamed(v, rename[v.name]) for v in branch.value_info)

    passed = [f"{_PREFIX}past/{name}" for name in past_names]
    else_branch = helper.make_graph(
        [helper.make_node("Identity", [p], [o]) for p, o in zip(past_names, passed, strict=True)],
        "cross_attention_reuse",
        [],
        [_renamed(value, name) for value, name in zip(branch.output, passed, strict=True)],
    )
    joined = [f"{_PREFIX}cache/{name}" for name in past_names]
    first = past_names[0]
    head = [
        helper.make_node("Shape", [first], [f"{_PREFIX}length"], start=2, end=3),
        helper.make_node(
            "Constant", [], [f"{_PREFIX}zero"],
            value=helper.make_tensor("zero", onnx.TensorProto.INT64, [1], [0]),
        ),
        helper.make_node("Equal", [f"{_PREFIX}length", f"{_PREFIX}zero"], [f"{_PREFIX}empty"]),
        helper.make_node(
            "If", [f"{_PREFIX}empty"], joined, name=f"{_PREFIX}if_empty",
            then_branch=then_branch, else_branch=else_branch,
        ),
    ]  # fmt: skip
    uses = dict(zip(past_names, joined, strict=True))
    for node in graph.node:
        node.input[:] = [uses.get(name, name) for name in node.input]
    for output in graph.output:  # a present that is its past as it came in
        if output.name in uses:
            raise CaptureError(_cannot(f"'{output.name}' is a past input"), failures=())
    nodes = head + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    for name in past_names:
        dims = inputs[name].type.tensor_type.shape.dim
        if len(dims) > 2:
            dims[2].ClearField("dim_value")
            dims[2].dim_param = CROSS_AXIS
    _save(decoder, decoder_path)


def _cannot(why: str) -> str:
    return (
        f"Cannot join the cross-attention graph to the decoder ({why}); this is onnxport's "
        "bug, please report it with the model's config."
    )


def _hidden_input(branch: onnx.GraphProto) -> onnx.ValueInfoProto:
    """The decoder's `encoder_hidden_states` input, declared as the cross graph takes it."""
    for value in branch.input:
        if value.name == "encoder_hidden_states":
            return value
    raise CaptureError(_cannot("it takes no encoder_hidden_states"), failures=())


def _renamed(value: onnx.ValueInfoProto, name: str) -> onnx.ValueInfoProto:
    copy = onnx.ValueInfoProto()
    copy.CopyFrom(value)
    copy.name = name
    return copy


def _merge_opsets(decoder: onnx.ModelProto, cross: onnx.ModelProto) -> None:
    have = {entry.domain: entry for entry in decoder.opset_import}
    for entry in cross.opset_import:
        if entry.domain not in have:
            decoder.opset_import.append(entry)
        elif have[entry.domain].version != entry.version:
            theirs = have[entry.domain].version
            why = f"opset {entry.version} of '{entry.domain}', the decoder's is {theirs}"
            raise CaptureError(_cannot(why), failures=())
    known = {f.name for f in decoder.functions}
    decoder.functions.extend(f for f in cross.functions if f.name not in known)


def _save(model: onnx.ModelProto, path: Path) -> None:
    """Save in place; the branch's weights go where the decoder's already are."""
    location = next(
        (
            entry.value
            for tensor in model.graph.initializer
            for entry in tensor.external_data
            if entry.key == "location"
        ),
        None,
    )
    if location is None:
        onnx.save(model, str(path))
        return
    # Only the branch's tensors hold their data here: they are appended to the data file.
    onnx.save(
        model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
        location=location, size_threshold=1024, convert_attribute=False,
    )  # fmt: skip
