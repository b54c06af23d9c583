"""The peer comparison: the same tiny models through Transformers' own experimental exporter.

`transformers.exporters.OnnxExporter` (Transformers 5) traces a model's forward with dynamic
shapes and writes one ONNX graph; it does not validate. Here each pair's tiny model (the one
`onnxport coverage` builds) is given to it with onnxport's example inputs at the traced shape,
and its graph is then held to onnxport's own validation: the same inputs at the shapes unlike
the traced one, every output compared with PyTorch. A pair the peer cannot export, whose graph
ONNX Runtime cannot run, or whose outputs differ, fails for the peer.

Only single-graph tasks are compared: the peer's generation export decomposes a model into
stages of its own design, which no onnxport consumer (nor onnxport's validator) reads, so a
pass count over them would compare different things.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from onnxport.coverage.runner import _MARK, FAIL, PASS, SKIP, PairResult, _first_line, _since
from onnxport.tasks import get_task

PEER = "transformers.exporters"

# The pairs `onnxport coverage --peer` compares by default: every modality, encoder heads of
# the popular text architectures, vision backbones and heads, audio encoders, dual encoders.
PEER_SAMPLE: tuple[tuple[str, str], ...] = (
    ("albert", "multiple-choice"), ("bert", "fill-mask"), ("bert", "question-answering"),
    ("deberta-v2", "text-classification"), ("distilbert", "token-classification"),
    ("electra", "feature-extraction"), ("modernbert", "fill-mask"),
    ("roberta", "question-answering"), ("xlm-roberta", "fill-mask"),
    ("mpnet", "feature-extraction"), ("layoutlm", "token-classification"),
    ("mixtral", "text-classification"), ("t5", "feature-extraction"),
    ("bart", "text-classification"), ("longformer", "fill-mask"), ("mbart", "fill-mask"),
    ("beit", "image-classification"), ("convnext", "image-feature-extraction"),
    ("convnextv2", "image-classification"), ("deit", "masked-im"),
    ("detr", "object-detection"), ("dinov2", "image-feature-extraction"),
    ("dpt", "depth-estimation"), ("glpn", "depth-estimation"),
    ("mobilevitv2", "image-classification"), ("resnet", "image-classification"),
    ("segformer", "semantic-segmentation"), ("swin2sr", "image-to-image"),
    ("vit", "image-classification"), ("yolos", "object-detection"),
    ("rt_detr", "object-detection"), ("vit_mae", "image-feature-extraction"),
    ("clip", "zero-shot-image-classification"), ("siglip", "zero-shot-image-classification"),
    ("audio-spectrogram-transformer", "audio-classification"),
    ("hubert", "audio-classification"), ("wav2vec2", "ctc"),
    ("wavlm", "audio-xvector"), ("unispeech-sat", "audio-frame-classification"),
    ("whisper", "audio-classification"),
)  # fmt: skip


def comparable(task: str) -> bool:
    """Whether a task exports as one graph (the peer's `export`), so the two can be compared."""
    task_obj = get_task(task)
    return not (task_obj.with_past or task_obj.encoder_decoder or task_obj.vision_language)


def run_peer_pair(model_type: str, task: str) -> PairResult:
    """Export one pair with the peer, then validate its graph as onnxport validates its own."""
    import torch

    from onnxport.exporters.adapters import ADAPTERS
    from onnxport.exporters.dummy import trace_shape, validation_shapes
    from onnxport.exporters.spec import default_input_names, derive_spec, example_inputs
    from onnxport.exporters.validate import validate
    from onnxport.testing import tiny_model_for

    start = time.perf_counter()
    torch.set_num_threads(1)
    if not comparable(task):
        reason = f"{task} is exported as several graphs: not compared with the peer"
        return PairResult(model_type, task, SKIP, "not comparable", reason, _since(start))
    try:
        model = tiny_model_for(model_type, task)
        config = model.config
        adapter = ADAPTERS.get(model_type)
        model = adapter.prepare_model(model, task)
        traced = trace_shape()
        names = adapter.input_names(
            config, task, default_input_names(model, config, None, with_past=False)
        )
        # onnxport's reading of the model: which inputs, which outputs, at which shapes.
        spec = derive_spec(model, get_task(task), names, adapter=adapter, traced=traced)
    except Exception as err:  # neither exporter gets a model or inputs: not the peer's failure
        return PairResult(
            model_type, task, SKIP, type(err).__name__, _first_line(err), _since(start)
        )
    try:
        from transformers.exporters import OnnxConfig, OnnxExporter
    except ImportError as err:  # Transformers before 5 has no exporter
        return PairResult(model_type, task, SKIP, "ImportError", _first_line(err), _since(start))
    sample = example_inputs(spec, config, adapter, traced)
    with tempfile.TemporaryDirectory(prefix="onnxport-peer-") as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            peer_model: Any = model  # a PreTrainedModel, or the adapter's wrapper of one
            exported = OnnxExporter().export(peer_model, dict(sample), OnnxConfig(dynamic=True))
            OnnxExporter.save_program(exported.program, path)
        except Exception as err:
            category = f"export {type(err).__name__}"
            return PairResult(model_type, task, FAIL, category, _first_line(err), _since(start))
        try:
            missing = _missing_outputs(path, spec.output_names)
            if missing:
                reason = f"the graph lacks outputs {', '.join(missing)}"
                return PairResult(model_type, task, FAIL, "outputs", reason, _since(start))
            report = validate(path, model, spec, adapter, validation_shapes(traced))
        except Exception as err:
            category = type(err).__name__
            return PairResult(model_type, task, FAIL, category, _first_line(err), _since(start))
    # Extra graph outputs (the peer also returns the cache, a dual encoder's tower outputs)
    # are not held against it: every output onnxport compares must match.
    if not report.checks or not all(check.passed for check in report.checks):
        summary = report.summary()
        return PairResult(model_type, task, FAIL, "ValidationError", summary, _since(start))
    return PairResult(model_type, task, PASS, seconds=_since(start))


def _missing_outputs(path: Path, wanted: list[str]) -> list[str]:
    """The spec's outputs the graph does not produce (validation only compares shared names)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    produced = {output.name for output in graph.output}
    return [name for name in wanted if name not in produced]


def side_by_side(ours: list[PairResult], peer: list[PairResult]) -> str:
    """A table of both statuses per pair, and the two pass counts."""
    theirs = {(r.model_type, r.task): r for r in peer}
    lines = [f"{'pair':<52} onnxport  {PEER}"]
    for result in ours:
        other = theirs.get((result.model_type, result.task))
        other_text = "-" if other is None else other.status
        if other is not None and other.status != PASS:
            other_text += f" ({other.category}: {other.reason[:80]})"
        lines.append(f"{result.model_type + ' ' + result.task:<52} {result.status:<9} {other_text}")
    passed = sum(r.status == PASS for r in ours)
    peer_passed = sum(r.status == PASS for r in peer)
    lines.append(f"PASS: onnxport {passed} of {len(ours)}, {PEER} {peer_passed} of {len(peer)}")
    only_peer = [
        f"{r.model_type} {r.task}"
        for r in ours
        if r.status != PASS and theirs.get((r.model_type, r.task), r).status == PASS
    ]
    if only_peer:
        lines.append(f"only {PEER} passes: {', '.join(only_peer)}")
    return "\n".join(lines)


if __name__ == "__main__":  # a worker: runs each MODEL_TYPE::TASK given, one result per line
    for argument in sys.argv[1:]:
        name, task_name = argument.split("::", 1)
        print(_MARK + json.dumps(asdict(run_peer_pair(name, task_name))), flush=True)
