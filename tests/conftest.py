"""Offline, isolated test environment and shared tiny-checkpoint fixtures."""

from __future__ import annotations

import os
import tempfile

# Set before transformers / huggingface_hub read them at import time.
_HF_HOME = tempfile.mkdtemp(prefix="onnxport-test-hf-")
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("ONNXPORT_DEBUG", None)

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import transformers  # noqa: E402

from model_table import ALL_CASES  # noqa: E402
from onnxport.testing import save_tiny_checkpoint  # noqa: E402

transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


@pytest.fixture(autouse=True)
def _isolated_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test gets its own empty Hub cache and stays offline."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("ONNXPORT_DEBUG", raising=False)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    """Build (once per session) a tiny random checkpoint with tokenizer for a model/task."""
    cache: dict[tuple[str, str], Path] = {}

    def build(model_type: str, task: str) -> Path:
        key = (model_type, task)
        if key not in cache:
            folder = tmp_path_factory.mktemp(f"ckpt-{model_type}-{task}")
            overrides = ALL_CASES[model_type].overrides if model_type in ALL_CASES else {}
            cache[key] = save_tiny_checkpoint(model_type, task, folder, **overrides)
        return cache[key]

    return build


@pytest.fixture(scope="session")
def exported(
    tmp_path_factory: pytest.TempPathFactory, checkpoint: Callable[[str, str], Path]
) -> Callable[[str, str], Path]:
    """Export (once per session) a tiny checkpoint; returns the output folder."""
    from onnxport import export

    cache: dict[tuple[str, str], Path] = {}

    def build(model_type: str, task: str) -> Path:
        key = (model_type, task)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"onnx-{model_type}-{task}") / "model"
            export(checkpoint(model_type, task), out, task=task)
            cache[key] = out
        return cache[key]

    return build
