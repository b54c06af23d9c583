"""Give every axes-less `Squeeze` the axes it was traced with.

`tensor.squeeze()` (MBart's `shift_tokens_right`, many heads' `logits.squeeze()`) reaches
torch.onnx as `aten.squeeze.default`, which it writes as a `Squeeze` without axes: at run
time that drops every axis of size 1, a batch of one included, and the next node fails
(`Unsqueeze ... axis 1 is out of range`) or the output loses its batch axis. torch.export
assumes a dynamic axis is never 1, so what was traced is "drop the axes that are 1 in every
shape": the axes the graph's own shape information shows as a static 1. Only nodes whose
input has a known shape with a dynamic axis change; the rest stay as written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def explicit_squeeze_axes(path: Path) -> int:
    """Rewrite the graph at `path` in place; returns how many Squeeze nodes got axes."""
    model = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:  # axes became an input at opset 13; older graphs keep what they have
        return 0
    fixed = fix_graph(model.graph)
    if fixed:
        onnx.save(model, str(path))  # the weights' external-data references stay as they were
    return fixed


def fix_graph(graph: onnx.GraphProto) -> int:
    """The rewrite on one graph and the graphs nested in its nodes, in place."""
    shapes = {
        value.name: value.type.tensor_type.shape
        for value in [*graph.input, *graph.value_info, *graph.output]
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape")
    }
    fixed = 0
    for node in graph.node:
        for attribute in node.attribute:
            for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                fixed += fix_graph(sub)
        if node.op_type != "Squeeze" or node.domain not in ("", "ai.onnx"):
            continue
        has_axes = len(node.input) > 1 and bool(node.input[1])
        if has_axes or any(a.name == "axes" for a in node.attribute):
            continue
        shape = shapes.get(node.input[0])
        if shape is None:
            continue
        dims = list(shape.dim)
        if all(d.HasField("dim_value") for d in dims):
            continue  # fully static: the axes-less form is exact
        axes = [i for i, d in enumerate(dims) if d.HasField("dim_value") and d.dim_value == 1]
        del node.input[1:]
        if axes:
            name = f"{node.output[0]}__squeeze_axes"
            graph.initializer.append(numpy_helper.from_array(np.asarray(axes, np.int64), name))
            node.input.append(name)
        else:  # nothing was 1 when traced: nothing to drop
            node.op_type = "Identity"
        fixed += 1
    return fixed
