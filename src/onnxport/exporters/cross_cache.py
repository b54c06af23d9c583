"""Join a seq2seq decoder traced with its cross-attention cache to the graph that fills it.

`DecoderPart` is traced reusing `past_key_values.<i>.encoder.key/value` (transformers'
`is_updated` path); `CrossAttentionPart` is traced computing them from
`encoder_hidden_states`. Here each layer's readers of that cache (its attention) go into an
`If` on whether the cache is empty, the layer's projections from the second graph in the
`then` branch, so one decoder graph does both:

    first step   past_key_values.<i>.encoder.* empty  -> computed from encoder_hidden_states,
                                                          returned as present.<i>.encoder.*
    later steps  past_key_values.<i>.encoder.* given  -> read where they lie; no projection
                                                          runs, the presents come back empty

That is the protocol of transformers.js (it feeds an empty encoder cache first, then the
first step's presents, ignoring later ones) and of onnxport's runtime. torch.onnx cannot write
it: `torch.cond` over branches whose outputs differ in length (0 vs the encoder's) does not
export, hence this graph edit. The branches' weights join the decoder's initializers (outer
scope); nothing is duplicated.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper

from onnxport.errors import CaptureError
from onnxport.exporters.postprocess import read_names

_PREFIX = "cross_attention/"
# The cross cache's length axis, apart from the encoder's: 0 on the first step.
CROSS_AXIS = "encoder_past_sequence_length"


def attach_cross_attention(
    decoder_path: Path, cross_path: Path, past_names: list[str], present_names: list[str]
) -> None:
    """Rewrite `decoder_path` in place, each layer's cross-attention inside its own If."""
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
    for tensor in branch.initializer:
        tensor.name = _PREFIX + tensor.name
        graph.initializer.append(tensor)
    weights = {tensor.name[len(_PREFIX) :] for tensor in branch.initializer}
    types = _value_types(decoder)
    results = {value.name for value in graph.output}
    nodes = _drop_present_copies(graph, past_names, present_names)
    nodes = _shapes_without_cache(nodes, inputs, past_names)
    head = _emptiness_test(past_names[0])
    for layer in range(len(past_names) // 2):
        names = past_names[2 * layer : 2 * layer + 2]
        presents = present_names[2 * layer : 2 * layer + 2]
        nodes = _wrap_layer(nodes, branch, weights, names, presents, types, results, layer)
    del graph.node[:]
    graph.node.extend(
        _sorted(head + nodes, {v.name for v in graph.input} | {t.name for t in graph.initializer})
    )
    outputs = {value.name: value for value in graph.output}
    for name in (*past_names, *present_names):
        value = inputs.get(name) or outputs[name]
        dims = value.type.tensor_type.shape.dim
        if len(dims) > 2:  # 0 on the first step's input and every later step's output
            dims[2].ClearField("dim_value")
            dims[2].dim_param = CROSS_AXIS
    # Weights only the dropped cross-attention nodes read (ONNX Runtime warns on each load).
    read = set().union(*(read_names(node) for node in graph.node)) | results
    kept = [tensor for tensor in graph.initializer if tensor.name in read]
    if len(kept) < len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(kept)
    _save(decoder, decoder_path)


def _emptiness_test(first_past: str) -> list[onnx.NodeProto]:
    """Nodes computing `cross_attention/empty`: whether the cross cache came in empty."""
    return [
        helper.make_node("Shape", [first_past], [f"{_PREFIX}length"], start=2, end=3),
        helper.make_node(
            "Constant", [], [f"{_PREFIX}zero"],
            value=helper.make_tensor("zero", onnx.TensorProto.INT64, [1], [0]),
        ),
        helper.make_node("Equal", [f"{_PREFIX}length", f"{_PREFIX}zero"], [f"{_PREFIX}empty"]),
    ]  # fmt: skip


def _drop_present_copies(
    graph: onnx.GraphProto, past_names: list[str], present_names: list[str]
) -> list[onnx.NodeProto]:
    """The decoder's nodes minus those turning each cross past into its (empty) present.

    Traced reusing the cache, the decoder returns each present as a slice of its past (run_reference
    empties them); the Ifs below produce the presents instead.
    """
    pasts = dict(zip(present_names, past_names, strict=True))
    kept = []
    for node in graph.node:
        produced = [name for name in node.output if name in pasts]
        if not produced:
            kept.append(node)
        elif (
            len(node.output) != 1
            or node.op_type not in ("Identity", "Slice")
            or (node.input[0] != pasts[produced[0]])
        ):
            why = f"'{produced[0]}' is computed by a {node.op_type}, not taken from its past"
            raise CaptureError(_cannot(why), failures=())
    for output in graph.output:
        if output.name in pasts.values():
            raise CaptureError(_cannot(f"'{output.name}' is a past input"), failures=())
    return kept


def _shapes_without_cache(
    nodes: list[onnx.NodeProto], inputs: dict[str, onnx.ValueInfoProto], past_names: list[str]
) -> list[onnx.NodeProto]:
    """`nodes` with each Shape of a cross past computed without reading it.

    A model may size something by the cross cache outside the attention (T5 sizes its
    cross-attention position bias by it, in another layer than the one it reads). That size
    must be the computed cache's on the first step, when the past is empty: (batch, heads,
    encoder length, head size), batch and length being encoder_hidden_states' axes 0 and 1.
    """
    past = set(past_names)
    result = []
    for node in nodes:
        if node.op_type != "Shape" or node.input[0] not in past:
            result.append(node)
            continue
        dims = inputs[node.input[0]].type.tensor_type.shape.dim
        if len(dims) != 4 or not (dims[1].dim_value and dims[3].dim_value):
            raise CaptureError(_cannot(f"'{node.input[0]}' has no fixed heads"), failures=())
        out = node.output[0]
        parts = [f"{out}/{part}" for part in ("batch", "heads", "length", "size", "full")]
        heads = helper.make_tensor(parts[1], onnx.TensorProto.INT64, [1], [dims[1].dim_value])
        size = helper.make_tensor(parts[3], onnx.TensorProto.INT64, [1], [dims[3].dim_value])
        result += [
            helper.make_node("Shape", ["encoder_hidden_states"], [parts[0]], end=1),
            helper.make_node("Constant", [], [parts[1]], value=heads),
            helper.make_node("Shape", ["encoder_hidden_states"], [parts[2]], start=1, end=2),
            helper.make_node("Constant", [], [parts[3]], value=size),
            helper.make_node("Concat", parts[:4], [parts[4]], axis=0),
        ]
        bounds = {a.name: a.i for a in node.attribute if a.name in ("start", "end")}
        limits = [f"{out}/{kind}" for kind in ("starts", "ends")]
        values = (bounds.get("start", 0), bounds.get("end", 4))
        for limit, value in zip(limits, values, strict=True):
            tensor = helper.make_tensor(limit, onnx.TensorProto.INT64, [1], [value])
            result.append(helper.make_node("Constant", [], [limit], value=tensor))
        result.append(helper.make_node("Slice", [parts[4], *limits], [out]))
    return result


def _wrap_layer(
    nodes: list[onnx.NodeProto],
    branch: onnx.GraphProto,
    weights: set[str],
    past: list[str],
    present: list[str],
    types: dict[str, int],
    results: set[str],
    layer: int,
) -> list[onnx.NodeProto]:
    """`nodes` with the readers of one layer's cross cache moved into an If on emptiness.

    then: the layer's projections from the cross graph, the readers on their results, which
    are returned as the presents; else: the readers on the past itself and empty presents.
    Either way the cache is read where it lies: no branch copies it (an If cannot return an
    outer value without an Identity, which copies: on Whisper's 1,500 encoder positions that
    copy was a third of a decoder step).
    """
    moved = _readers(nodes, set(past))
    if not moved:
        raise CaptureError(_cannot(f"nothing reads '{past[0]}'"), failures=())
    inside = {id(node) for node in moved}
    made = {name for node in moved for name in node.output}
    wanted = [
        name
        for node in nodes
        if id(node) not in inside
        for name in read_names(node)
        if name in made
    ]
    wanted = list(dict.fromkeys(wanted + [name for name in made if name in results]))
    compute, reuse = f"{_PREFIX}{layer}/compute/", f"{_PREFIX}{layer}/reuse/"
    projection = compute + "projection/"  # the two captures' names may coincide
    fresh = [projection + name for name in present]
    then_nodes = _projection_nodes(branch, weights, present, projection)
    then_nodes += _copies(moved, dict(zip(past, fresh, strict=True)), compute)
    then_out = [compute + name for name in wanted] + fresh
    else_nodes = _copies(moved, {}, reuse)
    else_out = [reuse + name for name in wanted]
    for name in past:  # the present of a reused cache: empty, nothing copied
        else_nodes.extend(_empty_slice(name, reuse + name))
        else_out.append(reuse + name)
    kinds = [types.get(name, types[past[0]]) for name in wanted] + [types[past[0]]] * 2
    the_if = helper.make_node(
        "If",
        [f"{_PREFIX}empty"],
        wanted + present,
        name=f"{_PREFIX}{layer}/if_empty",
        then_branch=helper.make_graph(
            then_nodes, f"cross_attention_{layer}_compute", [], _typed(then_out, kinds)
        ),
        else_branch=helper.make_graph(
            else_nodes, f"cross_attention_{layer}_reuse", [], _typed(else_out, kinds)
        ),
    )
    first = next(index for index, node in enumerate(nodes) if id(node) in inside)
    rest = [node for node in nodes if id(node) not in inside]
    return [*rest[:first], the_if, *rest[first:]]


def _readers(nodes: list[onnx.NodeProto], names: set[str]) -> list[onnx.NodeProto]:
    """The nodes reading `names`, and any node on a path between two of them."""
    direct = [node for node in nodes if names & read_names(node)]
    ids = {id(node) for node in direct}
    below: set[str] = set()  # values computed from a direct reader
    descendants = []
    for node in nodes:
        if id(node) in ids or below & read_names(node):
            below.update(node.output)
            descendants.append(node)
    above: set[str] = {name for node in direct for name in read_names(node)}
    between = set()
    for node in reversed(descendants):
        if id(node) in ids or above & set(node.output):
            above.update(read_names(node))
            between.add(id(node))
    return [node for node in nodes if id(node) in between]


def _projection_nodes(
    branch: onnx.GraphProto, weights: set[str], present: list[str], prefix: str
) -> list[onnx.NodeProto]:
    """Copies of the cross graph's nodes that compute `present`, renamed under `prefix`."""
    needed, kept = set(present), []
    for node in reversed(branch.node):
        if needed & set(node.output):
            needed.update(read_names(node))
            kept.append(node)
    made = {name for node in kept for name in node.output}
    rename = {name: prefix + name for name in made}
    rename.update({name: _PREFIX + name for name in weights})
    return _copies(list(reversed(kept)), rename, prefix)


def _copies(
    nodes: list[onnx.NodeProto], rename: dict[str, str], prefix: str
) -> list[onnx.NodeProto]:
    """`nodes` copied with outputs (and reads of them) under `prefix`, other reads per `rename`."""
    made = {name for node in nodes for name in node.output}
    copies = []
    for node in nodes:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[:] = [
            prefix + name if name in made else rename.get(name, name) for name in node.input
        ]
        copy.output[:] = [prefix + name for name in node.output]
        if copy.name:
            copy.name = prefix + copy.name
        copies.append(copy)
    return copies


def _empty_slice(past: str, output: str) -> list[onnx.NodeProto]:
    """`output` = `past[:, :, :0]`."""
    bounds = [f"{output}/{kind}" for kind in ("starts", "ends", "axes")]
    values = ([0], [0], [2])
    return [
        helper.make_node(
            "Constant", [], [name], value=helper.make_tensor(name, onnx.TensorProto.INT64, [1], v)
        )
        for name, v in zip(bounds, values, strict=True)
    ] + [helper.make_node("Slice", [past, *bounds], [output])]


def _typed(names: list[str], kinds: list[int]) -> list[onnx.ValueInfoProto]:
    return [
        helper.make_tensor_value_info(name, kind, None)
        for name, kind in zip(names, kinds, strict=True)
    ]


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every value shape inference can type (weights are not loaded)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # any failure: types then default to the cache's
        inferred = model.graph
    values = [*inferred.input, *inferred.output, *inferred.value_info]
    return {v.name: v.type.tensor_type.elem_type for v in values if v.type.HasField("tensor_type")}


def _sorted(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """`nodes` in an order where each comes after what it reads (stable otherwise)."""
    ready, done, pending = set(available) | {""}, [], list(nodes)
    while pending:
        left = []
        for node in pending:
            if read_names(node) <= ready:
                done.append(node)
                ready.update(node.output)
            else:
                left.append(node)
        if len(left) == len(pending):
            raise CaptureError(_cannot("the rewritten graph has a cycle"), failures=())
        pending = left
    return done


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
