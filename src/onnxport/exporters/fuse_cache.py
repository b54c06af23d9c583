"""Fold a decoder's key/value cache into ONNX `Attention` (opset 23): the graph's own rewrite.

At opset 23 torch.onnx writes `scaled_dot_product_attention` as the standard `Attention` op,
but the cache update stays outside it: `present = Concat(past, new)` along the sequence axis,
then (for grouped-query attention) `repeat_kv`'s Unsqueeze -> Expand -> Reshape copies every
key/value head once per query head it serves, at every step. `Attention` takes the past and
returns the present itself and handles grouped heads natively, so

    present.i.key = Concat(past_key_values.i.key, k)        Attention(q, K, V, mask)
    K = Reshape(Expand(Unsqueeze(present.i.key)))    -->    -> y
    (same for values)                                       Attention(q, k, v, mask, past_k, past_v)
                                                            -> y, present.i.key, present.i.value

computes the same numbers (validation proves it at new shapes) without the copies.
onnxscript's ORT fusions target `com.microsoft.GroupQueryAttention`, whose CPU kernel refuses
a batch above 1 when several new tokens meet a past (validation's case, and a chat prompt's
continuation), so this rewrite, written here, keeps the standard op instead.
Only the graph's nodes change (protobuf, weights untouched).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import onnx

from onnxport.exporters.postprocess import read_names

# repeat_kv as torch.onnx writes it, from Attention's input back to the cache's Concat.
_REPEAT_KV = ("Reshape", "Expand", "Unsqueeze")


def fold_cache_into_attention(path: Path) -> int:
    """Rewrite the graph at `path` in place; returns how many Attention nodes took the cache."""
    model = onnx.load(str(path), load_external_data=False)
    folded = fold_cache(model.graph)
    if folded:
        onnx.save(model, str(path))  # the weights' external-data references stay as they were
    return folded


def fold_cache(graph: onnx.GraphProto) -> int:
    """The rewrite on a graph, in place; returns how many Attention nodes took the cache."""
    producer = {name: node for node in graph.node for name in node.output}
    graph_inputs = {value.name for value in graph.input}
    graph_outputs = {value.name for value in graph.output}
    order = {id(node): index for index, node in enumerate(graph.node)}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    def cache_concat(name: str, attention: onnx.NodeProto) -> onnx.NodeProto | None:
        node, chain = producer.get(name), []
        if node is not None and node.op_type == _REPEAT_KV[0]:
            for op_type in _REPEAT_KV:  # walk repeat_kv back to what it repeats
                if node is None or node.op_type != op_type:
                    return None
                chain.append(id(node))
                node = producer.get(node.input[0])
        if node is None or node.op_type != "Concat":
            return None
        axis = next((a.i for a in node.attribute if a.name == "axis"), None)
        present = node.output[0]
        if (
            axis not in (2, -2)
            or len(node.input) != 2
            or node.input[0] not in graph_inputs
            or not node.input[0].startswith("past_key_values.")
            or present not in graph_outputs
            # Its other readers will read the present from Attention: they must come later.
            or any(
                order[id(c)] < order[id(attention)] and id(c) not in chain
                for c in consumers[present]
            )
        ):
            return None
        return node

    folded = 0
    replaced: set[int] = set()  # the Concats whose present Attention now returns
    for node in graph.node:
        if node.op_type != "Attention" or node.domain not in ("", "ai.onnx"):
            continue
        if len(node.input) > 4 or len(node.output) > 1:
            continue  # already given a past, or asked for attention weights
        keys, values = (cache_concat(node.input[i], node) for i in (1, 2))
        if keys is None or values is None:
            continue
        mask = node.input[3] if len(node.input) > 3 else ""
        q = node.input[0]
        inputs = [q, keys.input[1], values.input[1], mask, keys.input[0], values.input[0]]
        del node.input[:]
        node.input.extend(inputs)
        node.output.extend([keys.output[0], values.output[0]])
        replaced |= {id(keys), id(values)}
        folded += 1
    if folded:
        _keep_used(graph, replaced)
    return folded


def _keep_used(graph: onnx.GraphProto, replaced: set[int]) -> None:
    """Drop `replaced` and every node and constant nothing reads any more (repeat_kv's).

    One pass from the outputs back (the graph is topologically sorted), and each list rebuilt
    once: a protobuf `remove` compares messages, weights included, to find the one to drop.
    """
    used = {value.name for value in graph.output}
    kept = []
    for node in reversed(graph.node):
        if id(node) not in replaced and any(name in used for name in node.output if name):
            kept.append(node)
            used.update(read_names(node))
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    initializers = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
