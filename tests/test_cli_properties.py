"""Property-based: random combinations of bad checkpoints, options and outputs at the CLI.

Whatever the combination, the CLI exits 2 with one line when any input is a user mistake and 0
otherwise, never reports an unexpected exception, prints no traceback, leaves no partial files,
and never touches an existing output it was not told to replace.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from onnxport.cli.main import main

Checkpoint = Callable[[str, str], Path]

MODELS = ("good", "missing", "empty", "config not JSON", "unknown type", "truncated weights",
          "a file")  # fmt: skip
TASKS = (None, "fill-mask", "text-classification", "no-such-task", "image-classification")
OPSETS = (None, "7", "18", "99")
ATOLS = (None, "1e-3", "-1", "tiny")
BATCHES = (None, "1", "3", "16")
OUTPUTS = ("new", "existing file", "non-empty folder", "non-empty folder --force", "/proc")
DTYPES = (None, "fp32", "bf16", "int3")
# The values above that are the user's mistake: any one of them must be refused with exit 2
# and one line. The rest, all together, export the tiny BERT checkpoint.
MISTAKES = {
    "model": set(MODELS) - {"good"},
    "task": {"no-such-task", "image-classification"},  # unknown; no head on BERT
    "opset": {"7", "99"},
    "atol": {"-1", "tiny"},
    "batch": {"1", "16"},  # below 2; the traced size
    "output": {"existing file", "non-empty folder", "/proc"},
    "dtype": {"bf16", "int3"},  # bf16 cannot be validated on the CPU
}


def _model(kind: str, root: Path, good: Path) -> Path:
    folder = root / "model"
    if kind == "missing":
        return folder
    if kind == "a file":
        folder.write_text("not a folder")
        return folder
    folder.mkdir()
    if kind == "empty":
        return folder
    shutil.copytree(good, folder, dirs_exist_ok=True)
    if kind == "config not JSON":
        (folder / "config.json").write_text("{not json")
    elif kind == "unknown type":
        (folder / "config.json").write_text(json.dumps({"model_type": "no-such-model"}))
    elif kind == "truncated weights":
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    return folder


def _output(kind: str, root: Path) -> tuple[Path, list[str], dict[str, bytes] | None]:
    """The output path, extra flags, and the existing content that must survive (if any)."""
    out = root / "out"
    if kind == "/proc":
        return Path("/proc/onnxport-property-test"), [], None
    if kind == "existing file":
        out.write_text("keep me")
        return out, [], {"": b"keep me"}
    if kind.startswith("non-empty folder"):
        out.mkdir()
        (out / "old.txt").write_text("old export")
        force = kind.endswith("--force")
        return out, ["--force"] if force else [], None if force else {"old.txt": b"old export"}
    return out, [], None


def _snapshot(out: Path) -> dict[str, bytes]:
    if out.is_file():
        return {"": out.read_bytes()}
    return {p.name: p.read_bytes() for p in out.iterdir()} if out.is_dir() else {}


@pytest.mark.filterwarnings("ignore")
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Random draws rarely pick only valid values (about 1 in 600): the exporting cases are pinned.
@example(model="good", task=None, opset=None, atol=None, batch=None, output="new", dtype=None)
@example(
    model="good", task="text-classification", opset="18", atol="1e-3", batch="3",
    output="non-empty folder --force", dtype="fp32",
)  # fmt: skip
@given(
    model=st.sampled_from(MODELS),
    task=st.sampled_from(TASKS),
    opset=st.sampled_from(OPSETS),
    atol=st.sampled_from(ATOLS),
    batch=st.sampled_from(BATCHES),
    output=st.sampled_from(OUTPUTS),
    dtype=st.sampled_from(DTYPES),
)
def test_any_combination_fails_cleanly_or_succeeds(
    model: str,
    task: str | None,
    opset: str | None,
    atol: str | None,
    batch: str | None,
    output: str,
    dtype: str | None,
    checkpoint: Checkpoint,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = Path(tempfile.mkdtemp(prefix="onnxport-prop-"))
    try:
        folder = _model(model, root, checkpoint("bert", "fill-mask"))
        out, flags, kept = _output(output, root)
        args = ["export", "onnx", "--model", str(folder), *flags]
        for flag, value in (("--task", task), ("--opset", opset), ("--atol", atol),
                            ("--batch-size", batch), ("--dtype", dtype)):  # fmt: skip
            if value is not None:
                args += [flag, value]
        capsys.readouterr()
        try:
            code = main([*args, str(out)])
        except SystemExit as exit_info:  # argparse refuses a malformed value before main runs
            code = int(exit_info.code or 0)
        err = capsys.readouterr().err
        assert "Traceback" not in err
        # An exception the CLI did not expect is a bug whatever the input, never a clean exit.
        assert "Error: unexpected" not in err, err
        chosen = {"model": model, "task": task, "opset": opset, "atol": atol, "batch": batch,
                  "output": output, "dtype": dtype}  # fmt: skip
        mistakes = [key for key, value in chosen.items() if value in MISTAKES[key]]
        if mistakes:
            assert code == 2, (mistakes, err)
            lines = [line for line in err.splitlines() if line.startswith("Error:")]
            usage = [line for line in err.splitlines() if ": error: " in line]
            assert len(lines) + len(usage) == 1, err
        else:
            assert code == 0, err
            assert (out / "model.onnx").is_file()
        if kept is not None and code:
            assert _snapshot(out) == kept  # what was there is untouched
        assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    finally:
        shutil.rmtree(root, ignore_errors=True)
