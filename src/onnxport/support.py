"""Which architectures onnxport's own test suite proves, and what else the generic path tries.

`TESTED_MODEL_TYPES` is the list the test matrix runs: every task each of these has a head
for is exported, validated and run against PyTorch in `make test`. `onnxport architectures`
and the README's table are generated from it, so they cannot drift from what is tested.
"""

from __future__ import annotations

from dataclasses import dataclass

from onnxport.tasks import TASKS, tasks_for_model_type

TESTED_MODEL_TYPES: tuple[str, ...] = (
    "albert",
    "bert",
    "camembert",
    "deberta-v2",
    "distilbert",
    "electra",
    "modernbert",
    "mpnet",
    "roberta",
    "xlm-roberta",
)


@dataclass(frozen=True)
class ArchitectureSupport:
    """One model type: the supported tasks it has heads for, and whether CI tests them."""

    model_type: str
    tasks: tuple[str, ...]
    tested: bool


def architectures(*, include_untested: bool = True) -> list[ArchitectureSupport]:
    """Every model type with a head for at least one supported task, tested ones flagged."""
    known: set[str] = set()
    for task in TASKS:
        known.update(task.model_classes())
    result = []
    for model_type in sorted(known):
        tested = model_type in TESTED_MODEL_TYPES
        if tested or include_untested:
            result.append(
                ArchitectureSupport(
                    model_type,
                    tuple(tasks_for_model_type(model_type)),
                    tested,
                )
            )
    return result


def matrix_pairs() -> list[tuple[str, str]]:
    """(model_type, task) pairs the test matrix exports and validates."""
    return [
        (model_type, task)
        for model_type in TESTED_MODEL_TYPES
        for task in tasks_for_model_type(model_type)
    ]


def markdown_tables() -> str:
    """The README section listing tasks and tested architectures."""
    from onnxport.runtime import ORT_MODEL_CLASSES

    lines = ["| task | synonyms | runtime class | what it returns |", "|---|---|---|---|"]
    for task in sorted(TASKS, key=lambda t: t.name):
        synonyms = ", ".join(f"`{s}`" for s in task.synonyms) or "-"
        lines.append(
            f"| `{task.name}` | {synonyms} | `{ORT_MODEL_CLASSES[task.name].__name__}` "
            f"| {task.description} |"
        )
    lines += [
        "",
        "Architectures exported, validated and run against PyTorch by `make test`, "
        "for every task they have a head for:",
        "",
        "| architecture | tasks |",
        "|---|---|",
    ]
    for arch in architectures(include_untested=False):
        lines.append(f"| `{arch.model_type}` | {', '.join(arch.tasks)} |")
    others = [a.model_type for a in architectures() if not a.tested]
    lines += [
        "",
        f"The generic path also tries the {len(others)} other model types that "
        "transformers has a head for (`onnxport architectures --all`); each export is "
        "validated, so one that does not work fails loudly instead of producing a wrong "
        "model.",
    ]
    return "\n".join(lines)
