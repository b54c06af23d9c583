"""`ORTModel`: an ONNX Runtime session behind the transformers model API.

ORT models are not torch modules: they hold a session, a config and the folder they came
from. Called with torch tensors they return torch tensors; with numpy arrays, numpy arrays;
either way wrapped in the transformers output class of their task. Nothing here imports
torch: a caller passing torch tensors has loaded it already, and only then is it used.
This module never imports the export stages: `from_pretrained(..., export=True)` reaches
them only through the public `onnxport.export()` function, imported where it is called.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort

from onnxport.errors import ORTModelError, first_line
from onnxport.layout import (
    DECODER_FILE,
    MERGED_DECODER_FILE,
    ONNX_FILE,
    graph_folder,
    paired_file,
)
from onnxport.runtime.outputs import output_class, torch_loaded
from onnxport.runtime.registry import CLASS_NAMES
from onnxport.sessions import create_session

logger = logging.getLogger(__name__)

_ORT_TO_NUMPY = {
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(bool)": np.bool_,
}
_FLOAT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
}
# Inputs PyTorch models fill in themselves when left out; the ONNX graph needs them explicitly.
_DEFAULT_FILLS = {"attention_mask": 1, "token_type_ids": 0}


class ORTModel:
    """Base of every ONNX Runtime model class. Subclasses set `task` and `output_class_name`."""

    task: ClassVar[str] = ""
    # The transformers ModelOutput class name (see runtime.outputs); "" returns a dict.
    output_class_name: ClassVar[str] = ""
    main_input_name: ClassVar[str] = "input_ids"
    default_file: ClassVar[str] = ONNX_FILE
    # Session settings applied when the caller passes no session_options.
    session_config: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        session: ort.InferenceSession,
        config: Any,
        *,
        model_dir: Path,
        file_name: str = ONNX_FILE,
        session_options: ort.SessionOptions | None = None,
        _keep_alive: Any = None,
    ) -> None:
        self.session = session
        # Kept for the model's other sessions (an encoder-decoder's encoder).
        self.session_options = session_options
        self.config = config
        self.model_dir = Path(model_dir)
        self.file_name = file_name
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self._input_types = {i.name: i.type for i in session.get_inputs()}
        self._input_ranks = {i.name: len(i.shape) for i in session.get_inputs()}
        self._input_shapes = {i.name: list(i.shape) for i in session.get_inputs()}
        if (
            self.input_names
            and "input_ids" not in self.input_names
            and self.main_input_name == "input_ids"
        ):
            # A bare vision or audio model loaded as feature-extraction: pixel_values etc.
            self.main_input_name = self.input_names[0]  # type: ignore[misc]
        self._keep_alive = _keep_alive  # the temporary export folder, when exported on the fly

    # --- what transformers' pipelines read off a model -------------------------------------
    @property
    def device(self) -> Any:
        """The device outputs are returned on.

        A `torch.device` where torch is installed (transformers' pipelines read it), else its
        name.
        """
        name = "cuda" if "CUDAExecutionProvider" in self.providers else "cpu"
        if not _torch_installed():
            return name
        import torch

        return torch.device(name)

    @property
    def dtype(self) -> Any:
        """The floating type of the graph's outputs (float16 for an fp16 export).

        A `torch.dtype` where torch is installed, else a numpy dtype.
        """
        name = next(
            (_FLOAT_TYPES[o.type] for o in self.session.get_outputs() if o.type in _FLOAT_TYPES),
            "float32",
        )
        if not _torch_installed():
            return np.dtype(name)
        import torch

        return getattr(torch, name)

    @property
    def providers(self) -> list[str]:
        """Execution providers of the session, in priority order."""
        return list(self.session.get_providers())

    @classmethod
    def can_generate(cls) -> bool:
        """Encoder models cannot generate."""
        return False

    def eval(self) -> ORTModel:
        """No-op, for code written against torch modules."""
        return self

    def to(self, device: Any) -> ORTModel:
        """Only CPU placement is supported for now; anything else is refused clearly."""
        if str(device) not in ("cpu", "cpu:0"):
            raise ORTModelError(
                f"Moving an ORT model to '{device}' is not supported; load it with "
                "provider='CUDAExecutionProvider' instead."
            )
        return self

    @classmethod
    def default_session_options(cls) -> ort.SessionOptions:
        """Session options when the caller passes none: ORT's defaults plus `session_config`."""
        options = ort.SessionOptions()
        for key, value in cls.session_config.items():
            options.add_session_config_entry(key, value)
        return options

    # --- loading and saving -----------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        model_id: str | os.PathLike[str],
        *,
        export: bool = False,
        file_name: str | None = None,
        subfolder: str = "",
        provider: str = "CPUExecutionProvider",
        providers: Sequence[str] | None = None,
        session_options: ort.SessionOptions | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        **export_kwargs: Any,
    ) -> Any:
        """Load an exported folder (or Hub repo), or export a PyTorch checkpoint on the fly.

        The graph is `file_name` (default: the folder's one graph) in `subfolder`; without a
        subfolder, a transformers.js folder's `onnx/` is found by itself. `config.json` is
        read from the subfolder when it has one, else from the folder's root, as in optimum.

        Example:
            >>> model = ORTModelForSequenceClassification.from_pretrained("out/")  # doctest: +SKIP
            >>> model(**tokenizer("great film", return_tensors="pt")).logits  # doctest: +SKIP

        """
        from onnxport import hub

        keep_alive = None
        if export:
            from onnxport import export as run_export

            keep_alive = tempfile.TemporaryDirectory(prefix="onnxport-")
            folder = Path(keep_alive.name) / "model"
            run_export(
                model_id,
                folder,
                task=cls.task,
                trust_remote_code=trust_remote_code,
                revision=revision,
                **export_kwargs,
            )
        else:
            if export_kwargs:
                raise TypeError(f"Unexpected arguments: {', '.join(export_kwargs)}")
            folder = hub.resolve_model_path(
                model_id, revision=revision, allow_patterns=hub.ONNX_PATTERNS
            )
        name = cls._graph_name(folder, subfolder, file_name)
        path = folder / name
        if not path.is_file():
            raise ORTModelError(f"No ONNX file '{name}' in '{folder}'; see `onnxport inspect`.")
        if subfolder and (folder / subfolder / "config.json").is_file():
            folder, name = folder / subfolder, Path(name).relative_to(subfolder).as_posix()
        config = hub.load_config(folder, trust_remote_code=trust_remote_code)
        chosen = list(providers) if providers else [provider]
        if session_options is None:
            session_options = cls.default_session_options()
        session = create_session(path, session_options, chosen)
        cls._check_task(session, path)
        return cls(
            session,
            config,
            model_dir=folder,
            file_name=name,
            session_options=session_options,
            _keep_alive=keep_alive,
        )

    @classmethod
    def _check_task(cls, session: ort.InferenceSession, path: Path) -> None:
        """Refuse a file exported for another task (recorded in onnxport's metadata)."""
        exported_task = session.get_modelmeta().custom_metadata_map.get("task")
        if not cls.task or exported_task in (None, cls.task):
            return
        bare = {"feature-extraction", "image-feature-extraction"}
        if {exported_task, cls.task} <= bare:  # one bare model, two task names
            return
        right = CLASS_NAMES.get(exported_task)
        hint = f"load it with {right[1]}" if right else "export it for this task"
        raise ORTModelError(f"'{path}' was exported for {exported_task}, not {cls.task}: {hint}.")

    @classmethod
    def _graph_name(cls, folder: Path, subfolder: str, file_name: str | None) -> str:
        """The graph's path relative to `folder` (`model.onnx`, `onnx/model_q4.onnx`)."""
        if subfolder:
            graphs = folder / subfolder
        elif file_name and (folder / file_name).is_file():
            return Path(file_name).as_posix()
        else:
            graphs = graph_folder(folder)
        name = file_name or cls._find_onnx_file(graphs)
        return (graphs / name).relative_to(folder).as_posix()

    @classmethod
    def _find_onnx_file(cls, folder: Path) -> str:
        # transformers.js names the one decoder graph `decoder_model_merged.onnx`.
        defaults = [cls.default_file]
        if cls.default_file == DECODER_FILE:
            defaults.append(MERGED_DECODER_FILE)
        for default in defaults:
            if (folder / default).is_file():
                return default
        found = sorted(p.name for p in folder.glob("*.onnx"))
        if len(found) == 1:
            return found[0]
        if not found:
            raise ORTModelError(
                f"No .onnx file in '{folder}'. Export one with `onnxport export onnx`, or pass "
                "export=True to export a PyTorch checkpoint on the fly."
            )
        raise ORTModelError(
            f"'{folder}' holds several ONNX files ({', '.join(found)}); pick one with file_name=..."
        )

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> Path:
        """Copy the ONNX file(s), config and preprocessor files to `save_directory`."""
        target = Path(save_directory)
        target.mkdir(parents=True, exist_ok=True)
        for item in self.model_dir.iterdir():
            if item.is_file():
                shutil.copy2(item, target / item.name)
            elif item.is_dir() and not item.name.startswith("."):  # a transformers.js onnx/
                shutil.copytree(item, target / item.name, dirs_exist_ok=True)
        return target

    def _session_beside(self, graph: str) -> ort.InferenceSession:
        """A session for the graph `graph` beside this one, with its options and providers."""
        options = self.session_options or self.default_session_options()
        return create_session(self._graph_beside(graph), options, self.session.get_providers())

    def _graph_beside(self, graph: str) -> Path:
        """The graph `graph` paired with this model's file (a variant's own when it has one)."""
        plain = (Path(self.file_name).parent / graph).as_posix()
        for candidate in (paired_file(self.file_name, graph), plain):
            if (Path(self.model_dir) / candidate).is_file():
                return Path(self.model_dir) / candidate
        raise ORTModelError(f"No {graph} beside {self.file_name} in '{self.model_dir}'.")

    # --- running ----------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the model; see `forward`."""
        return self.forward(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the session on tokenizer-style inputs; returns the task's output class."""
        if args:
            kwargs.update(zip([self.main_input_name], args, strict=False))
        tensors = {
            k: v
            for k, v in kwargs.items()
            if isinstance(v, (np.ndarray, list))
            or is_tensor(v)
            or (self._input_ranks.get(k) == 0 and _is_number(v))  # a setting: noise_scale=0.5
        }
        # Exported without a mask (wav2vec2-base style; an image model traced on images of one
        # size): a mask of ones changes nothing; one with padding would, and is refused below.
        for name in ("attention_mask", "pixel_mask"):
            mask = tensors.get(name)
            no_mask = mask is not None and name not in self.input_names
            if no_mask and bool((_as_numpy(mask) == 1).all()):
                del tensors[name]
        unknown = sorted(set(tensors) - set(self.input_names))
        if unknown:
            raise ORTModelError(
                f"Unexpected input(s) {', '.join(unknown)}; this model takes "
                f"{', '.join(self.input_names)}."
                + (
                    " It was exported without an attention_mask: pass unpadded inputs, one "
                    "example at a time."
                    if "attention_mask" in unknown
                    else ""
                )
            )
        use_torch = any(is_tensor(v) for v in tensors.values())
        feed = self._feed(tensors)
        try:
            results = self.session.run(None, feed)
        except Exception as err:
            raise ORTModelError(
                f"ONNX Runtime failed on the given inputs ({_describe(feed)}); this model takes "
                f"{self._expected()}: {first_line(err)}"
            ) from err
        outputs: dict[str, Any] = {}
        for name, value in zip(self.output_names, results, strict=True):
            outputs[name] = to_torch(value, self.device) if use_torch else value
        return self._wrap(outputs)

    def _wrap(self, outputs: dict[str, Any]) -> Any:
        return self.output_type()(**outputs)

    def output_type(self) -> type:
        """The task's transformers output class (its torch-free twin without torch)."""
        return output_class(self.output_class_name) if self.output_class_name else dict

    def _feed(self, tensors: dict[str, Any]) -> dict[str, np.ndarray]:
        if self.main_input_name not in tensors:
            raise ORTModelError(
                f"Missing input '{self.main_input_name}'; this model takes {self._expected()}."
            )
        reference = _as_numpy(tensors[self.main_input_name])
        feed: dict[str, np.ndarray] = {}
        for name in self.input_names:
            if name in tensors:
                value = _as_numpy(tensors[name])
            elif name in _DEFAULT_FILLS:
                value = np.full(reference.shape, _DEFAULT_FILLS[name], dtype=np.int64)
            elif self._input_ranks[name] == 0 and _is_number(getattr(self.config, name, None)):
                # A setting the graph takes as an input (VITS' noise scales): the config's.
                value = np.array(getattr(self.config, name), dtype=np.float32)
            elif name == "global_attention_mask":
                value = global_attention_default(self.task, reference, self.config)
            elif name == "noise" and isinstance(self._input_shapes[name][-1], int):
                # Forward draws it when not given (ViT-MAE's random masking): so do we.
                size = (reference.shape[0], *self._input_shapes[name][1:])
                value = np.random.default_rng().random(size, dtype=np.float32)
            else:
                raise ORTModelError(f"Missing input '{name}'; this model takes {self._expected()}.")
            if value.ndim != self._input_ranks[name]:
                raise ORTModelError(
                    f"Input '{name}' has {value.ndim} dimension(s); this model takes "
                    f"{self._expected()}."
                )
            wanted = _ORT_TO_NUMPY.get(self._input_types[name])
            if wanted is not None and value.dtype != wanted:
                if value.dtype.kind not in "iubf":
                    raise ORTModelError(
                        f"Input '{name}' has dtype {value.dtype}; expected {np.dtype(wanted)}."
                    )
                value = value.astype(wanted)
            feed[name] = value
        return feed

    def _expected(self) -> str:
        return ", ".join(
            f"{i.name} {i.type.replace('tensor(', '').rstrip(')')}"
            f"[{', '.join(str(d) for d in i.shape)}]"
            for i in self.session.get_inputs()
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model_dir='{self.model_dir}', file='{self.file_name}', "
            f"providers={self.providers})"
        )


def global_attention_default(task: str, input_ids: np.ndarray, config: Any) -> np.ndarray:
    """Longformer's global attention when none is given, as its PyTorch heads choose it.

    Classification: the first token; question answering: the question (the tokens before
    the first separator); multiple choice: each choice's answer (after the separators, as
    `_compute_global_attention_mask(before_sep_token=False)`); other heads: none.
    """
    marks = np.zeros(input_ids.shape, dtype=np.int64)
    sep = getattr(config, "sep_token_id", None)
    if task == "text-classification":
        marks[..., 0] = 1
    elif task in ("question-answering", "multiple-choice") and sep is not None:
        first_sep = np.argmax(input_ids == sep, axis=-1)[..., None]
        positions = np.arange(input_ids.shape[-1])
        if task == "question-answering":
            marks = (positions < first_sep).astype(np.int64)
        else:
            marks = (positions > first_sep + 1).astype(np.int64)
    return marks


def is_tensor(value: Any) -> bool:
    """Whether `value` is a torch tensor (torch is loaded if it is one; never imports it)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def to_torch(value: np.ndarray, device: Any) -> Any:
    """A numpy result as a torch tensor on `device` (only called when torch is loaded)."""
    import torch

    return torch.from_numpy(value).to(device)


@functools.cache
def _torch_installed() -> bool:
    return torch_loaded() or importlib.util.find_spec("torch") is not None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_numpy(value: Any) -> np.ndarray:
    if is_tensor(value):
        return value.detach().cpu().numpy()
    ragged = ORTModelError(
        "Inputs of different lengths cannot form one array; tokenize with padding=True."
    )
    try:
        array = np.asarray(value)
    except ValueError as err:
        raise ragged from err
    if array.dtype == object:
        raise ragged
    return array


def _describe(feed: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in feed.items())


class ORTNumpyGenerator(ORTModel):
    """Base of models whose `generate` runs its own loop in numpy over several graphs.

    SpeechT5's speech and MusicGen's audio are not GenerationMixin's token loop; their classes
    read defaults from the folder's generation config, as transformers' pipelines do.
    """

    default_file: ClassVar[str] = DECODER_FILE
    input_modalities = ("text",)

    @classmethod
    def can_generate(cls) -> bool:
        """It generates (transformers' text-to-audio pipeline calls `generate`)."""
        return True

    @functools.cached_property
    def generation_config(self) -> Any:
        """The folder's generation config (defaults of `generate`, read by pipelines)."""
        from transformers import GenerationConfig

        try:
            return GenerationConfig.from_pretrained(self.model_dir)
        except OSError:
            return GenerationConfig()
