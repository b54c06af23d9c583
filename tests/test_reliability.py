"""Reliability: damaged checkpoints, unsafe pickles, full disks, dtypes, reproducibility.

Every failure is one `Error:` line with the documented exit code, no traceback, and nothing
left behind; a good export is byte-for-byte reproducible and says how it was made.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from safetensors.torch import load_file

from onnxport import export
from onnxport.cli.main import main
from onnxport.errors import (
    ModelFileError,
    OutputExistsError,
    OutputWriteError,
    ValidationError,
)
from onnxport.exporters.adapters import ADAPTERS
from onnxport.runtime import ORTModelForFeatureExtraction
from test_errors import assert_nothing_written, assert_one_error_line, run_cli

Checkpoint = Callable[[str, str], Path]
MARKER = "onnxport-test-pickle-ran"


class _RunsCode:
    """Unpickling this runs a shell command: what a malicious checkpoint does."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.target}",))


def _copy(checkpoint: Checkpoint, tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(checkpoint("bert", "fill-mask"), folder)
    return folder


def _damage(case: str, folder: Path) -> str:
    """Damage `folder` as `case` says; returns a fragment of the expected error line."""
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    if case == "truncated safetensors":
        weights.write_bytes(data[: len(data) // 2])
        return "'model.safetensors' in"
    if case == "corrupt safetensors header":
        weights.write_bytes(b"\xff" * 64 + data[64:])
        return "is truncated or corrupt"
    if case == "config does not fit the weights":
        config = json.loads((folder / "config.json").read_text())
        config["hidden_size"] = config["intermediate_size"] = 64
        (folder / "config.json").write_text(json.dumps(config))
        return "do not fit its config.json: 'bert.embeddings"
    state = load_file(str(weights))
    weights.unlink()
    if case == "truncated pickle":
        torch.save(state, folder / "pytorch_model.bin")
        pickled = (folder / "pytorch_model.bin").read_bytes()
        (folder / "pytorch_model.bin").write_bytes(pickled[: len(pickled) // 2])
        return "'pytorch_model.bin' in"
    if case == "pickle that runs code":
        state["evil"] = _RunsCode(folder.parent / MARKER)  # type: ignore[assignment]
        torch.save(state, folder / "pytorch_model.bin")
        return "holds Python objects besides tensors"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    ["truncated safetensors", "corrupt safetensors header", "config does not fit the weights",
     "truncated pickle", "pickle that runs code"],
)  # fmt: skip
def test_damaged_checkpoints(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint: Checkpoint
) -> None:
    folder = _copy(checkpoint, tmp_path, "ckpt")
    fragment = _damage(case, folder)
    out = tmp_path / "out"
    code, _, err = run_cli(["export", "onnx", "--model", str(folder), str(out)], capsys)
    assert code == 2
    assert_one_error_line(err, fragment)
    assert_nothing_written(tmp_path, out)
    assert not (tmp_path / MARKER).exists()  # the pickle's code never ran


@pytest.mark.parametrize(
    "case", ["corrupt safetensors header", "config does not fit the weights", "truncated pickle"]
)
def test_damaged_checkpoint_is_a_value_error_not_a_missing_file(
    case: str, tmp_path: Path, checkpoint: Checkpoint
) -> None:
    folder = _copy(checkpoint, tmp_path, "ckpt")
    fragment = _damage(case, folder)
    with pytest.raises(ModelFileError, match=fragment) as info:
        export(folder, tmp_path / "out")
    assert isinstance(info.value, ValueError)
    assert not isinstance(info.value, FileNotFoundError)  # the files are there
    assert info.value.model == str(folder)


def test_pickle_checkpoint_of_plain_tensors_loads_safely(
    tmp_path: Path, checkpoint: Checkpoint
) -> None:
    folder = _copy(checkpoint, tmp_path, "pickled")
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    result = export(folder, tmp_path / "out")
    assert result.validation is not None
    assert result.validation.passed


def _limited_writes(limit: int) -> Callable[[], None]:
    def apply() -> None:  # in the child: writes past `limit` bytes fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_disk_full_while_writing_keeps_the_old_output(
    tmp_path: Path, checkpoint: Checkpoint
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("the previous export")
    # A file-size limit stands in for a full disk: the graph (~1 MB) cannot be written.
    process = subprocess.run(
        [sys.executable, "-m", "onnxport", "export", "onnx", "--force", "--model",
         str(checkpoint("bert", "fill-mask")), str(out)],
        capture_output=True, text=True, preexec_fn=_limited_writes(100_000), timeout=300,
    )  # fmt: skip
    assert process.returncode == 2, process.stderr
    assert "Traceback" not in process.stderr
    assert_one_error_line(process.stderr, "Could not write the export", "File too large")
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_output_folder_that_cannot_be_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint: Checkpoint
) -> None:
    # /proc refuses new folders even to root (tests may run as root, where chmod is moot).
    out = Path("/proc/onnxport-test-output")
    ckpt = str(checkpoint("bert", "fill-mask"))
    code, _, err = run_cli(["export", "onnx", "--model", ckpt, str(out)], capsys)
    assert code == 2
    assert_one_error_line(err, "Cannot create a folder in '/proc'")
    # Through the library: an OSError with the system's errno, not "the folder exists".
    with pytest.raises(OutputWriteError, match="Cannot create a folder") as info:
        export(ckpt, out)
    assert isinstance(info.value, OSError)
    assert not isinstance(info.value, FileExistsError)
    assert info.value.errno is not None
    assert info.value.path == str(out)


def test_output_in_the_way_is_a_file_exists_error(tmp_path: Path, checkpoint: Checkpoint) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("the previous export")
    with pytest.raises(OutputExistsError, match="not empty") as info:
        export(checkpoint("bert", "fill-mask"), out)
    assert isinstance(info.value, FileExistsError)
    assert info.value.path == str(out)


def test_a_graph_onnx_runtime_cannot_load_fails_validation_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    checkpoint: Checkpoint,
) -> None:
    from onnx import TensorProto, helper

    from onnxport.exporters.capture import DynamoStrategy

    def write_unloadable(self, module, args, spec, opset, path, external_data) -> None:
        # Well-formed ONNX (metadata can be added) that ONNX Runtime refuses to load.
        node = helper.make_node("Frobnicate", ["input_ids"], ["logits"], domain="acme")
        graph = helper.make_graph(
            [node], "unloadable",
            [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", "s"])],
        )  # fmt: skip
        opsets = [helper.make_opsetid("", 18), helper.make_opsetid("acme", 1)]
        onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))

    monkeypatch.setattr(DynamoStrategy, "run", write_unloadable)
    out = tmp_path / "out"
    ckpt = str(checkpoint("bert", "fill-mask"))
    with pytest.raises(ValidationError, match=r"ONNX Runtime cannot load .*Frobnicate") as info:
        export(ckpt, out)
    assert info.value.report is None
    code, _, err = run_cli(["export", "onnx", "--model", ckpt, str(out)], capsys)
    assert code == 1
    assert_one_error_line(err, "ONNX Runtime cannot load")
    assert_nothing_written(tmp_path, out)


def test_bf16_on_cpu_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint: Checkpoint
) -> None:
    out = tmp_path / "out"
    ckpt = str(checkpoint("bert", "fill-mask"))
    code, _, err = run_cli(["export", "onnx", "--model", ckpt, "--dtype", "bf16", str(out)], capsys)
    assert code == 2
    assert_one_error_line(err, "--dtype bf16 cannot be validated on the CPU", "--no-validate")
    assert_nothing_written(tmp_path, out)


