"""sentence-transformers models: exported whole, run by onnxport.SentenceTransformer/CrossEncoder.

Every result is compared with sentence-transformers' own PyTorch `encode`, `predict` and `rank`
on the same inputs: the real all-MiniLM-L6-v2 (mean pooling, Normalize), a tiny model built
here with a non-default pooling (CLS and max, concatenated), a Dense layer with Tanh and
Normalize, and a tiny cross-encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

import onnxport
from onnxport.cli.demo import default_model_path
from onnxport.cli.main import main
from onnxport.errors import ExportOptionError, ORTModelError, TaskError
from onnxport.testing import save_tiny_checkpoint, tiny_config, tiny_tokenizer

ATOL = 1e-4
LONG = " ".join(
    ["The quick brown fox jumps over the lazy dog while the market sells apples and pears."] * 40
)  # far beyond 256 tokens: truncation must match
SENTENCES = [
    "Hi.",
    "The cat sat on the mat.",
    LONG,
    "ONNX Runtime runs exported models on servers, phones and browsers alike.",
    "Where is the nearest train station?",
    "a",
    "Paris is the capital of France.",
    "Il pleut à Paris aujourd'hui.",
    "I love this film!",
    "1234 5678 90",
    "Good tools make hard work feel easy.",
]
DOCUMENTS = [
    "The cat sat on the mat.",
    "Paris is the capital of France.",
    "I love this film",
    "Where is the nearest train station?",
    "a",
]
PAIRS = [
    ["How old are you?", "I am six."],
    ["Where is the cat?", LONG],
    ["a", "b"],
    ["Paris is the capital of France.", "I love this film"],
    ["The cat sat on the mat.", "The cat sat on the mat."],
]


def _metadata(path: Path) -> dict[str, str]:
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def _outputs(path: Path) -> list[str]:
    return [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]


# One xdist worker builds the module's models and exports once (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("sentence-transformers")


# --- the real MiniLM ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(default_model_path()), device="cpu")


@pytest.fixture(scope="module")
def minilm_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("st-minilm") / "onnx"
    result = onnxport.export(default_model_path(), out)
    assert result.task == "feature-extraction"
    assert result.validation is not None
    assert result.validation.passed
    return out


def test_minilm_encode_matches_sentence_transformers(minilm: Any, minilm_export: Path) -> None:
    ours = onnxport.SentenceTransformer(minilm_export)
    assert ours.max_seq_length == minilm.max_seq_length == 256
    want = minilm.encode(SENTENCES, batch_size=4)
    got = ours.encode(SENTENCES, batch_size=4)
    assert isinstance(got, np.ndarray)
    assert got.shape == want.shape == (len(SENTENCES), 384)
    assert np.abs(got - want).max() <= ATOL
    single = ours.encode(SENTENCES[2])
    assert single.shape == (384,)
    assert np.abs(single - minilm.encode(SENTENCES[2])).max() <= ATOL
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)  # Normalize is in the graph


def test_minilm_graph_and_folder(minilm_export: Path) -> None:
    assert _outputs(minilm_export / "model.onnx") == ["token_embeddings", "sentence_embedding"]
    metadata = _metadata(minilm_export / "model.onnx")
    assert metadata["library"] == "sentence-transformers"
    assert metadata["task"] == "feature-extraction"
    names = {p.relative_to(minilm_export).as_posix() for p in minilm_export.rglob("*")}
    assert {
        "modules.json", "config_sentence_transformers.json", "sentence_bert_config.json",
        "1_Pooling/config.json", "config.json", "tokenizer.json",
    } <= names  # fmt: skip
    assert "model.safetensors" not in names
    ours = onnxport.SentenceTransformer(minilm_export)
    assert ours.get_sentence_embedding_dimension() == ours.get_embedding_dimension() == 384


def test_minilm_token_embeddings_and_the_bare_class(minilm: Any, minilm_export: Path) -> None:
    texts = SENTENCES[:4]
    want = minilm.encode(texts, output_value="token_embeddings")
    got = onnxport.SentenceTransformer(minilm_export).encode(texts, output_value="token_embeddings")
    for ours, theirs in zip(got, want, strict=True):
        assert ours.shape == tuple(theirs.shape)  # padding cut off as sentence-transformers does
        assert np.abs(ours - theirs.numpy()).max() <= ATOL
    # The feature-extraction class reads the graph's token embeddings as last_hidden_state.
    model = onnxport.ORTModelForFeatureExtraction.from_pretrained(minilm_export)
    encoded = minilm.tokenizer(texts[0], return_tensors="np")
    hidden = model(**encoded).last_hidden_state
    assert np.abs(hidden[0] - want[0].numpy()).max() <= ATOL


def test_minilm_similarity(minilm: Any, minilm_export: Path) -> None:
    ours = onnxport.SentenceTransformer(minilm_export)
    embeddings = ours.encode(SENTENCES)
    assert ours.similarity_fn_name == minilm.similarity_fn_name == "cosine"
    want = minilm.similarity(embeddings, embeddings[:3]).numpy()
    got = ours.similarity(embeddings, embeddings[:3])
    assert got.shape == (len(SENTENCES), 3)
    assert np.abs(got - want).max() <= 1e-5


# --- a tiny model with CLS + max pooling, Dense(Tanh) and Normalize -----------------------


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (
        Dense,
        Normalize,
        Pooling,
        Transformer,
    )

    root = tmp_path_factory.mktemp("st-tiny")
    checkpoint = save_tiny_checkpoint("bert", "feature-extraction", root / "bert")
    transformer = Transformer(str(checkpoint), max_seq_length=20)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode=("cls", "max"))
    torch.manual_seed(1)
    dense = Dense(pooling.get_embedding_dimension(), 16, activation_function=torch.nn.Tanh())
    model = SentenceTransformer(
        modules=[transformer, pooling, dense, Normalize()],
        device="cpu",
        prompts={"query": "query: ", "document": ""},
        similarity_fn_name="dot",
    )
    model.save(str(root / "st"))
    return root / "st"


@pytest.fixture(scope="module")
def tiny(tiny_folder: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_folder), device="cpu")


@pytest.fixture(scope="module")
def tiny_export(tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Exported through the CLI, with no option: the sentence-transformers graph by default."""
    out = tmp_path_factory.mktemp("st-tiny-onnx") / "onnx"
    assert main(["export", "onnx", "--model", str(tiny_folder), str(out)]) == 0
    return out


