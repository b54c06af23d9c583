"""User mistakes: one clear line, the documented exit code, no traceback, nothing written."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from onnxport import export
from onnxport.cli.main import main
from onnxport.errors import (
    ModelFileError,
    ModelLoadError,
    ModelNotFoundError,
    TaskError,
    UnsupportedModelError,
    write_failure,
)
from onnxport.exporters.capture import DynamoStrategy


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(err: str, *fragments: str) -> None:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_nothing_written(parent: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(f".{out.name}.")]


def _bad_folders(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(json.dumps({"model_type": "bert"}))
    bad_json = tmp_path / "bad-json"
    bad_json.mkdir()
    (bad_json / "config.json").write_text("{not json")
    (bad_json / "model.safetensors").write_bytes(b"")
    empty = tmp_path / "empty"
    empty.mkdir()
    unknown = tmp_path / "unknown-arch"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({"model_type": "no-such-model"}))
    a_file = tmp_path / "weights.safetensors"
    a_file.write_bytes(b"x")
    return {
        "missing folder": (tmp_path / "does-not-exist", "does not exist"),
        "no weights": (no_weights, "No weights in"),
        "config not JSON": (bad_json, "not valid JSON"),
        "no config": (empty, "No config.json"),
        "unknown architecture": (unknown, "Unknown architecture 'no-such-model'"),
        "file instead of folder": (a_file, "is a file"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing folder", "no weights", "config not JSON", "no config", "unknown architecture",
     "file instead of folder"],
)  # fmt: skip
def test_bad_checkpoints(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, fragment = _bad_folders(tmp_path)[case]
    out = tmp_path / "out"
    code, _, err = run_cli(["export", "onnx", "--model", str(folder), str(out)], capsys)
    assert code == 2
    assert_one_error_line(err, fragment)
    assert_nothing_written(tmp_path, out)


def test_hub_id_offline_and_not_cached(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli(["export", "onnx", "--model", "acme/no-such-model", str(out)], capsys)
    assert code == 2
    assert_one_error_line(err, "not in the Hub cache")
    assert_nothing_written(tmp_path, out)


def test_unknown_task(tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint) -> None:
    out = tmp_path / "out"
    args = ["export", "onnx", "--model", str(checkpoint("bert", "fill-mask")), "--task",
            "summarise-everything", str(out)]  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert_one_error_line(err, "Unknown task 'summarise-everything'", "question-answering")
    assert_nothing_written(tmp_path, out)


def test_task_without_head(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    out = tmp_path / "out"
    args = ["export", "onnx", "--model", str(folder), "--task", "fill-mask", str(out)]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert_one_error_line(err, "'gpt2' has no head for task 'fill-mask'", "text-classification")
    assert_nothing_written(tmp_path, out)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--opset", "7"], "--opset 7 is outside"),
        (["--batch-size", "1"], "--batch-size must be at least 2"),
        (["--batch-size", "16"], "must differ"),
    ],
)
def test_bad_options(
    extra: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint
) -> None:
    out = tmp_path / "out"
    args = ["export", "onnx", "--model", str(checkpoint("bert", "fill-mask")), *extra, str(out)]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert_one_error_line(err, fragment)
    assert_nothing_written(tmp_path, out)


def test_atol_not_a_number(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "onnx", "--model", "x", "--atol", "tiny", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "'tiny' is not a number" in err
    assert "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_without_cuda(tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint) -> None:
    out = tmp_path / "out"
    args = ["export", "onnx", "--model", str(checkpoint("bert", "fill-mask")), "--device",
            "cuda", str(out)]  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert_one_error_line(err, "no CUDA device")
    assert_nothing_written(tmp_path, out)


def test_output_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint) -> None:
    target = tmp_path / "out"
    target.write_text("keep me")
    args = ["export", "onnx", "--model", str(checkpoint("bert", "fill-mask")), str(target)]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert_one_error_line(err, "is a file")
    assert target.read_text() == "keep me"


def test_non_empty_output_needs_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    ckpt = str(checkpoint("bert", "fill-mask"))
    code, _, err = run_cli(["export", "onnx", "--model", ckpt, str(out)], capsys)
    assert code == 2
    assert_one_error_line(err, "not empty", "--force")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]

    code, stdout, _ = run_cli(["export", "onnx", "--model", ckpt, "--force", str(out)], capsys)
    assert code == 0
    assert "The ONNX export succeeded" in stdout
    assert (out / "model.onnx").is_file()
    assert not (out / "notes.txt").exists()


def test_validation_failure_fails_and_keeps_old_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint
) -> None:
    ckpt = str(checkpoint("bert", "question-answering"))
    out = tmp_path / "out"
    assert run_cli(["export", "onnx", "--model", ckpt, str(out)], capsys)[0] == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    args = ["export", "onnx", "--model", ckpt, "--atol", "1e-12", "--force", str(out)]
    code, stdout, err = run_cli(args, capsys)
    assert code == 1
    assert "-[x] values not close enough, max diff:" in stdout
    assert_one_error_line(err, "Validation failed", "differs by up to", "left as it was")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_interrupt_mid_write_leaves_old_state(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    checkpoint: Callable[[str, str], Path],
) -> None:
    ckpt = str(checkpoint("bert", "fill-mask"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old state")

    def half_write(self, module, args, spec, opset, path, external_data) -> None:
        path.write_bytes(b"half an onnx file")
        raise KeyboardInterrupt

    monkeypatch.setattr(DynamoStrategy, "run", half_write)
    code, _, err = run_cli(["export", "onnx", "--model", ckpt, "--force", str(out)], capsys)
    assert code == 130
    assert "Interrupted" in err
    assert "Traceback" not in err
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_sigterm_during_export_leaves_nothing(tmp_path: Path, checkpoint) -> None:
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "onnxport", "export", "onnx", "--model",
         str(checkpoint("bert", "fill-mask")), str(out)],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("Capturing the graph"):
            process.send_signal(signal.SIGTERM)
            break
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert_nothing_written(tmp_path, out)


def test_debug_variable_shows_the_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONNXPORT_DEBUG", "1")
    with pytest.raises(ModelLoadError):
        main(["export", "onnx", "--model", str(tmp_path / "missing"), str(tmp_path / "out")])


def test_errors_are_builtin_subclasses() -> None:
    assert issubclass(ModelNotFoundError, ModelLoadError)
    assert issubclass(ModelNotFoundError, FileNotFoundError)
    assert issubclass(ModelFileError, ModelLoadError)
    assert issubclass(ModelFileError, ValueError)
    assert not issubclass(ModelFileError, OSError)
    assert issubclass(TaskError, ValueError)


# Which builtin each bad folder's error also is: `except FileNotFoundError` in a caller must
# catch a missing model, never a corrupt config.json.
LOAD_ERRORS: dict[str, tuple[type[Exception], type[Exception]]] = {
    "missing folder": (ModelNotFoundError, FileNotFoundError),
    "no weights": (ModelNotFoundError, FileNotFoundError),
    "no config": (ModelNotFoundError, FileNotFoundError),
    "file instead of folder": (ModelNotFoundError, FileNotFoundError),
    "config not JSON": (ModelFileError, ValueError),
    "unknown architecture": (UnsupportedModelError, ValueError),
}


@pytest.mark.parametrize("case", list(LOAD_ERRORS))
def test_load_errors_are_the_matching_builtin(case: str, tmp_path: Path) -> None:
    folder, fragment = _bad_folders(tmp_path)[case]
    error, builtin = LOAD_ERRORS[case]
    with pytest.raises(error, match=fragment) as info:
        export(folder, tmp_path / "out")
    assert isinstance(info.value, builtin)
    if builtin is not FileNotFoundError:
        assert not isinstance(info.value, FileNotFoundError)
    if isinstance(info.value, ModelLoadError):
        assert Path(info.value.model).name == folder.name


def test_missing_tokenizer_exports_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint
) -> None:
    import shutil

    folder = tmp_path / "no-tokenizer"
    shutil.copytree(checkpoint("bert", "fill-mask"), folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    out = tmp_path / "out"
    code, stdout, err = run_cli(["export", "onnx", "--model", str(folder), str(out)], capsys)
    assert code == 0, err
    assert "No tokenizer files" in err
    assert "cannot be used with the tokenizer-based API" in err
    assert "The ONNX export succeeded" in stdout
    assert not (out / "tokenizer.json").exists()


def test_write_failure_stops_at_a_cycle_in_the_cause_chain() -> None:
    # A wrapper re-raised as its own cause's context (what re-raising a root cause from its
    # handler does) must not loop forever.
    wrapper, cause = RuntimeError("step 1/3 failed"), NameError("name 'x' is not defined")
    wrapper.__cause__, cause.__context__ = cause, wrapper
    assert write_failure(wrapper) is None
    full = OSError(errno.ENOSPC, "No space left on device")
    cause.__cause__ = full
    assert write_failure(wrapper) is full
