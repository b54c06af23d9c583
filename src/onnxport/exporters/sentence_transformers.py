"""sentence-transformers folders: which library exports them, and their pipeline as one module.

A folder holding `modules.json` is a sentence-transformers model, as optimum's library
detection has it. A `SentenceTransformer` (bi-encoder) is exported whole: its own modules
(Transformer, Pooling, Dense, Normalize, ...), loaded by `sentence_transformers` itself, run
inside `SentenceEmbedder`, whose graph returns `token_embeddings` and `sentence_embedding`; it
goes through derive_spec, capture and validation like any model, so pooling and the dense
layers are proven against PyTorch rather than re-implemented. A `CrossEncoder` is a
sequence-classification checkpoint and is exported by the transformers path as
text-classification, with the activation function it applies recorded in the graph.
Either way the sentence-transformers files are copied beside the graph.
"""

from __future__ import annotations

import inspect
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from onnxport.errors import (
    ExportOptionError,
    MissingExtraError,
    ModelFileError,
    TaskError,
    first_line,
)
from onnxport.layout import (
    LIBRARIES,
    LIBRARY_SENTENCE_TRANSFORMERS,
    LIBRARY_TRANSFORMERS,
    SENTENCE_EMBEDDING,
    ST_BI_ENCODER,
    ST_CONFIG_FILE,
    ST_CROSS_ENCODER,
    ST_MODULE_CONFIG_FILE,
    ST_MODULES_FILE,
    TOKEN_EMBEDDINGS,
    sentence_transformers_modules,
    sentence_transformers_type,
)
from onnxport.tasks import BARE_TASK, get_task

logger = logging.getLogger(__name__)

BI_ENCODER = "bi-encoder"
CROSS_ENCODER = "cross-encoder"
_CLASSIFICATION = "text-classification"


def check_library(library: str | None) -> None:
    """Refuse an unknown `library` in one line."""
    if library is not None and library not in LIBRARIES:
        raise ExportOptionError(
            f"Unknown --library '{library}'; choose one of {', '.join(LIBRARIES)} (default: "
            "sentence-transformers for a folder with modules.json, else transformers).",
            option="--library",
        )


def export_kind(folder: Path, library: str | None, task: str | None) -> str | None:
    """BI_ENCODER, CROSS_ENCODER, or None (the transformers path) for a checkpoint folder.

    Without `library`, a sentence-transformers folder exports as such unless `task` asks for
    a head its pipeline does not have (then the transformers path serves that task).
    """
    check_library(library)
    if library == LIBRARY_TRANSFORMERS:
        return None
    found = sentence_transformers_type(folder)
    asked = get_task(task).name if task else None
    if found is None:
        if library == LIBRARY_SENTENCE_TRANSFORMERS:
            raise ExportOptionError(
                f"'{folder}' is not a sentence-transformers model (no {ST_MODULES_FILE}); "
                "drop --library sentence-transformers to export it with transformers.",
                option="--library",
            )
        return None
    if found == ST_CROSS_ENCODER:
        kind, wanted = CROSS_ENCODER, _CLASSIFICATION
    elif found == ST_BI_ENCODER:
        kind, wanted = BI_ENCODER, BARE_TASK
    else:
        raise ExportOptionError(
            f"'{folder}' is a sentence-transformers {found}; onnxport exports SentenceTransformer "
            "and CrossEncoder models. Pass --library transformers to export its bare transformer.",
            option="--library",
        )
    if asked is None or asked == wanted:
        return kind
    if library == LIBRARY_SENTENCE_TRANSFORMERS:
        raise TaskError(
            f"A sentence-transformers {found} exports as {wanted}, not {asked}; drop --task, or "
            "pass --library transformers to export the checkpoint for that task.",
            task=asked,
        )
    logger.info("Exporting the %s folder with transformers, for %s.", found, asked)
    return None