def test_fp16_export_halves_the_weights_and_matches_pytorch(
    tmp_path: Path, checkpoint: Checkpoint
) -> None:
    folder = checkpoint("bert", "feature-extraction")
    export(folder, tmp_path / "fp32", external_data=True)
    half = export(folder, tmp_path / "fp16", dtype="fp16", external_data=True)
    assert half.validation is not None
    assert half.validation.passed
    assert half.validation.atol == pytest.approx(1e-2)
    data = "model.onnx.data"
    ratio = (tmp_path / "fp16" / data).stat().st_size / (tmp_path / "fp32" / data).stat().st_size
    assert 0.4 < ratio < 0.6, ratio
    graph = onnx.load(str(half.onnx_path))
    assert graph.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    # The runtime class takes the usual int64 ids and returns fp16, close to fp32 PyTorch.
    ids = torch.randint(5, 90, (2, 11))
    model = ORTModelForFeatureExtraction.from_pretrained(tmp_path / "fp16")
    assert model.dtype == torch.float16  # what pipelines read to cast their inputs
    got = model(input_ids=ids)
    from transformers import AutoModel

    with torch.no_grad():
        expected = AutoModel.from_pretrained(folder)(input_ids=ids).last_hidden_state
    assert got.last_hidden_state.dtype == torch.float16
    np.testing.assert_allclose(got.last_hidden_state.float(), expected, atol=2e-2)


def test_in_memory_model_in_another_dtype_is_refused(tmp_path: Path) -> None:
    from onnxport.errors import ExportOptionError
    from onnxport.testing import tiny_model

    with pytest.raises(ExportOptionError, match=r"convert it first \(model.to\(torch.float16\)\)"):
        export(tiny_model("bert"), tmp_path / "out", dtype="fp16")


