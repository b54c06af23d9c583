"""An exported folder's pipeline run on batches of untrusted inputs: what serve and batch share.

`PipelineRunner` loads the folder's pipeline once (one ONNX Runtime session), checks every
input before it reaches the model (type, mask token, length) with a one-line `RequestError`,
runs many inputs as one padded batch, and returns for each input what the in-process
pipeline answers for it (`dumps` writes it as JSON, `to_json` as plain Python values). It
imports nothing from Ray, so it is tested and used the same way in a Ray Serve replica, a Ray
Data actor, or a plain process. Encoder tasks run on onnxport's torch-free pipelines (same
answers as transformers'); only generation needs torch on a replica.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxport.errors import RequestError, ServeError, first_line

# Tasks that serve and batch take, and the JSON each input must be (image and audio inputs
# are not served yet).
INPUT_KINDS = {
    "feature-extraction": "text",
    "fill-mask": "text",
    "text-classification": "text-or-pair",
    "token-classification": "text",
    "question-answering": "question-context",
    "text-generation": "text",
    "text2text-generation": "text",
}
SERVE_TASKS = tuple(INPUT_KINDS)
GENERATION_TASKS = frozenset({"text-generation", "text2text-generation"})
# Request "parameters" each task takes: whole numbers with their range, or true/false (None).
PARAMETERS: dict[str, dict[str, tuple[int, int] | None]] = {
    task: {"max_new_tokens": (1, 512), "do_sample": None} for task in GENERATION_TASKS
}
# One request may carry a list of inputs; more than this is refused (HTTP 413).
MAX_INPUTS_PER_REQUEST = 256
_NO_LIMIT = 1 << 30  # models without a position table (none of the served ones so far)
# JSON Schema of one input, per kind (used for the OpenAPI description).
INPUT_SCHEMAS: dict[str, dict[str, Any]] = {
    "text": {"type": "string", "minLength": 1},
    "text-or-pair": {
        "oneOf": [
            {"type": "string", "minLength": 1},
            {
                "type": "object",
                "required": ["text", "text_pair"],
                "properties": {"text": {"type": "string"}, "text_pair": {"type": "string"}},
            },
        ]
    },
    "question-context": {
        "type": "object",
        "required": ["question", "context"],
        "properties": {"question": {"type": "string"}, "context": {"type": "string"}},
    },
}
_KIND_WORDS = {
    "text": "a non-empty string",
    "text-or-pair": 'a non-empty string or {"text": ..., "text_pair": ...}',
    "question-context": '{"question": ..., "context": ...} with two strings',
}


@dataclass(frozen=True)
class Outcome:
    """What one input gave: the pipeline's answer (JSON-ready via `dumps`), or why it failed."""

    value: Any = None
    error: RequestError | None = None


def to_json(value: Any) -> Any:
    """Pipeline output -> plain JSON values (numpy scalars and arrays become numbers/lists)."""
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "tolist"):  # torch tensors
        return to_json(value.tolist())
    return value


def model_task(model_dir: str | Path) -> str:
    """The task an exported folder was exported for, refused when serve/batch cannot run it."""
    from onnxport.layout import exported_task, find_base_graphs

    folder = Path(model_dir)
    if not folder.is_dir():
        raise ServeError(f"'{folder}' is not a folder; pass the folder `onnxport export` wrote.")
    graphs = find_base_graphs(folder)
    if graphs is None:
        raise ServeError(
            f"No exported model in '{folder}' (expected model.onnx, or encoder_model.onnx and "
            "decoder_model.onnx). Export one first with `onnxport export onnx`."
        )
    task = exported_task(folder / graphs[-1])
    if task not in INPUT_KINDS:
        raise ServeError(
            f"'{folder}' holds a {task} model; serve and batch run {', '.join(SERVE_TASKS)}. "
            "Call it from Python with onnxport.pipeline() instead."
        )
    return task


def preflight(model_dir: str | Path, file_name: str | None = None) -> str:
    """Load the folder's pipeline once here, before Ray places copies of it; returns the task.

    A graph ONNX Runtime cannot load, or a missing tokenizer, then fails with onnxport's one
    line instead of a replica's traceback streamed from the Ray cluster.
    """
    runner = PipelineRunner(model_dir, threads=1, file_name=file_name)
    task = runner.task
    del runner
    return task


