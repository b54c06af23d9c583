"""Which architectures onnxport's own test suite proves, and what else the generic path tries.

`TESTED_MODEL_TYPES` is the list the test matrix runs: every task each of these has a head
for is exported, validated and run against PyTorch (one per architecture in `make test`, all
in `make test-slow`). The coverage matrix
(`onnxport coverage`, packaged as `data/coverage.json`) adds every pair it validated.
`onnxport architectures` and the README's section are generated from both, so they cannot
drift from what is tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from onnxport.tasks import TASKS, tasks_for_model_type

ENCODER_TASKS = (
    "feature-extraction", "fill-mask", "multiple-choice", "question-answering",
    "text-classification", "token-classification",
)  # fmt: skip
TESTED_MODEL_TYPES: tuple[str, ...] = (
    "albert", "bert", "camembert", "deberta-v2", "distilbert", "electra", "modernbert",
    "mpnet", "roberta", "xlm-roberta",
)  # fmt: skip
# Vision-language models: vision encoder + token embedding + decoder, greedy generate() parity.
TESTED_VISION_LANGUAGE: tuple[str, ...] = ("gemma3", "idefics3", "llava")
# Decoder-only models: export with a key/value cache, validation, and generate() parity. The
# same test runs the others the coverage matrix validates under `make test-slow` (suite time).
TESTED_DECODERS: tuple[str, ...] = ("gemma4_text", "gpt2", "llama", "mistral", "phi3", "qwen3")
# Encoder-decoder models: encoder + decoder graphs, validation, and generate() parity (the
# others, mT5, Marian, mBART, Pegasus, M2M100 and ten more, under `make test-slow`).
TESTED_SEQ2SEQ: tuple[str, ...] = ("bart", "t5")
# Speech encoder-decoder models: audio in, tokens out, generate() parity (Whisper's for it).
TESTED_SPEECH: tuple[str, ...] = ("moonshine", "speech_to_text", "speecht5", "whisper")
# Image encoder-decoder models (TrOCR-style captioners): pixels in, tokens out.
TESTED_VISION2SEQ: tuple[str, ...] = ("vision-encoder-decoder",)


@dataclass(frozen=True)
class ArchitectureSupport:
    """One model type: its supported tasks, those CI tests, and the coverage matrix's results.

    `validated_tasks` passed the coverage matrix (export + validation of a tiny random
    model); `failures` maps each other task to the matrix's FAIL or SKIP reason.
    """

    model_type: str
    tasks: tuple[str, ...]
    tested_tasks: tuple[str, ...]
    validated_tasks: tuple[str, ...] = ()
    failures: tuple[tuple[str, str], ...] = ()

    @property
    def tested(self) -> bool:
        """Whether CI tests at least one task of this model type."""
        return bool(self.tested_tasks)

    @property
    def supported(self) -> bool:
        """Whether CI tests it or the coverage matrix validated at least one task."""
        return bool(self.tested_tasks or self.validated_tasks)


def tested_tasks(model_type: str) -> tuple[str, ...]:
    """Tasks of `model_type` that `make test` exports, validates and runs."""
    tasks_for_model_type(model_type)
    tested: list[str] = []
    if model_type in TESTED_MODEL_TYPES:
        tested += [task for pair_type, task in default_matrix_pairs() if pair_type == model_type]
    if model_type in TESTED_DECODERS:
        tested.append("text-generation")
    if model_type in TESTED_SEQ2SEQ:
        tested.append("text2text-generation")
    if model_type in TESTED_SPEECH:
        tested.append("automatic-speech-recognition")
    if model_type in TESTED_VISION2SEQ:
        tested.append("image-to-text")
    if model_type in TESTED_VISION_LANGUAGE:
        tested.append("image-text-to-text")
    return tuple(sorted(tested))


def architectures(*, include_untested: bool = True) -> list[ArchitectureSupport]:
    """Every model type with a head for a supported task.

    Without `include_untested`, only those CI tests or the packaged coverage matrix validated.
    """
    from onnxport.coverage.runner import PASS, packaged_results

    validated: dict[str, list[str]] = {}
    failures: dict[str, list[tuple[str, str]]] = {}
    for pair in packaged_results():
        if pair.status == PASS:
            validated.setdefault(pair.model_type, []).append(pair.task)
        else:
            why = f"{pair.status} {pair.category}: {pair.reason}".strip()
            failures.setdefault(pair.model_type, []).append((pair.task, why))
    known: set[str] = set()
    for task in TASKS:
        known.update(task.model_classes())
    result = []
    for model_type in sorted(known):
        arch = ArchitectureSupport(
            model_type,
            tuple(tasks_for_model_type(model_type)),
            tested_tasks(model_type),
            tuple(sorted(validated.get(model_type, []))),
            tuple(sorted(failures.get(model_type, []))),
        )
        if arch.supported or include_untested:
            result.append(arch)
    return result


def matrix_pairs() -> list[tuple[str, str]]:
    """(model_type, task) pairs of the encoder test matrix (`make test-slow` runs them all)."""
    return [
        (model_type, task)
        for model_type in TESTED_MODEL_TYPES
        for task in tasks_for_model_type(model_type)
        if task in ENCODER_TASKS
    ]


def default_matrix_pairs() -> list[tuple[str, str]]:
    """The pairs of `matrix_pairs` that `make test` runs: one task per architecture.

    The i-th architecture takes task i of `ENCODER_TASKS` (modulo 6), so every task runs on
    one or two architectures and every architecture on one task, at a sixth of the whole
    matrix's time (suite time; `make test-slow` runs every pair).
    """
    pairs = set(matrix_pairs())
    chosen = []
    for index, model_type in enumerate(TESTED_MODEL_TYPES):
        task = ENCODER_TASKS[index % len(ENCODER_TASKS)]
        if (model_type, task) in pairs:
            chosen.append((model_type, task))
    return chosen


def markdown_tables() -> str:
    """The README section listing tasks and tested architectures."""
    from onnxport.runtime.registry import class_name

    lines = ["| task | synonyms | runtime class | what it returns |", "|---|---|---|---|"]
    for task in sorted(TASKS, key=lambda t: t.name):
        synonyms = ", ".join(f"`{s}`" for s in task.synonyms) or "-"
        lines.append(
            f"| `{task.name}` | {synonyms} | `{class_name(task.name)}` | {task.description} |"
        )
    lines += [
        "",
        "Architectures exported, validated and run against PyTorch by `make test` "
        "(the generative tasks also check generate() parity with PyTorch: greedy and beam "
        "search give the same tokens):",
        "",
        "| architecture | tested tasks |",
        "|---|---|",
    ]
    for arch in architectures(include_untested=False):
        lines.append(f"| `{arch.model_type}` | {', '.join(arch.tested_tasks)} |")
    lines += ["", *_coverage_lines()]
    return "\n".join(lines)


def _coverage_lines() -> list[str]:
    from onnxport.coverage.runner import packaged_results, summary

    results = packaged_results()
    if not results:
        return ["No coverage matrix is packaged yet: run `make coverage`."]
    totals: dict[str, Any] = summary(results)
    modalities = ", ".join(
        f"{name} {counts.get('PASS', 0)}" for name, counts in totals["by_modality"].items()
    )
    return [
        "Beyond these, the coverage matrix ([docs/coverage.md](docs/coverage.md), generated by "
        "`make coverage`) exports and validates a tiny random model for every (model type, "
        f"task) pair transformers defines: {totals['pass']} of {totals['pairs']} pairs pass "
        f"({modalities}), covering {totals['model_types_passing']} model types. "
        "`onnxport architectures` lists them; `--all` adds the rest with the reason each "
        "fails. Every export is validated, so one that does not work fails loudly instead of "
        "producing a wrong model.",
    ]
