"""The coverage matrix runner: pairs enumerated from Auto mappings, each run in a worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onnxport.cli.main import main
from onnxport.coverage import peer
from onnxport.coverage.runner import (
    FAIL,
    PASS,
    PairResult,
    enumerate_pairs,
    load,
    packaged_results,
    pair_modality,
    run_matrix,
    to_json,
    to_markdown,
)
from onnxport.errors import VariantError
from onnxport.exporters.adapters import ADAPTERS


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
    # In a longer list, a type without a head for the tasks is skipped (with a warning)...
    assert enumerate_pairs(["bert", "canine"], ["fill-mask"]) == [("bert", "fill-mask")]
    # ...but a name that is no model type at all is refused.
    with pytest.raises(VariantError, match=r"Unknown model type.*bertt"):
        enumerate_pairs(["bert", "bertt"], ["fill-mask"])


def test_matrix_records_pass_and_fail_with_reasons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = ["--json", str(tmp_path / "c.json"), "--markdown", str(tmp_path / "c.md")]
    # FastSpeech2 with HiFi-GAN has no vocabulary size: its text inputs cannot be made.
    failing = "fastspeech2_conformer_with_hifigan"
    argv = ["coverage", "--model-types", f"bert,{failing}",
            "--tasks", "fill-mask,feature-extraction", "--jobs", "2", *outputs]  # fmt: skip
    assert main(argv) == 0
    data = json.loads((tmp_path / "c.json").read_text())
    status = {(p["model_type"], p["task"]): p for p in data["pairs"]}
    assert status[("bert", "fill-mask")]["status"] == "PASS"
    assert status[("bert", "feature-extraction")]["status"] == "PASS"
    failed = status[(failing, "feature-extraction")]
    assert failed["status"] == "FAIL"
    assert failed["category"] == "SpecError"
    assert "vocab_size" in failed["reason"]
    assert data["summary"]["model_types_passing"] == 1
    table = (tmp_path / "c.md").read_text()
    assert f"| `{failing}` | feature-extraction | FAIL | SpecError |" in table
    assert "PASS 2, FAIL 1, SKIP 0" in capsys.readouterr().out


def test_a_worker_crash_fails_its_pair_and_the_rest_move_on() -> None:
    # Under a 0.3 GB address-space limit the worker cannot even import torch: each pair
    # crashes its worker, is recorded as FAIL "crash" naming the limit, and the next pair of
    # the chunk gets a fresh worker.
    pairs = [("bert", "fill-mask"), ("bert", "feature-extraction")]
    results = run_matrix(pairs, jobs=1, timeout=120, memory_gb=0.3, chunk=2)
    assert [(r.model_type, r.task) for r in results] == sorted(pairs)
    assert all(r.status == FAIL and r.category == "crash" for r in results)
    assert all("memory" in r.reason for r in results)


def test_update_reruns_only_failed_pairs_and_keeps_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix = tmp_path / "m.json"
    kept = PairResult("bert", "fill-mask", PASS, seconds=1.0)
    stale = PairResult("bert", "feature-extraction", FAIL, "SpecError", "old reason", 1.0)
    matrix.write_text(to_json([kept, stale]))
    argv = ["coverage", "--model-types", "bert", "--tasks", "fill-mask,feature-extraction",
            "--update", str(matrix), "--only-failed"]  # fmt: skip
    assert main(argv) == 0
    assert "1 pairs" in capsys.readouterr().out
    results = {(r.model_type, r.task): r for r in load(matrix)}
    assert results[("bert", "fill-mask")] == kept  # not rerun
    assert results[("bert", "feature-extraction")].status == PASS
    assert main(["coverage", "--only-failed"]) == 2
    assert "--update" in capsys.readouterr().err


# About 40 pairs spanning every modality and every task the packaged matrix validates; each
# must still PASS, run the way `onnxport coverage` runs them. `make coverage` runs them all.
SAMPLE: list[tuple[str, str]] = [
    ("albert", "multiple-choice"), ("bart", "text2text-generation"),
    ("bert", "fill-mask"), ("deberta-v2", "text-classification"),
    ("distilbert", "token-classification"), ("electra", "feature-extraction"),
    ("gpt2", "text-generation"), ("llama", "text-generation"),
    ("modernbert", "fill-mask"), ("qwen2", "text-generation"),
    ("roberta", "question-answering"), ("t5", "text2text-generation"),
    ("whisper", "automatic-speech-recognition"),
    ("beit", "image-classification"), ("convnext", "image-feature-extraction"),
    ("deit", "masked-im"), ("detr", "object-detection"),
    ("dinov2", "image-feature-extraction"), ("dpt", "depth-estimation"),
    ("glpn", "depth-estimation"), ("mobilevitv2", "image-classification"),
    ("resnet", "image-classification"), ("segformer", "semantic-segmentation"),
    ("focalnet", "masked-im"), ("swin2sr", "image-to-image"),
    ("vit", "image-classification"), ("yolos", "object-detection"),
    ("clip", "zero-shot-image-classification"), ("clip", "feature-extraction"),
    ("siglip", "zero-shot-image-classification"),
    ("audio-spectrogram-transformer", "audio-classification"),
    ("data2vec-audio", "feature-extraction"), ("hubert", "audio-classification"),
    ("unispeech-sat", "audio-frame-classification"), ("wav2vec2", "ctc"),
    ("wav2vec2-conformer", "ctc"), ("wavlm", "audio-xvector"),
    ("mpnet", "feature-extraction"), ("xlm-roberta", "fill-mask"),
    ("convnextv2", "image-classification"), ("layoutlm", "token-classification"),
    ("qwen2_moe", "text-generation"), ("mixtral", "text-classification"),
    ("deepseek_v3", "text-generation"),
    ("llava", "image-text-to-text"), ("vision-encoder-decoder", "image-to-text"),
    ("paligemma", "image-text-to-text"), ("decision_transformer", "feature-extraction"),
    ("owlvit", "zero-shot-object-detection"), ("xmod", "fill-mask"),
    ("qwen2_vl", "image-text-to-text"), ("qwen2_5_vl_vision", "feature-extraction"),
    ("pix2struct", "image-to-text"), ("rt_detr", "object-detection"),
    ("sam", "feature-extraction"), ("mgp-str", "feature-extraction"), ("tapas", "fill-mask"),
    ("bros", "token-classification"), ("vitpose", "pose-estimation"),
    ("colpali", "retrieval"), ("vits", "text-to-audio"),
    ("grounding-dino", "zero-shot-object-detection"),
    ("speecht5", "text-to-spectrogram"), ("musicgen", "text-to-audio-with-past"),
    ("moonshine", "automatic-speech-recognition"), ("longformer", "question-answering"),
]  # fmt: skip


def test_sample_spans_every_validated_task_and_agrees_with_the_packaged_matrix() -> None:
    packaged = {(r.model_type, r.task): r.status for r in packaged_results()}
    assert packaged, "src/onnxport/data/coverage.json is missing: run `make coverage`"
    assert len(SAMPLE) == len(set(SAMPLE)) >= 40
    assert [pair for pair in SAMPLE if packaged.get(pair) != PASS] == []
    validated_tasks = {task for (_, task), status in packaged.items() if status == PASS}
    assert validated_tasks - {task for _, task in SAMPLE} == set()
    modalities = {pair_modality(*pair) for pair in SAMPLE}
    assert modalities >= {"text", "vision", "audio", "multimodal"}


def test_every_registered_adapter_is_exercised_by_the_sample() -> None:
    sampled = {model_type for model_type, _ in SAMPLE}
    assert set(ADAPTERS.registered()) - sampled == set()


# A 32nd of the sample runs in `make test`, the rest with `make test-slow`: the whole
# sample took 11 CPU-minutes, and an eighth of it almost 4 minutes of a 28-minute default suite.
PARTS = 32


@pytest.mark.parametrize(
    "part", [0, *(pytest.param(part, marks=pytest.mark.slow) for part in range(1, PARTS))]
)
def test_sample_pairs_pass(part: int) -> None:
    pairs = SAMPLE[part::PARTS]
    results = run_matrix(pairs, jobs=1, timeout=300, memory_gb=8, chunk=len(pairs))
    assert [(r.model_type, r.task, r.category, r.reason) for r in results if r.status != PASS] == []
    assert len(results) == len(pairs)


def test_committed_markdown_is_generated_from_the_packaged_matrix() -> None:
    page = Path(__file__).parents[1] / "docs" / "coverage.md"
    assert page.read_text(encoding="utf-8") == to_markdown(packaged_results())


def test_peer_exports_the_same_pairs_and_both_counts_are_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # text-generation exports as several graphs, which the peer's one-graph export does not
    # compare with: only the fill-mask pair runs, through both exporters.
    argv = ["coverage", "--peer", "--model-types", "bert", "--tasks",
            "fill-mask,text-generation", "--json", str(tmp_path / "peer.json")]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1 pairs" in out
    assert f"PASS: onnxport 1 of 1, {peer.PEER} 1 of 1" in out
    data = json.loads((tmp_path / "peer.json").read_text())
    assert [(r["model_type"], r["task"], r["status"]) for r in data[peer.PEER]] == [
        ("bert", "fill-mask", PASS)
    ]
    assert main(["coverage", "--peer", "--model-types", "gpt2", "--tasks", "text-generation"]) == 2
    assert "single-graph tasks only" in capsys.readouterr().err


def test_side_by_side_names_the_pairs_only_the_peer_passes() -> None:
    ours = [PairResult("a", "fill-mask", PASS), PairResult("b", "fill-mask", FAIL, "X", "why")]
    theirs = [PairResult("a", "fill-mask", FAIL, "ValidationError", "differs"),
              PairResult("b", "fill-mask", PASS)]  # fmt: skip
    table = peer.side_by_side(ours, theirs)
    assert f"PASS: onnxport 1 of 2, {peer.PEER} 1 of 2" in table
    assert table.splitlines()[-1] == f"only {peer.PEER} passes: b fill-mask"
    assert "FAIL (ValidationError: differs)" in table


def test_peer_graphs_are_held_to_onnxport_validation() -> None:
    # MBart's shift_tokens_right calls .squeeze(): the peer's graph exports at batch 2, but
    # fails in ONNX Runtime at batch 1, and the validator says so (onnxport's passes).
    [result] = run_matrix([("mbart", "fill-mask")], timeout=300, peer=True)
    assert (result.status, result.category) == (FAIL, "ValidationError")
    assert "batch 1" in result.reason