class PipelineRunner:
    """One exported folder's pipeline, fed checked inputs in batches.

    Example:
        >>> runner = PipelineRunner("out/")  # doctest: +SKIP
        >>> [o.value for o in runner.run(["great film", "dull"])]  # doctest: +SKIP
        [{'label': 'POSITIVE', 'score': 0.99}, {'label': 'NEGATIVE', 'score': 0.98}]

    """

    def __init__(
        self, model_dir: str | Path, *, threads: int | None = None, file_name: str | None = None
    ) -> None:
        import onnxruntime as ort

        from onnxport.runtime import ORT_MODEL_CLASSES
        from onnxport.runtime.pipelines import pipeline

        self.model_dir = Path(model_dir)
        self.task = model_task(self.model_dir)
        self.kind = INPUT_KINDS[self.task]
        model_class = ORT_MODEL_CLASSES[self.task]
        options = model_class.default_session_options()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        model = model_class.from_pretrained(
            self.model_dir, session_options=options, file_name=file_name
        )
        # Encoder tasks run on the torch-free pipelines, so replicas need no torch installed.
        backend = None if self.task in GENERATION_TASKS else "numpy"
        self.pipeline = pipeline(self.task, model, backend=backend)
        self.tokenizer = self.pipeline.tokenizer
        self.max_tokens = _max_tokens(self.tokenizer, model.config)
        self.mask_token = getattr(self.tokenizer, "mask_token", None)

    # --- checking ----------------------------------------------------------------------------
    def split(self, inputs: Any) -> tuple[list[Any], bool]:
        """A request's `inputs` -> (list of single inputs, whether it was a list)."""
        if isinstance(inputs, list):
            if not inputs:
                raise RequestError("'inputs' is an empty list; send at least one input.")
            if len(inputs) > MAX_INPUTS_PER_REQUEST:
                raise RequestError(
                    f"'inputs' has {len(inputs)} items; send at most {MAX_INPUTS_PER_REQUEST} "
                    "per request.",
                    status=413,
                )
            return list(inputs), True
        return [inputs], False

    def check_parameters(self, parameters: Any) -> dict[str, Any]:
        """Refuse request parameters the task does not take; else return them as a dict."""
        if parameters is None:
            return {}
        allowed = PARAMETERS.get(self.task, {})
        if not isinstance(parameters, dict):
            raise RequestError("'parameters' must be a JSON object.", status=422)
        unknown = sorted(set(parameters) - set(allowed))
        if unknown:
            takes = ", ".join(allowed) if allowed else "none"
            raise RequestError(
                f"Unknown parameter(s) {', '.join(unknown)}; {self.task} takes: {takes}.",
                status=422,
            )
        for name, value in parameters.items():
            bounds = allowed[name]
            if bounds is None:
                if not isinstance(value, bool):
                    raise RequestError(
                        f"'{name}' must be true or false, not {value!r}.", status=422
                    )
                continue
            low, high = bounds
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise RequestError(
                    f"'{name}' must be a whole number from {low} to {high}, not {value!r}.",
                    status=422,
                )
        return dict(parameters)

    def check(self, item: Any, parameters: dict[str, Any] | None = None) -> Any:
        """Refuse an input the model cannot take, with a one-line reason; else return it."""
        if self.kind == "question-context":
            if not isinstance(item, dict) or not all(
                isinstance(item.get(key), str) and item[key].strip()
                for key in ("question", "context")
            ):
                raise RequestError(f"Each input must be {_KIND_WORDS[self.kind]}.", status=422)
            self._check_length(item["question"], what="question")
            return {"question": item["question"], "context": item["context"]}
        if self.kind == "text-or-pair" and isinstance(item, dict):
            if set(item) != {"text", "text_pair"} or not all(
                isinstance(v, str) and v for v in item.values()
            ):
                raise RequestError(f"Each input must be {_KIND_WORDS[self.kind]}.", status=422)
            pair = {"text": item["text"], "text_pair": item["text_pair"]}
            self._check_length(pair)
            return pair
        if not isinstance(item, str) or not item.strip():
            shown = "an empty string" if item == "" else f"{type(item).__name__} {_short(item)}"
            raise RequestError(
                f"Each input must be {_KIND_WORDS[self.kind]}, not {shown}.", status=422
            )
        if self.task == "fill-mask" and self.mask_token and self.mask_token not in item:
            raise RequestError(
                f"A fill-mask input needs the mask token {self.mask_token}, as in "
                f"'Paris is the {self.mask_token} of France.'",
                status=422,
            )
        # A decoder's prompt shares the position table with the tokens it generates.
        new_tokens = (parameters or {}).get("max_new_tokens", 1)
        room = new_tokens if self.task == "text-generation" else 0
        self._check_length(item, room=room)
        return item

    def _check_length(self, item: Any, *, what: str = "input", room: int = 0) -> None:
        count = self._token_count(item)
        limit = self.max_tokens - room
        if count > limit:
            extra = f" with {room} new token(s)" if room else ""
            raise RequestError(
                f"The {what} is {count} tokens long; this model takes at most "
                f"{limit}{extra}. Shorten it or split it.",
                status=413,
            )

    # --- running -----------------------------------------------------------------------------
    def run(
        self,
        items: Sequence[Any],
        *,
        checked: bool = False,
        parameters: dict[str, Any] | None = None,
    ) -> list[Outcome]:
        """Check (unless `checked`) and run `items` as one batch; one `Outcome` each, in order.

        `parameters` (checked by `check_parameters`) go to the pipeline call. If the batch
        fails as a whole, each input is run alone, so one bad input fails alone.
        """
        parameters = parameters or {}
        outcomes: list[Outcome | None] = [None] * len(items)
        good: list[tuple[int, Any]] = []
        for index, item in enumerate(items):
            try:
                good.append((index, item if checked else self.check(item, parameters)))
            except RequestError as err:
                outcomes[index] = Outcome(error=err)
        try:
            values = self._predict([item for _, item in good], parameters)
            for (index, _), value in zip(good, values, strict=True):
                outcomes[index] = Outcome(value=value)
        except Exception:
            for index, item in good:
                try:
                    outcomes[index] = Outcome(value=self._predict([item], parameters)[0])
                except Exception as err:
                    # Not the caller's mistake (the input passed every check): a 500.
                    reason = f"The model failed on this input: {first_line(err, 300)}"
                    outcomes[index] = Outcome(error=RequestError(reason, status=500))
        return [outcome or Outcome(error=RequestError("not run")) for outcome in outcomes]

    def answer(self, inputs: Any, values: list[Any]) -> Any:
        """Per-input values -> what `pipeline(inputs)` itself returns for the request."""
        if isinstance(inputs, list):
            return values
        # The text-classification pipeline wraps its answer to a single string in a list.
        if self.task == "text-classification" and isinstance(inputs, str):
            return [values[0]]
        return values[0]

    def _predict(self, items: list[Any], parameters: dict[str, Any]) -> list[Any]:
        # QA windows do not collate into batches. Generation runs one prompt at a time: a
        # padded batch changes the logits by float noise, enough to flip a greedy pick on a
        # near tie, so its answers would not always equal the pipeline's for one prompt.
        if self.kind == "question-context" or self.task in GENERATION_TASKS:
            return list(self.pipeline(_generate(items), batch_size=1, **parameters))
        lengths = [self._token_count(item) for item in items]
        answers: list[Any] = [None] * len(items)
        for group in length_groups(lengths):
            chunk = [items[i] for i in group]
            done = self._run_group(chunk, [lengths[i] for i in group])
            for index, answer in zip(group, done, strict=True):
                answers[index] = answer
        return answers

    def _run_group(self, chunk: list[Any], lengths: list[int]) -> list[Any]:
        # A generator makes the pipeline stream one answer per input, with none of the
        # single-vs-list special cases of its __call__.
        if self.task != "feature-extraction":
            return list(self.pipeline(_generate(chunk), batch_size=len(chunk)))
        # Token embeddings stay float32 arrays (return_tensors): turning them into Python
        # floats costs more than the model on short inputs; `dumps` writes arrays directly.
        answers = self.pipeline(_generate(chunk), batch_size=len(chunk), return_tensors=True)
        left = self._left_padded
        return [_unpad(out, n, left) for out, n in zip(answers, lengths, strict=True)]

    @property
    def _left_padded(self) -> bool:
        return getattr(self.tokenizer, "padding_side", "right") == "left"

    def _token_count(self, item: Any) -> int:
        """Tokens of a text or a {"text", "text_pair"} pair, special tokens included."""
        if isinstance(item, dict):
            return len(self.tokenizer(item["text"], item["text_pair"])["input_ids"])
        return len(self.tokenizer(item)["input_ids"])