def test_exports_are_byte_identical_and_record_how_they_were_made(
    tmp_path: Path, checkpoint: Checkpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = checkpoint("bert", "text-classification")
    first = export(folder, tmp_path / "a", external_data=True)
    second = export(folder, tmp_path / "b", external_data=True)
    names = sorted(p.name for p in first.files)
    assert "model.onnx.data" in names
    assert names == sorted(p.name for p in second.files)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    metadata = {p.key: p.value for p in onnx.load(str(first.onnx_path)).metadata_props}
    assert metadata["torch_version"] == torch.__version__
    assert {"onnxport_version", "transformers_version", "onnx_version"} <= set(metadata)
    options = json.loads(metadata["export_options"])
    assert options["task"] == "text-classification"
    assert options["external_data"] is True
    assert options["dtype"] == "fp32"

    assert main(["inspect", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert "weights: model.onnx.data" in printed
    assert "input_ids: int64[batch_size, sequence_length]" in printed
    assert "logits: float32[batch_size, " in printed
    assert f"torch {torch.__version__}" in printed


def test_inspect_refuses_what_is_not_an_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["inspect", str(tmp_path / "empty")], capsys)
    assert code == 2
    assert_one_error_line(err, "No .onnx file")
    (tmp_path / "broken.onnx").write_bytes(b"not a protobuf")
    code, _, err = run_cli(["inspect", str(tmp_path / "broken.onnx")], capsys)
    assert code == 2
    assert_one_error_line(err, "is not a readable ONNX file")


def test_an_export_leaves_no_reference_to_the_model_weights(tmp_path: Path) -> None:
    """After an export the weights can be freed: nothing the exporter keeps still holds them.

    onnxscript's shared rewrite rules keep the last graph they matched, whose initializers are
    the model's own tensors; without releasing that, a large model stays resident during
    validation beside ONNX Runtime's copy of its weights.
    """
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=37,
    )  # fmt: skip
    model = BertModel(config).eval()
    alive = [weakref.ref(p) for p in model.parameters()]
    export(model, tmp_path / "out", validate_export=False)
    del model
    gc.collect()
    assert [ref for ref in alive if ref() is not None] == []


def test_validation_runs_pytorch_before_the_model_is_released(
    tmp_path: Path, checkpoint: Checkpoint
) -> None:
    """A model onnxport loaded itself is freed before ONNX Runtime runs, and still validates."""
    from transformers import AutoModel

    from onnxport.exporters.dummy import trace_shape, validation_shapes
    from onnxport.exporters.validate import validate

    result = export(checkpoint("bert", "feature-extraction"), tmp_path / "out")
    assert result.validation is not None
    assert result.validation.passed
    model = AutoModel.from_pretrained(checkpoint("bert", "feature-extraction")).eval()
    released: list[str] = []

    def release() -> None:
        model.to("meta")  # any later PyTorch run would fail on meta tensors
        released.append("yes")

    shapes = validation_shapes(trace_shape(2, 16, with_past=False))
    report = validate(result.onnx_path, model, result.spec, ADAPTERS.get("bert"), shapes,
                      release_model=release)  # fmt: skip
    assert released == ["yes"]
    assert report.passed
    assert len(report.checks) >= 2


def test_validation_allows_float32_rounding_relative_to_the_output_and_no_more() -> None:
    from onnxport.exporters.validate import compare

    # tiny mT5's logits: up to 80, PyTorch and ONNX Runtime 1.2e-4 apart (both 8e-4 from
    # float64), on values large and small alike
    large = np.linspace(-80.0, 80.0, 12, dtype=np.float32).reshape(2, 6)
    assert compare("logits", large, large + 1.2e-4, atol=1e-4, label="x").values_ok
    assert not compare("logits", large, large + 1e-3, atol=1e-4, label="x").values_ok
    small = np.full((2, 6), 0.5, np.float32)
    assert not compare("logits", small, small + 1.2e-4, atol=1e-4, label="x").values_ok


def test_validation_matches_equal_infinities_and_nothing_else() -> None:
    from onnxport.exporters.validate import compare

    # Grounding DINO masks the logits of padding text tokens with -inf, on both sides.
    reference = np.array([[1.0, -np.inf, np.nan]], np.float32)
    assert compare("logits", reference, reference.copy(), atol=1e-4, label="x").values_ok
    for wrong in (2.0, np.inf, -5.0):
        other = reference.copy()
        other[0, 1] = wrong
        assert not compare("logits", reference, other, atol=1e-4, label="x").values_ok
    nan_for_value = reference.copy()
    nan_for_value[0, 0] = np.nan
    assert not compare("logits", reference, nan_for_value, atol=1e-4, label="x").values_ok
