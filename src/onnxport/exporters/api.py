"""`export()`: load -> spec -> capture -> postprocess -> validate, written atomically."""

from __future__ import annotations

import functools
import gc
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from onnxport import hub
from onnxport.errors import (
    CaptureError,
    ExportOptionError,
    SpecError,
    TaskError,
    UnsupportedCacheError,
    UnsupportedModelError,
    ValidationError,
    first_line,
)
from onnxport.exporters import load, modality
from onnxport.exporters import sentence_transformers as st
from onnxport.exporters.adapters import ADAPTERS
from onnxport.exporters.adapters.base import declares_inputs
from onnxport.exporters.capture import capture, check_opset, default_opset
from onnxport.exporters.cross_cache import attach_cross_attention
from onnxport.exporters.dummy import (
    BATCH,
    ENCODER,
    HEIGHT,
    WIDTH,
    InputShape,
    model_dtype,
    trace_shape,
    validation_shapes,
)
from onnxport.exporters.fuse_cache import fold_cache_into_attention
from onnxport.exporters.genai import add_genai_config
from onnxport.exporters.genai import check_support as check_genai_support
from onnxport.exporters.image_loop import loop_over_images
from onnxport.exporters.layouts import apply_layout, check_layout
from onnxport.exporters.music_generation import graph_parts as music_generation_parts
from onnxport.exporters.music_generation import is_music_generation
from onnxport.exporters.packed_vision import PackedTower, takes_grid
from onnxport.exporters.postprocess import (
    EXTERNAL_DATA_FILE,
    ONNX_FILE,
    add_metadata,
    check_output_dir,
    needs_external_data,
    save_side_files,
    staged_output,
)
from onnxport.exporters.spec import ExportSpec, default_input_names, derive_spec, example_inputs
from onnxport.exporters.speech_synthesis import (
    check_layout_for_speech,
    is_synthesizer,
    load_vocoder,
    synthesizer_opset,
)
from onnxport.exporters.speech_synthesis import graph_parts as speech_synthesis_parts
from onnxport.exporters.validate import ValidationReport, validate
from onnxport.exporters.vision_language import VisionPart
from onnxport.exporters.vision_language import graph_parts as vision_language_parts
from onnxport.layout import (
    LIBRARY_SENTENCE_TRANSFORMERS,
    LIBRARY_TRANSFORMERS,
    META_ACTIVATION,
    META_CACHE,
    META_LIBRARY,
    NO_CACHE,
    VOCODER_CONFIG,
    cross_encoder_activation,
)
from onnxport.tasks import (
    BARE_TASK,
    TASKS,
    Task,
    check_task_for,
    get_task,
    infer_task,
    resolve_task,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    """What `export()` wrote and proved.

    `onnx_path`, `spec` and `validation` describe the main graph (the decoder of an
    encoder-decoder model); `reports` and `specs` hold one entry per graph written.
    """

    output_dir: Path
    onnx_path: Path
    files: tuple[Path, ...]
    task: str
    spec: ExportSpec
    strategy: str
    validation: ValidationReport | None
    seconds: float
    reports: tuple[ValidationReport, ...] = ()
    specs: tuple[ExportSpec, ...] = ()


def _check_device(device: str) -> list[str]:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device != "cuda":
        raise ExportOptionError(f"--device must be cpu or cuda, not '{device}'.", option="--device")
    if not torch.cuda.is_available():
        raise ExportOptionError(
            "--device cuda was asked but PyTorch sees no CUDA device here. Use --device cpu.",
            option="--device",
        )
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise ExportOptionError(
            "--device cuda needs onnxruntime-gpu (the installed onnxruntime has no CUDA "
            "provider). Install onnxruntime-gpu, or use --device cpu.",
            option="--device",
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _task_of_model(model: Any, task: str | None) -> Task:
    model_type = model.config.model_type
    if task:
        chosen = resolve_task(get_task(task), model_type)
        check_task_for(chosen, model_type)
        if type(model).__name__ != chosen.model_classes().get(model_type, type(model).__name__):
            raise TaskError(
                f"The model is a {type(model).__name__}, which has no head for '{chosen.name}'. "
                f"Load it with {chosen.auto_class} or pass the matching task.",
                task=chosen.name,
                model_type=model_type,
            )
        return chosen
    for candidate in TASKS:
        if candidate.model_classes().get(model_type) == type(model).__name__:
            return candidate
    raise TaskError(
        f"Cannot tell the task of a {type(model).__name__}; pass task=... explicitly.",
        task=None,
        model_type=model_type,
    )


def export(
    model: str | os.PathLike[str] | torch.nn.Module,
    output_dir: str | os.PathLike[str],
    task: str | None = None,
    *,
    tokenizer: Any | None = None,
    processor: Any | None = None,
    opset: int | None = None,
    atol: float | None = None,
    device: str = "cpu",
    batch_size: int = 2,
    sequence_length: int = 16,
    validate_export: bool = True,
    force: bool = False,
    external_data: bool | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    dtype: str = "fp32",
    layout: str = "onnxport",
    library: str | None = None,
    genai: bool | None = None,
    vocoder: str | os.PathLike[str] | torch.nn.Module | None = None,
) -> ExportResult:
    """Export a Transformers model to `output_dir/model.onnx` and prove it matches PyTorch.

    `model` is a Hub id, a local folder, or a loaded `PreTrainedModel`. Without `task` it is
    inferred from the checkpoint's architecture (the bare model when no head matches).
    Validation runs at two shapes unlike the traced one and raises `ValidationError` on a
    mismatch, leaving `output_dir` untouched. External data is used when the weights exceed
    what one protobuf holds, or when `external_data=True`. `tokenizer` and `processor` (an
    image processor or feature extractor) are saved beside the graph so pipelines can load the
    folder; exported from a folder, its own are kept. `dtype` ("fp32", "fp16", "bf16") is the
    precision of the weights and the graph; a checkpoint is loaded directly in it, an
    in-memory model must already be in it. `layout="transformers.js"` writes the graphs
    under `output_dir/onnx/` with the names transformers.js loads (`model.onnx`, or
    `encoder_model.onnx` + `decoder_model_merged.onnx`).

    A folder with `modules.json` (or an in-memory `sentence_transformers.SentenceTransformer`)
    is exported as a sentence-transformers model unless `library="transformers"`: a
    SentenceTransformer's graph runs its whole pipeline (pooling, dense layers, normalization)
    and returns `token_embeddings` and `sentence_embedding`; a CrossEncoder exports as
    text-classification and records its activation function.

    A text-generation export of an architecture onnxruntime-genai runs gets a
    `genai_config.json` beside its graph; `genai=True` refuses the others in one line,
    `genai=False` writes none.

    A spectrogram synthesizer (SpeechT5, task text-to-spectrogram, which text-to-audio names
    for it) speaks through `vocoder` (a Hub id, folder or loaded `SpeechT5HifiGan`), exported
    beside it as `vocoder.onnx`; without one the folder makes spectrograms.

    Example:
        >>> result = export("bert-folder/", "out/", task="question-answering")  # doctest: +SKIP
        >>> result.validation.passed  # doctest: +SKIP
        True

    """
    start = time.perf_counter()
    output = Path(output_dir)
    if opset is not None:
        check_opset(opset)
    providers = _check_device(device)
    if atol is not None and not atol > 0:
        raise ExportOptionError(f"--atol must be a positive number, not {atol}.", option="--atol")
    _check_dtype(dtype, device, validate_export)
    check_layout(layout)
    st.check_library(library)
    check_output_dir(output, force=force)

    loaded = load_for_export(
        model, task, revision=revision, trust_remote_code=trust_remote_code, dtype=dtype,
        tokenizer=tokenizer, library=library,
    )  # fmt: skip
    task_obj, torch_model, source = loaded.task, loaded.model, loaded.source
    source_name, tokenizer = loaded.source_name, loaded.tokenizer
    traced = trace_shape(batch_size, sequence_length, with_past=task_obj.with_past)
    if is_synthesizer(task_obj):
        opset = synthesizer_opset(opset)
    elif opset is None:
        opset = default_opset(task_obj.with_past)
    torch_model = torch_model.to(device)
    config = torch_model.config
    if genai:
        check_genai_support(config.model_type, task_obj.name)
    _exportable_experts(torch_model)
    adapter = ADAPTERS.get(config.model_type)
    prepared = adapter.prepare_model(torch_model, task_obj.name)
    graphs = []
    recomputed = False  # a text-generation graph without a cache
    loaded_vocoder = None
    if is_synthesizer(task_obj) or is_music_generation(task_obj):
        check_layout_for_speech(layout)
    if is_synthesizer(task_obj):
        loaded_vocoder = load_vocoder(vocoder, revision=revision, device=device)
    elif vocoder is not None:
        raise ExportOptionError(
            f"--vocoder is for text-to-speech with a spectrogram model (SpeechT5); "
            f"'{config.model_type}' exports {task_obj.name}.",
            option="--vocoder",
        )
    parts = _graphs(prepared, task_obj, config, tokenizer, vocoder=loaded_vocoder)
    for file_name, module, part_task, default in parts:
        names = adapter.input_names(config, task_obj.name, default)
        try:
            spec = derive_spec(module, part_task, names, adapter=adapter, traced=traced)
        except UnsupportedCacheError as err:
            if task_obj.name != "text-generation" or task_obj.vision_language:
                raise
            # Recurrent states (Mamba, Qwen3-Next's linear attention) and legacy caches have
            # no graph form yet: the graph takes the whole sequence at every step instead.
            logger.warning(
                "%s Exporting without a cache: each generation step recomputes the whole "
                "sequence (slower; the same tokens).", first_line(err, 200),
            )  # fmt: skip
            # The decoder's input names stay: the mask and positions (which follow left
            # padding) over the whole sequence.
            part_task, recomputed = replace(part_task, with_past=False), True
            spec = derive_spec(module, part_task, names, adapter=adapter, traced=traced)
        logger.info(
            "%s inputs: %s. Outputs: %s.",
            file_name,
            ", ".join(spec.input_names),
            ", ".join(spec.output_names),
        )
        _check_synthesizes(spec)
        graphs.append((file_name, module, spec, part_task, names))
    use_external = needs_external_data(torch_model) if external_data is None else external_data
    if atol is None and dtype in DTYPE_ATOL:
        atol = max(DTYPE_ATOL[dtype], *(graph[2].atol for graph in graphs))
    options = {
        "task": task_obj.name, "opset": opset, "dtype": dtype, "device": device,
        "batch_size": batch_size, "sequence_length": sequence_length, "atol": atol,
        "validate": validate_export, "external_data": use_external, "revision": revision,
        "trust_remote_code": trust_remote_code, "layout": layout, "library": loaded.library,
    }  # fmt: skip
    metadata = {
        "source": source_name, "task": task_obj.name, "opset": str(opset), "dtype": dtype,
        **_versions(), "export_options": json.dumps(options, sort_keys=True),
        META_LIBRARY: loaded.library, **loaded.metadata,
        **({META_CACHE: NO_CACHE} if recomputed else {}),
    }  # fmt: skip

    reports: list[ValidationReport] = []
    strategies: list[str] = []
    with staged_output(output, force=force) as staging:
        for index, (file_name, module, spec, part_task, names) in enumerate(graphs):
            attempt = functools.partial(
                _capture_and_validate, staging / file_name, module, config=config,
                adapter=adapter, traced=traced, device=device, opset=opset,
                external_data=use_external, atol=atol, providers=providers,
                validate_export=validate_export, output=output, metadata=metadata,
            )  # fmt: skip
            # A model onnxport loaded itself is freed before ONNX Runtime validates the last
            # graph: a model and its export both resident would double the peak memory.
            release = None
            if source is not None and index == len(graphs) - 1:
                release = functools.partial(_release_weights, torch_model)
            try:
                # An image model whose graph may need the fixed-size retry keeps its weights.
                strategy, report = attempt(
                    spec, release_model=None if _dynamic_image(spec) else release
                )
            except (CaptureError, ValidationError) as err:
                if not _dynamic_image(spec):
                    raise
                # The model ran at other sizes in PyTorch, but the graph fixed one anyway
                # (position embeddings interpolated to the traced size): export that size.
                spec = derive_spec(
                    module, part_task, names, adapter=adapter, traced=traced,
                    fixed_image_size=True,
                )  # fmt: skip
                size = "x".join(str(d) for d in spec.input_templates["pixel_values"][2:])
                logger.warning(
                    "%s: the graph does not hold at other image sizes (%s); exported at the "
                    "config's %s instead.", file_name, first_line(err, 160), size,
                )  # fmt: skip
                strategy, report = attempt(spec, release_model=release)
                graphs[index] = (file_name, module, spec, part_task, names)
            strategies.append(strategy)
            if report is not None:
                reports.append(report)
        save_side_files(
            staging,
            config=config,
            tokenizer=tokenizer,
            processor=processor,
            source=source,
            generation_config=torch_model.generation_config if task_obj.with_past else None,
        )
        if loaded_vocoder is not None:
            loaded_vocoder.config.to_json_file(staging / VOCODER_CONFIG)
        if loaded.library == LIBRARY_SENTENCE_TRANSFORMERS and source is not None:
            st.copy_side_files(source, staging)
        elif loaded.library == LIBRARY_SENTENCE_TRANSFORMERS:
            st.write_side_files(torch_model, staging)
        moved = apply_layout(
            staging, [graph[0] for graph in graphs], layout,
            encoder_decoder=task_obj.encoder_decoder,
        )  # fmt: skip
        add_genai_config(
            staging, moved[graphs[-1][0]], config=config,
            generation_config=getattr(torch_model, "generation_config", None), tokenizer=tokenizer,
            task=task_obj.name, requested=genai,
        )  # fmt: skip
        files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    seconds = time.perf_counter() - start
    if use_external:
        logger.info("Weights stored in %s beside the graph.", EXTERNAL_DATA_FILE)
    main_file, _, main_spec, _, _ = graphs[-1]
    return ExportResult(
        output_dir=output,
        onnx_path=output / moved[main_file],
        files=tuple(output / f for f in files),
        task=task_obj.name,
        spec=main_spec,
        strategy=strategies[-1],
        validation=reports[-1] if reports else None,
        seconds=seconds,
        reports=tuple(reports),
        specs=tuple(graph[2] for graph in graphs),
    )


# Half precision keeps 11 (fp16) or 8 (bf16) significant bits: a few units in the last
# place of outputs of magnitude ~4, where fp32 is held to 1e-4.
DTYPE_ATOL = {"fp16": 1e-2, "bf16": 5e-2}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to export: the PyTorch module, its task, and where it came from."""

    model: Any
    task: Task
    source: Path | None
    source_name: str
    tokenizer: Any | None
    library: str = LIBRARY_TRANSFORMERS
    metadata: Mapping[str, str] = field(default_factory=dict)  # recorded in every graph


def load_for_export(
    model: str | os.PathLike[str] | torch.nn.Module,
    task: str | None,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    dtype: str = "fp32",
    tokenizer: Any | None = None,
    library: str | None = None,
) -> LoadedModel:
    """Load a Hub id or folder for `task` (inferred when None), or check an in-memory model.

    A checkpoint is loaded directly in `dtype`; an in-memory model must already be in it.
    Its tokenizer is loaded too unless one is given (a warning when a text model has none).
    A sentence-transformers folder is loaded as one unless `library="transformers"`.
    """
    torch_dtype = DTYPES[dtype]
    source: Path | None = None
    kind: str | None = None
    metadata: dict[str, str] = {}
    if isinstance(model, torch.nn.Module) and st.is_bi_encoder(model):
        embedder, own_tokenizer = st.wrap_bi_encoder(model, type(model).__name__, task)
        _check_weights_dtype(embedder, dtype)
        return LoadedModel(
            embedder, get_task(BARE_TASK), None, embedder.source_name, tokenizer or own_tokenizer,
            library=LIBRARY_SENTENCE_TRANSFORMERS,
        )  # fmt: skip
    if isinstance(model, torch.nn.Module):
        task_obj = _task_of_model(model, task)
        torch_model: Any = model.eval()
        _check_weights_dtype(torch_model, dtype)
        source_name = getattr(model.config, "_name_or_path", "") or type(model).__name__
    else:
        source_name = os.fspath(model)
        logger.info("Loading %s...", source_name)
        source = hub.resolve_model_path(model, revision=revision)
        config = hub.load_config(source, trust_remote_code=trust_remote_code)
        kind = st.export_kind(source, library, task)
        if kind == st.BI_ENCODER:
            embedder, own_tokenizer = st.load_bi_encoder(
                source, trust_remote_code=trust_remote_code, dtype=torch_dtype
            )
            return LoadedModel(
                embedder, get_task(BARE_TASK), source, source_name, tokenizer or own_tokenizer,
                library=LIBRARY_SENTENCE_TRANSFORMERS,
            )  # fmt: skip
        if kind == st.CROSS_ENCODER:
            activation = cross_encoder_activation(source, trust_remote_code=trust_remote_code)
            metadata = {META_ACTIVATION: activation}
            task = task or "text-classification"
        task_obj = resolve_task(get_task(task), config.model_type) if task else infer_task(config)
        check_task_for(task_obj, config.model_type)
        if not task:
            logger.info("Task inferred from the checkpoint: %s.", task_obj.name)
        torch_model = load.load_model(
            source,
            task_obj.auto_model_class(),
            trust_remote_code=trust_remote_code,
            dtype=torch_dtype,
        )
        if tokenizer is None:
            # Vision and audio models need no tokenizer: no warning when they have none.
            text = modality.modality(torch_model) == modality.TEXT
            tokenizer = load.load_tokenizer(
                source, trust_remote_code=trust_remote_code, warn_missing=text
            )
    if kind == st.CROSS_ENCODER:
        return LoadedModel(
            torch_model, task_obj, source, source_name, tokenizer,
            library=LIBRARY_SENTENCE_TRANSFORMERS, metadata=metadata,
        )  # fmt: skip
    return LoadedModel(torch_model, task_obj, source, source_name, tokenizer)


def _check_synthesizes(spec: ExportSpec) -> None:
    """Refuse a text-to-audio model whose forward returns no audio (it generates tokens)."""
    if spec.task != "text-to-audio":
        return
    if not any("waveform" in name or "audio" in name for name in spec.outputs):
        raise UnsupportedModelError(
            f"'{spec.model_type}' makes speech token by token (its forward returns "
            f"{', '.join(spec.outputs)}, no waveform): text-to-audio exports models that "
            "synthesize in one forward (VITS); generative speech models are not supported yet.",
            model_type=spec.model_type,
        )


def _check_weights_dtype(model: torch.nn.Module, dtype: str) -> None:
    """An in-memory model must already be in the dtype asked for."""
    if model_dtype(model) != DTYPES[dtype]:
        raise ExportOptionError(
            f"The model's weights are {model_dtype(model)}, not {dtype}: convert it "
            f"first (model.to({DTYPES[dtype]})) or pass the dtype it has.",
            option="--dtype",
        )


def _check_dtype(dtype: str, device: str, validate_export: bool) -> torch.dtype:
    if dtype not in DTYPES:
        raise ExportOptionError(
            f"Unknown --dtype '{dtype}'; choose one of {', '.join(DTYPES)}.", option="--dtype"
        )
    if dtype == "bf16" and device == "cpu" and validate_export:
        raise ExportOptionError(
            "--dtype bf16 cannot be validated on the CPU: ONNX Runtime's CPU provider has no "
            "bfloat16 kernels. Validate on a GPU with --device cuda, use --dtype fp16, or pass "
            "--no-validate to write it unvalidated.",
            option="--dtype",
        )
    return DTYPES[dtype]


def _versions() -> dict[str, str]:
    """Versions of the libraries that shaped the graph, recorded in its metadata."""
    import onnx
    import transformers

    return {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "onnx_version": onnx.__version__,
    }


def _dynamic_image(spec: ExportSpec) -> bool:
    """Whether the spec gives images a dynamic height or width."""
    template = spec.input_templates.get("pixel_values", ())
    return HEIGHT in template or WIDTH in template


def _capture_and_validate(
    onnx_path: Path,
    module: torch.nn.Module,
    spec: ExportSpec,
    *,
    config: Any,
    adapter: Any,
    traced: InputShape,
    device: str,
    opset: int,
    external_data: bool,
    atol: float | None,
    providers: list[str],
    validate_export: bool,
    output: Path,
    metadata: dict[str, str],
    release_model: Callable[[], None] | None = None,
) -> tuple[str, ValidationReport | None]:
    """Capture one graph to `onnx_path`, then validate it (raising on a mismatch).

    `release_model` frees the model's weights once validation no longer needs them.
    """
    # A vision encoder whose features are a Python list is traced for one image, then looped.
    looped = module if isinstance(module, VisionPart) and module.one_image else None
    traced_spec = looped.single_image_spec(spec) if looped is not None else spec
    example = {
        k: v.to(device) for k, v in example_inputs(traced_spec, config, adapter, traced).items()
    }
    captured = capture(
        module, traced_spec, example, opset=opset, path=onnx_path, external_data=external_data
    )
    if looped is not None:
        loop_over_images(onnx_path, BATCH, looped.lead)
        logger.info("%s runs its one-image graph in a Loop over the images.", onnx_path.name)
    if spec.decoder is not None:
        folded = fold_cache_into_attention(onnx_path)
        logger.info("The key/value cache went into %d Attention nodes.", folded)
    if spec.decoder is not None and spec.decoder.cross_layers:
        _capture_cross_attention(
            onnx_path, module, spec, config=config, adapter=adapter, traced=traced,
            device=device, opset=opset, external_data=external_data,
        )  # fmt: skip
    extra = {}
    if spec.decoder and spec.decoder.max_total_length:
        extra["max_total_length"] = str(spec.decoder.max_total_length)
    add_metadata(
        onnx_path,
        {
            **metadata,
            "model_type": spec.model_type,
            "capture_strategy": captured.strategy,
            **extra,
        },
    )
    if not validate_export:
        return captured.strategy, None
    # A graph without a cache (an encoder beside its decoder) is validated at an encoder's
    # shapes: a one-token step would be a few milliseconds of audio, too short for a speech
    # encoder's convolutions.
    shapes = validation_shapes(traced if spec.decoder else replace(traced, past_length=0))
    report = validate(
        onnx_path,
        module,
        spec,
        adapter,
        shapes,
        atol=atol,
        providers=providers,
        release_model=release_model,
    )
    report = ValidationReport(
        output / onnx_path.name,
        report.reference_outputs,
        report.onnx_outputs,
        report.checks,
        report.atol,
    )
    if not report.passed:
        raise ValidationError(
            f"Validation failed for {onnx_path.name}: {report.summary()}; '{output}' was "
            "left as it was. Pass a larger --atol if this difference is acceptable, or "
            "--no-validate to keep the files for inspection.",
            report=report,
        )
    return captured.strategy, report


def _capture_cross_attention(
    onnx_path: Path,
    module: torch.nn.Module,
    spec: ExportSpec,
    *,
    config: Any,
    adapter: Any,
    traced: InputShape,
    device: str,
    opset: int,
    external_data: bool,
) -> None:
    """Capture the cross-attention projections and join them to the decoder (cross_cache.py)."""
    from onnxport.exporters.seq2seq import CrossAttentionPart

    assert spec.decoder is not None
    hidden = "encoder_hidden_states"
    cross_spec = ExportSpec(
        model_type=spec.model_type,
        task=spec.task,
        inputs={hidden: {0: BATCH, 1: ENCODER}},
        outputs={name: {0: BATCH, 2: ENCODER} for name in spec.decoder.cross_present_names()},
        input_templates={hidden: spec.input_templates[hidden]},
        dtype=spec.dtype,
    )
    part = CrossAttentionPart(module, spec.decoder.cross_layers)
    example = {
        k: v.to(device) for k, v in example_inputs(cross_spec, config, adapter, traced).items()
    }
    cross_path = onnx_path.with_name("cross_attention.onnx")
    try:
        capture(
            part, cross_spec, example, opset=opset, path=cross_path, external_data=external_data
        )
        attach_cross_attention(
            onnx_path, cross_path, spec.decoder.cross_past_names(), cross_spec.output_names
        )
    finally:
        for leftover in cross_path.parent.glob(cross_path.name + "*"):
            leftover.unlink()
    logger.info(
        "Cross-attention keys and values are computed once per input (%d layers).",
        spec.decoder.cross_layers,
    )


def _release_weights(model: torch.nn.Module) -> None:
    """Free `model`'s weights (moved to the meta device); only its config stays usable."""
    model.to("meta")
    gc.collect()


def _exportable_experts(model: Any) -> None:
    """Switch mixture-of-experts layers to transformers' `batched_mm` experts.

    Their default, `grouped_mm`, is a custom op that torch.onnx cannot translate; `batched_mm`
    computes the same with plain batched matmuls (and is validated like any export).
    """
    if getattr(model.config, "_experts_implementation", None) != "grouped_mm":
        return
    try:
        model.set_experts_implementation("batched_mm")
    except (ValueError, RuntimeError, AttributeError) as err:
        logger.warning("Could not switch the experts to batched_mm: %s", err)
        return
    logger.info("Mixture-of-experts layers run as batched matmuls (batched_mm) for export.")


def _graphs(
    model: Any, task: Task, config: Any, tokenizer: Any, *, vocoder: Any = None
) -> list[tuple[str, torch.nn.Module, Task, list[str]]]:
    """The graphs to write: (file name, module, task, default input names) for each."""
    if is_music_generation(task):
        return [
            (name, module, task if cached else replace(task, with_past=False), names)
            for name, module, names, cached in music_generation_parts(model)
        ]
    if is_synthesizer(task):
        return [
            (name, module, task if cached else replace(task, with_past=False), names)
            for name, module, names, cached in speech_synthesis_parts(model, vocoder)
        ]
    if task.vision_language:
        return [
            (file_name, module, task if cached else replace(task, with_past=False), names)
            for file_name, module, names, cached in vision_language_parts(model)
        ]
    if task.name == "retrieval":
        from onnxport.exporters.retrieval import graph_parts as retrieval_parts

        return [(name, module, task, names) for name, module, names in retrieval_parts(model)]
    if takes_grid(model) and not task.with_past:  # a bare packed vision tower
        tower = PackedTower(model)
        return [(ONNX_FILE, tower, task, tower.input_names())]
    if not task.encoder_decoder:
        try:
            names = default_input_names(model, config, tokenizer, with_past=task.with_past)
        except SpecError:
            if not declares_inputs(ADAPTERS.get(config.model_type)):
                raise
            names = []  # the architecture's adapter names them
        return [(ONNX_FILE, model, task, names)]
    from onnxport.exporters.seq2seq import ENCODER_FILE, graph_parts

    graphs = []
    for file_name, module, declared in graph_parts(model, task.name):
        # The encoder runs once per input: no cache.
        part_task = replace(task, with_past=False) if file_name == ENCODER_FILE else task
        inputs = (
            declared if declared is not None else default_input_names(module, config, tokenizer)
        )
        graphs.append((file_name, module, part_task, inputs))
    return graphs
