"""The runtime in an environment without torch: ORT classes, pipelines, the missing-extra errors.

Every expected value was computed by PyTorch (the model itself, or transformers' PyTorch
pipelines) in the full environment; see make_fixtures.py.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ATOL = 1e-4
RAW_CASES = [
    "text-classification",
    "token-classification",
    "question-answering",
    "fill-mask",
    "feature-extraction",
    "minilm",
]
PIPELINE_CASES = [
    "text-classification",
    "token-classification",
    "question-answering",
    "fill-mask",
    "feature-extraction",
    "zero-shot-classification",
    "image-classification",
]
ONNXPORT = [sys.executable, "-m", "onnxport"]


def test_torch_is_not_installed() -> None:
    assert importlib.util.find_spec("torch") is None
    with pytest.raises(ImportError):
        import torch  # noqa: F401


def test_import_onnxport_loads_no_exporter() -> None:
    code = (
        "import sys, onnxport; onnxport.ORTModelForSequenceClassification; onnxport.pipeline; "
        "print(sorted(m for m in ('torch', 'onnx', 'onnxscript') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _close(got: Any, want: Any, where: str) -> None:
    """Equal structure and strings; numbers within ATOL."""
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{where}: {type(got).__name__}, expected a dict"
        assert sorted(got) == sorted(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            _close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        got = np.asarray(got).tolist() if isinstance(got, np.ndarray) else got
        assert isinstance(got, list), f"{where}: {type(got).__name__}, expected a list"
        assert len(got) == len(want), f"{where}: {len(got)} items, expected {len(want)}"
        for index, (a, b) in enumerate(zip(got, want, strict=True)):
            _close(a, b, f"{where}[{index}]")
    elif isinstance(want, float):
        assert abs(float(got) - want) <= ATOL, f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


@pytest.mark.parametrize("case", RAW_CASES)
def test_ort_classes_on_numpy_match_pytorch(case: str, fixtures: Path, expected: Any) -> None:
    from onnxport.layout import exported_task
    from onnxport.runtime import ORT_MODEL_CLASSES

    raw = expected[case]["raw"]
    folder = fixtures / case
    model = ORT_MODEL_CLASSES[exported_task(folder / "model.onnx")].from_pretrained(folder)
    inputs = {k: np.asarray(v, dtype=np.int64) for k, v in raw["inputs"].items()}
    output = model(**inputs)
    # The same class as PyTorch's, or the one it extends (BERT's bare model returns
    # BaseModelOutputWithPoolingAndCrossAttentions; the graph has no cross-attentions).
    assert raw["class"].startswith(type(output).__name__), (type(output).__name__, raw["class"])
    mask = inputs["attention_mask"].astype(bool)
    for name, reference in raw["outputs"].items():
        got, want = output[name], np.asarray(reference, dtype=np.float32)
        assert isinstance(got, np.ndarray), f"{name} is {type(got).__name__}, not numpy"
        assert got.shape == want.shape, name
        if got.ndim >= 2 and got.shape[:2] == mask.shape:  # per token: padding is undefined
            got, want = got[mask], want[mask]
        np.testing.assert_allclose(got, want, atol=ATOL, err_msg=name)


@pytest.mark.parametrize("case", PIPELINE_CASES)
def test_pipelines_match_transformers_pytorch_pipelines(
    case: str, fixtures: Path, expected: Any
) -> None:
    import onnxport

    task = case
    for index, call in enumerate(expected[case]["calls"]):
        kwargs = dict(call["kwargs"])
        build = {}
        if task == "token-classification":
            build["aggregation_strategy"] = kwargs.pop("aggregation_strategy")
        pipe = onnxport.pipeline(task, model=fixtures / case, **build)
        result = pipe(*call["args"], **kwargs)
        _close(result, call["result"], f"{case} call {index}")


def test_sentence_transformers_encode_without_torch(fixtures: Path, expected: Any) -> None:
    """onnxport.SentenceTransformer against sentence-transformers' PyTorch `encode`."""
    import onnxport

    case = expected["sentence-transformers"]
    model = onnxport.SentenceTransformer(fixtures / "sentence-transformers")
    embeddings = model.encode(case["texts"], batch_size=2)
    np.testing.assert_allclose(embeddings, case["embeddings"], atol=ATOL)
    np.testing.assert_allclose(
        model.encode(case["texts"], prompt_name="query"), case["query"], atol=ATOL
    )
    single = model.encode(case["texts"][2])
    assert single.shape == (16,)
    np.testing.assert_allclose(single, case["single"], atol=ATOL)
    np.testing.assert_allclose(
        model.similarity(embeddings, embeddings), case["similarity"], atol=ATOL
    )
    assert "torch" not in sys.modules