def test_cli_writes_the_sentence_transformers_graph(tiny_export: Path) -> None:
    assert _outputs(tiny_export / "model.onnx") == ["token_embeddings", "sentence_embedding"]
    assert _metadata(tiny_export / "model.onnx")["library"] == "sentence-transformers"
    for name in ("modules.json", "1_Pooling/config.json", "2_Dense/config.json"):
        assert (tiny_export / name).is_file(), name


def test_tiny_encode_matches_with_pooling_dense_and_normalize(tiny: Any, tiny_export: Path) -> None:
    ours = onnxport.SentenceTransformer(tiny_export)
    assert ours.max_seq_length == tiny.max_seq_length == 20  # LONG is truncated
    assert ours.get_sentence_embedding_dimension() == tiny.get_embedding_dimension() == 16
    want = tiny.encode(SENTENCES, batch_size=4)
    got = ours.encode(SENTENCES, batch_size=4)
    assert got.shape == want.shape == (len(SENTENCES), 16)
    assert np.abs(got - want).max() <= ATOL
    # The embeddings differ from text to text: a broken pipeline cannot pass by chance.
    assert np.abs(want[0] - want[1]).max() > 0.1


def test_tiny_prompts(tiny: Any, tiny_export: Path) -> None:
    ours = onnxport.SentenceTransformer(tiny_export)
    assert ours.prompts["query"] == "query: "
    for kwargs in ({"prompt_name": "query"}, {"prompt": "passage: "}):
        want = tiny.encode(SENTENCES, **kwargs)
        got = ours.encode(SENTENCES, **kwargs)
        assert np.abs(got - want).max() <= ATOL, kwargs
    assert np.abs(ours.encode_query(SENTENCES) - tiny.encode_query(SENTENCES)).max() <= ATOL
    without = ours.encode(SENTENCES)
    assert np.abs(ours.encode(SENTENCES, prompt_name="query") - without).max() > 1e-3


@pytest.mark.parametrize("name", ["dot", "cosine", "euclidean", "manhattan"])
def test_tiny_similarity_functions(name: str, tiny_export: Path) -> None:
    from sentence_transformers.util import SimilarityFunction

    ours = onnxport.SentenceTransformer(tiny_export, similarity_fn_name=None)
    assert ours.similarity_fn_name == "dot"  # as saved in config_sentence_transformers.json
    ours.similarity_fn_name = name
    embeddings = ours.encode(SENTENCES, normalize_embeddings=False) * 3.0
    want = SimilarityFunction.to_similarity_fn(name)(embeddings, embeddings[:4]).numpy()
    assert np.abs(ours.similarity(embeddings, embeddings[:4]) - want).max() <= 1e-4
    pairwise = SimilarityFunction.to_similarity_pairwise_fn(name)(
        embeddings, embeddings[::-1].copy()
    )
    assert (
        np.abs(
            ours.similarity_pairwise(embeddings, embeddings[::-1].copy()) - pairwise.numpy()
        ).max()
        <= 1e-4
    )


