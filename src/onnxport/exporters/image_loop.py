"""A vision encoder traced for one image, rewritten to take any number: an ONNX `Loop`.

Models that return their image features as a Python list (LLaVA unbinds them per image,
Idefics3 splits them by a count read off the data) fix the number of images in any graph
traced through them; torch.export refuses a dynamic one and a trace at two images runs at two
only. The graph is therefore traced for one image and its nodes become the body of a `Loop`
over the images (torch.onnx has no way to emit a loop over a Python list, hence this edit).
The result takes `pixel_values` with a dynamic leading axis, as transformers.js feeds them,
and is validated at several image counts like any graph.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from onnxport.exporters.cross_cache import _save

_ITERATION = "image_loop/iteration"
_CONDITION = "image_loop/condition"


def loop_over_images(path: Path, batch_axis: str, lead: int) -> None:
    """Rewrite `path` in place to take any number of images, one per `Loop` iteration.

    The inputs' first `lead` axes (all 1 in the traced graph) become dynamic: `batch_axis`, and
    with `lead` 2 (prompts, images per prompt, ...) images per prompt too, flattened to one
    image per iteration. Each output's first axis then counts the images.
    """
    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    body_nodes: list[onnx.NodeProto] = []
    outer_nodes: list[onnx.NodeProto] = []
    axes = helper.make_tensor("image_loop/axes", TensorProto.INT64, [1], [0])
    graph.initializer.append(axes)
    renamed: dict[str, str] = {}
    for value in graph.input:
        name = value.name
        flat = name
        if lead > 1:  # (prompts, images per prompt, ...) -> (images, ...)
            flat = f"image_loop/{name}/flat"
            outer_nodes.append(
                helper.make_node("Reshape", [name, _shape_of_rest(graph, name, lead)], [flat])
            )
        row = f"image_loop/{name}/row"
        inner = f"image_loop/{name}/one"
        body_nodes.append(helper.make_node("Gather", [flat, _ITERATION], [row], axis=0))
        body_nodes.append(helper.make_node("Unsqueeze", [row, axes.name], [inner]))
        for _ in range(lead - 1):
            again = inner + "x"
            body_nodes.append(helper.make_node("Unsqueeze", [inner, axes.name], [again]))
            inner = again
        renamed[name] = inner
    first = graph.input[0].name
    count = "image_loop/count"
    source = outer_nodes[0].output[0] if lead > 1 else first
    outer_nodes += [
        helper.make_node("Shape", [source], ["image_loop/shape"], start=0, end=1),
        helper.make_node("Squeeze", ["image_loop/shape", axes.name], [count]),
        helper.make_node("Constant", [], [_CONDITION], value=helper.make_tensor(
            "image_loop/true", TensorProto.BOOL, [], [True])),
    ]  # fmt: skip
    for node in graph.node:
        _rename_inputs(node, renamed)
    body_nodes.extend(graph.node)
    body_outputs = [helper.make_tensor_value_info("image_loop/condition_out", TensorProto.BOOL, [])]
    body_nodes.append(helper.make_node("Identity", ["image_loop/condition_in"],
                                       ["image_loop/condition_out"]))  # fmt: skip
    scans = []
    for value in graph.output:
        # Renamed inside the body: the outer graph defines the output's own name.
        inner_output = f"image_loop/{value.name}/one"
        body_nodes.append(helper.make_node("Identity", [value.name], [inner_output]))
        body_outputs.append(
            helper.make_tensor_value_info(inner_output, value.type.tensor_type.elem_type, None)
        )
        scans.append(f"image_loop/{value.name}/scan")
    body = helper.make_graph(
        body_nodes,
        "one_image",
        [
            helper.make_tensor_value_info(_ITERATION, TensorProto.INT64, []),
            helper.make_tensor_value_info("image_loop/condition_in", TensorProto.BOOL, []),
        ],
        body_outputs,
    )
    body.value_info.extend(graph.value_info)  # the traced graph's shapes now lie inside
    del graph.value_info[:]
    loop = helper.make_node("Loop", [count, _CONDITION], scans, body=body)
    tail = []
    for value, scan in zip(graph.output, scans, strict=True):
        # Each iteration returns the graph's (1, ...): the scan stacks them (images, 1, ...).
        tail.append(helper.make_node("Squeeze", [scan, "image_loop/axes_1"], [value.name]))
    graph.initializer.append(helper.make_tensor("image_loop/axes_1", TensorProto.INT64, [1], [1]))
    del graph.node[:]
    graph.node.extend([*outer_nodes, loop, *tail])
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        for index, axis in enumerate([batch_axis, "images_per_prompt"][:lead]):
            dims[index].Clear()
            dims[index].dim_param = axis
    for value in graph.output:
        dims = value.type.tensor_type.shape.dim
        dims[0].Clear()
        dims[0].dim_param = batch_axis if lead == 1 else "num_images"
    _save(model, path)


def _shape_of_rest(graph: onnx.GraphProto, name: str, lead: int) -> str:
    """A constant shape (-1, *the input's dims after the first `lead`) for its Reshape."""
    value = next(v for v in graph.input if v.name == name)
    rest = [d.dim_value for d in value.type.tensor_type.shape.dim][lead:]
    shape = f"image_loop/{name}/rest"
    graph.initializer.append(
        helper.make_tensor(shape, TensorProto.INT64, [len(rest) + 1], [-1, *rest])
    )
    return shape


def _rename_inputs(node: onnx.NodeProto, renamed: dict[str, str]) -> None:
    for index, name in enumerate(node.input):
        node.input[index] = renamed.get(name, name)
    for attribute in node.attribute:
        subgraphs = [attribute.g] if attribute.HasField("g") else []
        for subgraph in [*subgraphs, *attribute.graphs]:
            for inner in subgraph.node:
                _rename_inputs(inner, renamed)
