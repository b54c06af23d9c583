"""The coverage matrix runner: pairs enumerated from Auto mappings, each run in a worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onnxport.cli.main import main
from onnxport.coverage import enumerate_pairs
from onnxport.errors import VariantError


def test_pairs_come_from_the_auto_mappings() -> None:
    pairs = enumerate_pairs(["bert", "gpt2"], ["fill-mask", "text-generation"])
    # GPT-2 has no masked-LM head in transformers; BERT has a causal-LM one.
    assert pairs == [
        ("bert", "fill-mask"),
        ("bert", "text-generation"),
        ("gpt2", "text-generation"),
    ]
    assert len(enumerate_pairs()) > 500  # every supported task over every model type
    with pytest.raises(VariantError, match="canine"):
        enumerate_pairs(["canine"], ["text-generation"])


def test_matrix_records_pass_and_fail_with_reasons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = ["--json", str(tmp_path / "c.json"), "--markdown", str(tmp_path / "c.md")]
    argv = ["coverage", "--model-types", "bert,canine", "--tasks", "fill-mask,feature-extraction",
            "--jobs", "2", *outputs]  # fmt: skip
    assert main(argv) == 0
    data = json.loads((tmp_path / "c.json").read_text())
    status = {(p["model_type"], p["task"]): p for p in data["pairs"]}
    assert status[("bert", "fill-mask")]["status"] == "PASS"
    assert status[("bert", "feature-extraction")]["status"] == "PASS"
    canine = status[("canine", "feature-extraction")]
    assert canine["status"] == "FAIL"
    assert canine["category"] == "SpecError"
    assert "vocab_size" in canine["reason"]
    assert data["summary"]["model_types_passing"] == 1
    assert "| `canine` | feature-extraction | FAIL | SpecError |" in (tmp_path / "c.md").read_text()
    assert "PASS 2, FAIL 1, SKIP 0" in capsys.readouterr().out
