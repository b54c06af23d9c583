"""CLI commands besides export errors: listings, version, legacy form, skip-validation."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import onnxport
from onnxport.cli.main import main
from onnxport.coverage.support import TESTED_MODEL_TYPES, markdown_tables


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"onnxport {onnxport.__version__}"


def test_tasks_lists_synonyms(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name in ("feature-extraction", "fill-mask", "text-classification",
                 "token-classification", "question-answering", "multiple-choice"):  # fmt: skip
        assert re.search(rf"^{name}\s", out, re.MULTILINE), name
    assert "sentiment-analysis" in out
    assert "ORTModelForQuestionAnswering" in out


def test_architectures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["architectures"]) == 0
    out = capsys.readouterr().out
    for model_type in TESTED_MODEL_TYPES:
        assert re.search(rf"^{re.escape(model_type)}\s+tested", out, re.MULTILINE)
    assert "model types supported" in out
    assert main(["architectures", "--all"]) == 0
    everything = capsys.readouterr().out
    assert len(everything.splitlines()) > len(out.splitlines())
    # Model types only the packaged coverage matrix validated are listed as such.
    assert re.search(r"^vit\s+validated\s+.*image-classification", out, re.MULTILINE)
    # With --all, a model type that fails says why.
    assert re.search(
        r"^fastspeech2_conformer_with_hifigan\s+failing\s+not \S+: FAIL SpecError",
        everything,
        re.MULTILINE,
    )


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "export" in capsys.readouterr().out


def test_legacy_form_and_no_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint
) -> None:
    out = tmp_path / "out"
    assert main(["--model", str(checkpoint("albert", "fill-mask")), "--no-validate", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "Validation skipped" in stdout
    assert (out / "model.onnx").is_file()


def test_console_script_runs(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "onnxport"
    result = subprocess.run([str(script), "tasks"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "question-answering" in result.stdout


def test_readme_tables_are_generated() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- support:start -->") + len("<!-- support:start -->")
    end = readme.index("<!-- support:end -->")
    assert readme[start:end].strip() == markdown_tables().strip(), "run `make docs`"


def test_cli_hides_optional_package_import_chatter() -> None:
    # transformers probes torchao (installed by the tflite extra), which logs warnings about
    # CUDA kernels at import; the CLI's logging set-up keeps them off the user's terminal.
    code = (
        "from onnxport.cli.main import _configure_logging; _configure_logging(False); "
        "from transformers import pipeline"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Failed to load" not in result.stderr
    assert "natively supported" not in result.stderr