class SentenceEmbedder(torch.nn.Module):
    """A sentence-transformers pipeline as a model: token inputs in, both embeddings out.

    `forward` feeds sentence-transformers' own modules the features its tokenizer would give
    them and returns `token_embeddings` (the transformer's last hidden state) and
    `sentence_embedding` (after pooling, dense layers and normalization, as saved).
    """

    main_input_name = "input_ids"

    def __init__(self, pipeline: Any) -> None:
        super().__init__()
        self.pipeline = pipeline
        transformer = pipeline.transformers_model
        self.config = transformer.config
        self.source_name = getattr(self.config, "_name_or_path", "") or type(pipeline).__name__
        self.generation_config = getattr(transformer, "generation_config", None)
        # Passed on only where the transformer takes them (DistilBERT has no token types).
        self._token_types = "token_type_ids" in inspect.signature(transformer.forward).parameters

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Run the pipeline; `return_dict` is accepted for the exporter's calling convention."""
        features: dict[str, Any] = {"input_ids": input_ids}
        if attention_mask is not None:
            features["attention_mask"] = attention_mask
        if token_type_ids is not None and self._token_types:
            features["token_type_ids"] = token_type_ids
        output = self.pipeline(features)
        return {
            TOKEN_EMBEDDINGS: output[TOKEN_EMBEDDINGS],
            SENTENCE_EMBEDDING: output[SENTENCE_EMBEDDING],
        }


def load_bi_encoder(
    folder: Path, *, trust_remote_code: bool = False, dtype: torch.dtype = torch.float32
) -> tuple[SentenceEmbedder, Any]:
    """Load `folder` with sentence-transformers; returns the module and the tokenizer it uses.

    The tokenizer is the pipeline's own: sentence-transformers sets its `model_max_length` to
    the model's max_seq_length (and may add lowercasing), so saving it keeps the truncation.
    """
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise MissingExtraError(
            f"'{folder}' is a sentence-transformers model and exporting it needs the "
            "sentence-transformers package: pip install 'onnxport[exporters]' (or pass "
            "--library transformers to export the bare transformer).",
            extra="exporters",
            missing=["sentence-transformers"],
        ) from err
    try:
        pipeline = SentenceTransformer(
            str(folder), device="cpu", trust_remote_code=trust_remote_code, local_files_only=True
        )
    except Exception as err:  # sentence-transformers and transformers raise their own types
        raise ModelFileError(
            f"sentence-transformers could not load '{folder}': {first_line(err)}. Pass "
            "--library transformers to export the bare transformer instead.",
            model=str(folder),
        ) from err
    return wrap_bi_encoder(pipeline.to(dtype), str(folder))


def is_bi_encoder(model: Any) -> bool:
    """Whether `model` is an in-memory `sentence_transformers.SentenceTransformer`."""
    library = sys.modules.get("sentence_transformers")  # loaded if `model` is one of its models
    return library is not None and isinstance(model, library.SentenceTransformer)


def wrap_bi_encoder(pipeline: Any, name: str, task: str | None = None) -> tuple[Any, Any]:
    """`SentenceEmbedder` over a loaded SentenceTransformer, and the tokenizer it uses."""
    if task and get_task(task).name != BARE_TASK:
        raise TaskError(
            f"A SentenceTransformer exports as {BARE_TASK}, not {get_task(task).name}; drop "
            "the task, or export the checkpoint with --library transformers for that head.",
            task=task,
        )
    if pipeline.transformers_model is None or pipeline.tokenizer is None:
        raise ExportOptionError(
            f"The first module of '{name}' is not a transformers text model "
            f"({type(pipeline[0]).__name__}); onnxport exports sentence-transformers models "
            "built on one.",
            option="--library",
        )
    logger.info(
        "sentence-transformers pipeline: %s.",
        " -> ".join(type(each).__name__ for each in pipeline),
    )
    return SentenceEmbedder(pipeline).eval(), pipeline.tokenizer


def write_side_files(module: SentenceEmbedder, folder: Path) -> list[Path]:
    """The files `copy_side_files` copies, for an in-memory model: saved, then copied."""
    with tempfile.TemporaryDirectory(prefix="onnxport-st-") as saved:
        module.pipeline.save(saved, create_model_card=False)
        return copy_side_files(Path(saved), folder)


def copy_side_files(source: Path, folder: Path) -> list[Path]:
    """Copy sentence-transformers' files into the export so the folder stays one of its models.

    `modules.json` and the model-level configs, and every module's own folder (`1_Pooling/`,
    `2_Dense/`, `3_Normalize/`) as saved; the transformer's weights stay out (the graph has
    them), its config and tokenizer are written by the export itself.
    """
    copied = []
    for name in (ST_MODULES_FILE, ST_CONFIG_FILE, ST_MODULE_CONFIG_FILE):
        if (source / name).is_file():
            copied.append(Path(shutil.copy2(source / name, folder / name)))
    for entry in sentence_transformers_modules(source):
        path = str(entry.get("path") or "")
        if path and (source / path).is_dir() and not (folder / path).exists():
            copied.append(Path(shutil.copytree(source / path, folder / path)))
    return copied
