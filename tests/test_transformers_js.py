"""The transformers.js layout, checked by running transformers.js itself (Node).

Tiny encoder, decoder and encoder-decoder checkpoints are exported with
`--layout transformers.js`, quantized in place, and loaded by transformers.js 4 through
`AutoModel` / `AutoModelForCausalLM` / `AutoModelForSeq2SeqLM.from_pretrained(name, { dtype })`
(tests/js/run.mjs); its outputs and greedy tokens are compared with PyTorch's, and
onnxport's own classes load the same folders.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers
from transformers import (
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSpeechSeq2Seq,
)

import onnxport
from onnxport.cli.main import main
from onnxport.testing import save_tiny_checkpoint
from onnxport.variants.quantize import quantize

# One xdist worker builds the module's folders once (make test runs --dist loadgroup).
pytestmark = pytest.mark.xdist_group("transformers-js")
JS_DIR = Path(__file__).parent / "js"
# (folder name, model type, task, seed); the seeds give greedy paths that are not one token
# repeated and that differ between the two rows of the batch.
MODELS = [
    ("encoder", "bert", "feature-extraction", 0),
    ("decoder", "llama", "text-generation", 0),
    ("seq2seq", "t5", "text2text-generation", 2),
    ("speech", "whisper", "automatic-speech-recognition", 0),
]
NEW_TOKENS = 8


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "@huggingface" / "transformers").is_dir():
        pytest.fail(
            "transformers.js is not installed: run `make tests/js/node_modules` (Node 20 and "
            "npm are needed)."
        )
    return node


def run_transformers_js(root: Path, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run tests/js/run.mjs on `cases` (folders under `root`); one answer per case."""
    request = root / "request.json"
    request.write_text(json.dumps({"root": str(root), "cases": cases}))
    done = subprocess.run(
        [_node(), str(JS_DIR / "run.mjs"), str(request)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return list(json.loads(done.stdout))


# Session scope: a module fixture is rebuilt whenever the worker runs another module's test
# in between, and --dist loadgroup interleaves them.
@pytest.fixture(scope="session")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """name -> (PyTorch checkpoint, transformers.js export), with int8 / q4 variants."""
    root = tmp_path_factory.mktemp("transformers-js")
    made = {}
    for name, model_type, task, seed in MODELS:
        checkpoint = save_tiny_checkpoint(model_type, task, root / f"checkpoint-{name}", seed=seed)
        onnxport.export(checkpoint, root / name, task, layout="transformers.js")
        made[name] = (checkpoint, root / name)
    quantize(made["encoder"][1], "int8-dynamic")
    quantize(made["decoder"][1], "int4-weight-only")
    return made


ENCODER_IDS = [[2, 5, 6, 7, 8, 3], [2, 9, 10, 3, 0, 0]]
ENCODER_MASK = [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]
# Left-padded, as transformers.js and transformers batch prompts for generation.
DECODER_IDS = [[5, 6, 7, 8, 9], [0, 0, 11, 12, 13]]
DECODER_MASK = [[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]]
SEQ2SEQ_IDS = [[5, 6, 7, 8, 9, 10, 3], [11, 12, 13, 14, 3, 0, 0]]
SEQ2SEQ_MASK = [[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]]


def _cases(dtype_encoder: str = "fp32", dtype_decoder: str = "fp32") -> list[dict[str, Any]]:
    types = [[0] * len(row) for row in ENCODER_IDS]
    return [
        {"kind": "encoder", "name": "encoder", "dtype": dtype_encoder, "input_ids": ENCODER_IDS,
         "attention_mask": ENCODER_MASK, "token_type_ids": types},
        {"kind": "decoder", "name": "decoder", "dtype": dtype_decoder, "input_ids": DECODER_IDS,
         "attention_mask": DECODER_MASK, "max_new_tokens": NEW_TOKENS},
        {"kind": "seq2seq", "name": "seq2seq", "input_ids": SEQ2SEQ_IDS,
         "attention_mask": SEQ2SEQ_MASK, "max_new_tokens": NEW_TOKENS},
    ]  # fmt: skip


def _hidden(answer: dict[str, Any]) -> np.ndarray:
    return np.asarray(answer["data"], dtype=np.float32).reshape(answer["dims"])


def _generate(model: Any, ids: list[list[int]], mask: list[list[int]]) -> list[list[int]]:
    settings = {"max_new_tokens": NEW_TOKENS, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), **settings
        )
    return [list(map(int, row)) for row in out]


def test_layout_writes_the_files_transformers_js_reads(folders) -> None:
    names = {
        name: sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        for name, (_, folder) in folders.items()
    }
    assert names["encoder"] == [
        "config.json", "onnx/model.onnx", "onnx/model_int8.onnx", "tokenizer.json",
        "tokenizer_config.json",
    ]  # fmt: skip
    assert {"onnx/model.onnx", "onnx/model_q4.onnx", "generation_config.json"} <= set(
        names["decoder"]
    )
    assert {"onnx/encoder_model.onnx", "onnx/decoder_model_merged.onnx"} <= set(names["seq2seq"])
    assert not any(name.endswith(".onnx") and "/" not in name for n in names.values() for name in n)


def test_transformers_js_matches_pytorch(folders) -> None:
    encoder, decoder, seq2seq = run_transformers_js(folders["encoder"][1].parent, _cases())

    pt_encoder = AutoModel.from_pretrained(folders["encoder"][0]).eval()
    with torch.no_grad():
        expected = pt_encoder(
            input_ids=torch.tensor(ENCODER_IDS), attention_mask=torch.tensor(ENCODER_MASK)
        ).last_hidden_state.numpy()
    real = np.asarray(ENCODER_MASK, dtype=bool)
    np.testing.assert_allclose(_hidden(encoder)[real], expected[real], atol=1e-4)

    pt_decoder = AutoModelForCausalLM.from_pretrained(folders["decoder"][0]).eval()
    tokens = _generate(pt_decoder, DECODER_IDS, DECODER_MASK)
    assert decoder["sequences"] == tokens
    assert all(len(set(row[-NEW_TOKENS:])) >= 4 for row in tokens), tokens  # not degenerate

    pt_seq2seq = AutoModelForSeq2SeqLM.from_pretrained(folders["seq2seq"][0]).eval()
    tokens = _generate(pt_seq2seq, SEQ2SEQ_IDS, SEQ2SEQ_MASK)
    assert seq2seq["sequences"] == tokens
    assert tokens[0] != tokens[1], tokens  # the encoder's input matters
    assert len(set(tokens[0])) > 1, tokens


def test_transformers_js_runs_whisper(folders) -> None:
    """Whisper's encoder and merged decoder load and generate in transformers.js.

    The tiny random Whisper's greedy path is one token repeated whatever the seed, so this
    proves the layout and the cache names more than the numbers.
    """
    checkpoint, folder = folders["speech"]
    features = AutoFeatureExtractor.from_pretrained(checkpoint)
    time = np.arange(features.sampling_rate) / features.sampling_rate
    audio = (0.3 * np.sin(2 * np.pi * 220 * time)).astype(np.float32)
    values = features(audio, sampling_rate=features.sampling_rate, return_tensors="np")
    array = values.input_features
    case = {"kind": "speech", "name": "speech", "input_features": array.tolist(),
            "dims": list(array.shape), "max_new_tokens": NEW_TOKENS}  # fmt: skip
    (answer,) = run_transformers_js(folder.parent, [case])
    model = AutoModelForSpeechSeq2Seq.from_pretrained(checkpoint).eval()
    with torch.no_grad():
        expected = model.generate(
            input_features=torch.from_numpy(array), max_new_tokens=NEW_TOKENS, do_sample=False,
            language="en", task="transcribe",
        )[0].tolist()  # fmt: skip
    # transformers.js returns its forced prompt (start, language, task, no-timestamps) too.
    generated = answer["sequences"][0]
    assert generated[:4] == [257, 258, 261, 265]
    assert generated[4:] == expected[: len(generated) - 4]


def test_transformers_js_loads_the_quantized_variants_by_dtype(folders) -> None:
    """`dtype: "int8"` / `"q4"` pick the variants; onnxport's classes give the same answers."""
    encoder, decoder, _ = run_transformers_js(folders["encoder"][1].parent, _cases("int8", "q4"))

    ours = onnxport.ORTModelForFeatureExtraction.from_pretrained(
        folders["encoder"][1], subfolder="onnx", file_name="model_int8.onnx"
    )
    hidden = ours(
        input_ids=np.asarray(ENCODER_IDS), attention_mask=np.asarray(ENCODER_MASK),
        token_type_ids=np.zeros_like(ENCODER_IDS),
    ).last_hidden_state  # fmt: skip
    real = np.asarray(ENCODER_MASK, dtype=bool)
    np.testing.assert_allclose(_hidden(encoder)[real], hidden[real], atol=1e-4)
    fp32 = onnxport.ORTModelForFeatureExtraction.from_pretrained(folders["encoder"][1])
    reference = fp32(
        input_ids=np.asarray(ENCODER_IDS), attention_mask=np.asarray(ENCODER_MASK)
    ).last_hidden_state
    assert np.abs(reference - hidden).max() > 1e-5  # really the int8 graph

    q4 = onnxport.ORTModelForCausalLM.from_pretrained(
        folders["decoder"][1], file_name="onnx/model_q4.onnx"
    )
    assert q4.file_name == "onnx/model_q4.onnx"
    assert decoder["sequences"] == _generate(q4, DECODER_IDS, DECODER_MASK)


def test_onnxport_classes_and_pipelines_load_the_layout(folders) -> None:
    checkpoint, folder = folders["seq2seq"]
    model = onnxport.ORTModelForSeq2SeqLM.from_pretrained(folder)
    assert model.file_name == "onnx/decoder_model_merged.onnx"
    assert "past_key_values.0.decoder.key" in model.input_names
    expected = _generate(AutoModelForSeq2SeqLM.from_pretrained(checkpoint).eval(), SEQ2SEQ_IDS,
                         SEQ2SEQ_MASK)  # fmt: skip
    assert _generate(model, SEQ2SEQ_IDS, SEQ2SEQ_MASK) == expected

    checkpoint, folder = folders["decoder"]
    settings = {"max_new_tokens": 6, "do_sample": False}
    prompt = "the quick brown fox"
    answer = onnxport.pipeline("text-generation", str(folder))(prompt, **settings)
    assert answer == transformers.pipeline("text-generation", str(checkpoint))(prompt, **settings)

    saved = model.save_pretrained(folder.parent / "saved-seq2seq")
    assert (saved / "onnx" / "decoder_model_merged.onnx").is_file()


def test_inspect_names_the_dtypes_offered(folders, capsys) -> None:
    assert main(["inspect", str(folders["decoder"][1])]) == 0
    out = capsys.readouterr().out
    assert "model_q4.onnx" in out
    assert "dtypes offered: fp32 (onnx/model.onnx), q4 (onnx/model_q4.onnx)" in out


def test_cli_export_with_layout_and_quantize(folders, tmp_path, capsys) -> None:
    """Options in either order; `--quantize` writes the variant under the layout's name."""
    checkpoint, _ = folders["encoder"]
    out = tmp_path / "cli"
    argv = ["export", "onnx", str(out), "--quantize", "int8-dynamic", "--model", str(checkpoint),
            "--layout", "transformers.js"]  # fmt: skip
    assert main(argv) == 0
    assert (out / "onnx" / "model.onnx").is_file()
    assert (out / "onnx" / "model_int8.onnx").is_file()
    assert not list(out.glob("*.onnx"))
    with pytest.raises(SystemExit) as exited:
        main(
            ["export", "onnx", "--model", str(checkpoint), "--layout", "tfjs", str(tmp_path / "x")]
        )
    assert exited.value.code == 2
    assert "invalid choice: 'tfjs'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_minilm_in_transformers_js_equals_sentence_transformers(tmp_path) -> None:
    """The real MiniLM, its real tokenizer: transformers.js' feature-extraction pipeline
    (mean pooling, normalized) gives sentence-transformers' embeddings."""
    from sentence_transformers import SentenceTransformer

    from onnxport.cli.demo import default_model_path

    onnxport.export(default_model_path(), tmp_path / "minilm", layout="transformers.js")
    texts = ["A man is eating food.", "The new movie is awesome, I loved every minute of it!"]
    case = {"kind": "feature-extraction-pipeline", "name": "minilm", "texts": texts}
    (answer,) = run_transformers_js(tmp_path, [case])
    expected = SentenceTransformer(str(default_model_path()), device="cpu").encode(texts)
    np.testing.assert_allclose(_hidden(answer), expected, atol=1e-4)
