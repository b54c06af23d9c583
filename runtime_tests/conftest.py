"""The torch-free suite: run in a venv holding only `pip install .` (see `make test-runtime`).

Folders and PyTorch reference outputs come from `make_fixtures.py`, run beforehand in the full
environment; their folder is given by ONNXPORT_RUNTIME_FIXTURES. Nothing here may import torch.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="onnxport-runtime-hf-")
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest


@pytest.fixture(scope="session")
def fixtures() -> Path:
    folder = os.environ.get("ONNXPORT_RUNTIME_FIXTURES")
    if not folder or not (Path(folder) / "expected.json").is_file():
        pytest.fail(
            "ONNXPORT_RUNTIME_FIXTURES must name the folder make_fixtures.py wrote "
            "(run `make test-runtime`)."
        )
    return Path(folder)


@pytest.fixture(scope="session")
def expected(fixtures: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((fixtures / "expected.json").read_text(encoding="utf-8"))
    return data