def test_cross_encoder_predicts_and_ranks_without_torch(fixtures: Path, expected: Any) -> None:
    """onnxport.CrossEncoder against sentence-transformers' PyTorch `predict` and `rank`."""
    import onnxport

    case = expected["cross-encoder"]
    model = onnxport.CrossEncoder(fixtures / "cross-encoder")
    scores = model.predict(case["pairs"], batch_size=2)
    np.testing.assert_allclose(scores, case["scores"], atol=ATOL)
    texts = expected["sentence-transformers"]["texts"]
    _close(model.rank(texts[0], texts, return_documents=True), case["rank"], "rank")
    assert "torch" not in sys.modules


def test_generation_needs_torch_in_one_line() -> None:
    import onnxport
    from onnxport.errors import MissingExtraError

    with pytest.raises(MissingExtraError, match=r"pip install torch") as info:
        onnxport.ORTModelForCausalLM  # noqa: B018
    assert "\n" not in str(info.value)


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ONNXPORT_DEBUG": ""}
    return subprocess.run([*ONNXPORT, *argv], capture_output=True, text=True, env=env)


@pytest.mark.parametrize(
    "argv",
    [
        ["export", "onnx", "--model", "{checkpoint}", "{out}"],
        ["optimize", "{folder}", "-O2", "{out}"],
        ["quantize", "{folder}", "--mode", "int8-dynamic", "{out}"],
        ["benchmark", "{folder}", "--output", "{out}"],
    ],
    ids=lambda argv: argv[0],
)
def test_export_side_commands_name_the_extra(
    argv: list[str], fixtures: Path, tmp_path: Path
) -> None:
    folder = fixtures / "text-classification"
    before = sorted(p.name for p in folder.iterdir())
    out = tmp_path / "out"
    values = {"checkpoint": str(fixtures / "checkpoints" / "text-classification"), "out": str(out),
              "folder": str(folder)}  # fmt: skip
    result = _run(*(a.format(**values) for a in argv))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install 'onnxport[exporters]'" in lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert sorted(p.name for p in folder.iterdir()) == before


def test_the_cli_lists_tasks_without_torch() -> None:
    result = _run("tasks")
    assert result.returncode == 0, result.stderr
    assert "ORTModelForQuestionAnswering" in result.stdout


@pytest.mark.parametrize("case", ["text-classification", "fill-mask", "question-answering"])
def test_serve_runner_answers_like_pytorch_without_torch(
    case: str, fixtures: Path, expected: Any
) -> None:
    """What a Ray Serve replica or Ray Data actor runs (PipelineRunner), with no torch."""
    from onnxport.serve.runner import PipelineRunner, to_json

    runner = PipelineRunner(fixtures / case)
    for call in expected[case]["calls"]:
        if call["kwargs"] and case != "question-answering":
            continue  # the server takes inputs only; parameters are the pipeline's defaults
        inputs = call["args"][0] if call["args"] else call["kwargs"]
        if case == "question-answering" and call["kwargs"].get("top_k"):
            continue
        items = inputs if isinstance(inputs, list) else [inputs]
        want = call["result"] if isinstance(inputs, list) else [call["result"]]
        got = [to_json(outcome.value) for outcome in runner.run(items)]
        _close(got, want, f"runner {case}")
