"""Layouts of the output folder: onnxport's own, or the one transformers.js loads.

transformers.js (browser and Node) reads `config.json` and the preprocessor files at the
folder's root and the graphs in `onnx/`: `model.onnx`, or `encoder_model.onnx` +
`decoder_model_merged.onnx`. It creates an encoder-decoder's empty first-step cache and
carries it between steps by name, `past_key_values.<i>.decoder.key` / `present.<i>.decoder.key`
(its `getCacheNames`), so the self-attention cache of onnxport's decoder is renamed to those
names; a decoder-only model's `past_key_values.<i>.key` are already the names it uses.
External weights are named `<graph>.onnx_data` and declared in `config.json` under
`transformers.js_config.use_external_data_format`, which is how it finds them in a browser.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import onnx

from onnxport.errors import ExportOptionError
from onnxport.layout import (
    DECODER_FILE,
    LAYOUTS,
    ONNXPORT,
    TRANSFORMERS_JS,
    TRANSFORMERS_JS_DIR,
    TRANSFORMERS_JS_FILES,
)


def check_layout(layout: str) -> None:
    """Refuse an unknown layout name in one line."""
    if layout not in LAYOUTS:
        raise ExportOptionError(
            f"Unknown --layout '{layout}'; choose one of {', '.join(LAYOUTS)}.", option="--layout"
        )


def apply_layout(
    staging: Path, graphs: list[str], layout: str, *, encoder_decoder: bool
) -> dict[str, str]:
    """Move the exported graphs of `staging` into `layout`; returns old name -> new name."""
    if layout == ONNXPORT:
        return {name: name for name in graphs}
    assert layout == TRANSFORMERS_JS
    (staging / TRANSFORMERS_JS_DIR).mkdir(exist_ok=True)
    moved: dict[str, str] = {}
    external: dict[str, int] = {}
    for name in graphs:
        target = TRANSFORMERS_JS_FILES[name]
        renames = _decoder_cache_names if encoder_decoder and name == DECODER_FILE else None
        if _move_graph(staging / name, staging / target, renames):
            external[Path(target).name] = 1
        moved[name] = target
    if external:
        config_path = staging / "config.json"
        config = json.loads(config_path.read_text())
        config.setdefault("transformers.js_config", {})["use_external_data_format"] = external
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return moved


def _decoder_cache_names(name: str) -> str:
    """`past_key_values.0.key` -> `past_key_values.0.decoder.key` (and `present.` alike)."""
    for prefix in ("past_key_values.", "present."):
        if name.startswith(prefix):
            layer, _, kind = name.removeprefix(prefix).partition(".")
            if kind in ("key", "value"):
                return f"{prefix}{layer}.decoder.{kind}"
    return name


def _move_graph(source: Path, target: Path, renames: Callable[[str], str] | None) -> bool:
    """Move one graph (and its external weights); True when it has external weights.

    The graph is read without its weights: renaming tensors and pointing the initializers at
    the new data file touch only the protobuf, and the data file itself is renamed.
    """
    model = onnx.load(str(source), load_external_data=False)
    locations = {
        entry.value
        for tensor in model.graph.initializer
        for entry in tensor.external_data
        if entry.key == "location"
    }
    data_name = f"{target.name}_data"
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = data_name
    if renames is not None:
        names = {v.name for v in (*model.graph.input, *model.graph.output)}
        _rename_values(model.graph, {n: renames(n) for n in names if renames(n) != n})
    onnx.save(model, str(target))
    source.unlink()
    for location in sorted(locations):
        if len(locations) > 1:  # torch.onnx writes one file; more cannot share one name
            raise ExportOptionError(
                f"{source.name} keeps its weights in {len(locations)} files; the "
                "transformers.js layout needs one.",
                option="--layout",
            )
        os.replace(source.parent / location, target.parent / data_name)
    return bool(locations)


def _rename_values(graph: onnx.GraphProto, mapping: dict[str, str]) -> None:
    """Rename values everywhere they are used, inside If/Loop bodies too."""
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.name = mapping.get(value.name, value.name)
    for node in graph.node:
        for index, name in enumerate(node.input):
            node.input[index] = mapping.get(name, name)
        for index, name in enumerate(node.output):
            node.output[index] = mapping.get(name, name)
        for attribute in node.attribute:
            for subgraph in (
                (attribute.g, *attribute.graphs) if attribute.HasField("g") else attribute.graphs
            ):
                _rename_values(subgraph, mapping)