def length_groups(lengths: Sequence[int], slack: float = 1.25) -> list[list[int]]:
    """Indices grouped by similar length, so padding adds at most `slack` x the real tokens.

    A batch is padded to its longest input; mixing 4- and 20-token inputs nearly doubles the
    work. Sorted by length, an input joins the current group while the group padded to it
    stays within `slack` of the group's real token count.
    """
    groups: list[list[int]] = []
    total = 0
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        length = lengths[index]
        group = groups[-1] if groups else None
        if group is not None and (len(group) + 1) * length <= slack * (total + length):
            group.append(index)
            total += length
        else:
            groups.append([index])
            total = length
    return groups


def _unpad(answer: Any, count: int, left: bool) -> np.ndarray:
    # The pipeline returns batched feature-extraction outputs at the padded length;
    # cut each back to its own tokens so it equals the pipeline's answer for it alone.
    rows = answer.numpy() if hasattr(answer, "numpy") else np.asarray(answer)
    return rows[:, -count:] if left else rows[:, :count]


def dumps(value: Any) -> bytes:
    """JSON bytes of a pipeline answer; numpy arrays and scalars written natively (orjson)."""
    import orjson

    return orjson.dumps(value, default=_plain, option=orjson.OPT_SERIALIZE_NUMPY)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # torch tensors, numpy types orjson does not take
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _generate(items: list[Any]) -> Iterator[Any]:
    yield from items


def _max_tokens(tokenizer: Any, config: Any) -> int:
    """Longest input the model takes: the tokenizer's limit or the position table's size."""
    limits = [getattr(tokenizer, "model_max_length", None)]
    limits.append(getattr(config, "max_position_embeddings", None))
    usable = [int(v) for v in limits if isinstance(v, (int, float)) and 0 < v < 1_000_000]
    return min(usable) if usable else _NO_LIMIT


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