def test_an_in_memory_sentence_transformer_exports_whole(tiny: Any, tmp_path: Path) -> None:
    out = tmp_path / "in-memory"
    onnxport.export(tiny, out)
    assert (out / "2_Dense" / "config.json").is_file()
    ours = onnxport.SentenceTransformer(out)
    assert np.abs(ours.encode(SENTENCES) - tiny.encode(SENTENCES)).max() <= ATOL


# --- --library transformers ---------------------------------------------------------------


def test_library_transformers_exports_the_bare_model(tiny_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "bare"
    result = onnxport.export(tiny_folder, out, library="transformers")
    outputs = _outputs(out / "model.onnx")
    assert "last_hidden_state" in outputs, outputs
    assert "sentence_embedding" not in outputs, outputs
    assert result.task == "feature-extraction"
    assert _metadata(out / "model.onnx")["library"] == "transformers"
    with pytest.raises(ORTModelError, match="no 'sentence_embedding' output") as info:
        onnxport.SentenceTransformer(out)
    assert "\n" not in str(info.value)


def test_library_option_errors(tiny_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportOptionError, match="Unknown --library 'torch'"):
        onnxport.export(tiny_folder, tmp_path / "a", library="torch")
    plain = save_tiny_checkpoint("bert", "feature-extraction", tmp_path / "plain")
    with pytest.raises(ExportOptionError, match="not a sentence-transformers model"):
        onnxport.export(plain, tmp_path / "b", library="sentence-transformers")
    with pytest.raises(TaskError, match="exports as feature-extraction, not fill-mask"):
        onnxport.export(
            tiny_folder, tmp_path / "c", task="fill-mask", library="sentence-transformers"
        )
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "c").exists()


# --- a tiny cross-encoder -----------------------------------------------------------------


@pytest.fixture(scope="module")
def cross_encoder_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sentence_transformers import CrossEncoder
    from transformers import BertForSequenceClassification

    root = tmp_path_factory.mktemp("st-cross")
    tokenizer = tiny_tokenizer(["input_ids", "token_type_ids", "attention_mask"])
    # Large random weights give logits of a few units: scores spread out, so a wrong
    # activation, pairing or truncation shows.
    config = tiny_config("bert", tokenizer=tokenizer, num_labels=1, initializer_range=0.5)
    torch.manual_seed(2)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(root / "hf")
    tokenizer.save_pretrained(root / "hf")
    CrossEncoder(str(root / "hf"), device="cpu").save(str(root / "ce"))
    return root / "ce"


@pytest.fixture(scope="module")
def cross_encoder(cross_encoder_folder: Path) -> Any:
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(cross_encoder_folder), device="cpu")


@pytest.fixture(scope="module")
def cross_encoder_export(
    cross_encoder_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("st-cross-onnx") / "onnx"
    assert onnxport.export(cross_encoder_folder, out).task == "text-classification"
    return out


def test_cross_encoder_records_its_activation(cross_encoder_export: Path) -> None:
    metadata = _metadata(cross_encoder_export / "model.onnx")
    assert metadata["library"] == "sentence-transformers"
    assert metadata["activation_fn"] == "torch.nn.modules.activation.Sigmoid"
    assert _outputs(cross_encoder_export / "model.onnx") == ["logits"]


def test_cross_encoder_predict_matches(cross_encoder: Any, cross_encoder_export: Path) -> None:
    ours = onnxport.CrossEncoder(cross_encoder_export)
    want = cross_encoder.predict(PAIRS, batch_size=2)
    got = ours.predict(PAIRS, batch_size=2)
    assert got.shape == want.shape == (len(PAIRS),)
    assert np.abs(got - want).max() <= ATOL
    assert want.max() - want.min() > 0.3
    assert abs(float(ours.predict(PAIRS[1])) - float(cross_encoder.predict(PAIRS[1]))) <= ATOL
    raw = ours.predict(PAIRS, activation_fn=lambda x: x)
    assert (
        np.abs(raw - cross_encoder.predict(PAIRS, activation_fn=torch.nn.Identity())).max() <= ATOL
    )


def test_cross_encoder_rank_matches(cross_encoder: Any, cross_encoder_export: Path) -> None:
    ours = onnxport.CrossEncoder(cross_encoder_export)
    query = "Where is the cat?"
    want = cross_encoder.rank(query, DOCUMENTS, return_documents=True)
    got = ours.rank(query, DOCUMENTS, return_documents=True)
    assert [r["corpus_id"] for r in got] == [r["corpus_id"] for r in want]
    assert [r["text"] for r in got] == [r["text"] for r in want]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(got, want, strict=True)) <= ATOL
    top = ours.rank(query, DOCUMENTS, top_k=2)
    assert [set(r) for r in top] == [{"corpus_id", "score"}] * 2
    assert [r["corpus_id"] for r in top] == [r["corpus_id"] for r in want[:2]]
