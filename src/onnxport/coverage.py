"""Coverage matrix: every (model_type, task) pair Transformers defines, exported and validated.

Each pair runs in its own Python process (a crash, a hang or a leaked thread in one model's
code cannot take the matrix down; `--timeout` bounds it): a tiny random model is built from the
model type's default config (`onnxport.testing.tiny_config`), exported with the generic path
and validated at two shapes unlike the traced one. The result is PASS, FAIL (the error type as
category, and the first line of the reason) or SKIP (the pair cannot be built offline: the
config or model needs files, extra packages or remote code).

Only the tasks onnxport exports today are enumerated; new tasks join the matrix by joining
`onnxport.tasks.TASKS`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from onnxport.errors import VariantError
from onnxport.tasks import TASKS, get_task

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclass(frozen=True)
class PairResult:
    """One (model_type, task) pair: status, failure category, first line of the reason, time."""

    model_type: str
    task: str
    status: str
    category: str = ""
    reason: str = ""
    seconds: float = 0.0


def enumerate_pairs(
    model_types: Iterable[str] | None = None, tasks: Iterable[str] | None = None
) -> list[tuple[str, str]]:
    """Every (model_type, task) with a head in Transformers' Auto mappings, filtered."""
    chosen_tasks = [get_task(t) for t in tasks] if tasks else list(TASKS)
    wanted = set(model_types) if model_types else None
    pairs = []
    for task in chosen_tasks:
        for model_type in task.model_classes():
            if wanted is None or model_type in wanted:
                pairs.append((model_type, task.name))
    if wanted:
        known = {m for m, _ in pairs}
        unknown = sorted(wanted - known)
        if unknown:
            raise VariantError(
                f"None of the chosen tasks has a head for: {', '.join(unknown)}. "
                "Run `onnxport architectures --all` for each model type's tasks."
            )
    return sorted(set(pairs))


def run_pair(model_type: str, task: str) -> PairResult:
    """Build, export and validate one pair in this process (what each worker runs)."""
    import torch

    from onnxport.errors import OnnxportError
    from onnxport.exporter import export
    from onnxport.testing import tiny_config, tiny_model

    start = time.perf_counter()
    torch.set_num_threads(1)
    try:
        config = tiny_config(model_type)
        model = tiny_model(config, task)
    except Exception as err:  # the pair cannot be built here: not onnxport's failure
        return PairResult(
            model_type, task, SKIP, type(err).__name__, _first_line(err), _since(start)
        )
    with tempfile.TemporaryDirectory(prefix="onnxport-coverage-") as tmp:
        try:
            export(model, Path(tmp) / "out", task=task)
        except OnnxportError as err:
            return PairResult(
                model_type, task, FAIL, type(err).__name__, _first_line(err), _since(start)
            )
        except Exception as err:
            category = f"unexpected {type(err).__name__}"
            return PairResult(model_type, task, FAIL, category, _first_line(err), _since(start))
    return PairResult(model_type, task, PASS, seconds=_since(start))


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 2)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:300]


def _run_isolated(model_type: str, task: str, timeout: float, memory_gb: float = 0) -> PairResult:
    start = time.perf_counter()
    command = [sys.executable, "-m", "onnxport.coverage", model_type, task]
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1"}

    def limit_memory() -> None:  # runs in the worker: a model too big fails alone, not the host
        import resource

        size = int(memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            preexec_fn=limit_memory if memory_gb else None,
        )
    except subprocess.TimeoutExpired:
        return PairResult(model_type, task, FAIL, "timeout", f"over {timeout:.0f} s", _since(start))
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        reason = (done.stderr.strip().splitlines() or [""])[-1][:300]
        if done.returncode < 0:
            reason = f"killed by signal {-done.returncode} (out of memory?) {reason}".strip()
        elif "MemoryError" in done.stderr or "alloc" in reason.lower():
            reason = f"over the {memory_gb:g} GB memory limit: {reason}"
        return PairResult(model_type, task, FAIL, "crash", reason or "no output", _since(start))
    return PairResult(**json.loads(lines[-1]))


def run_matrix(
    pairs: list[tuple[str, str]],
    *,
    jobs: int = 1,
    timeout: float = 600,
    memory_gb: float = 8,
    progress: Callable[[PairResult], None] | None = None,
) -> list[PairResult]:
    """Run every pair, `jobs` at a time, each in its own process under a memory limit."""
    results: list[PairResult] = []

    def run(pair: tuple[str, str]) -> PairResult:
        return _run_isolated(pair[0], pair[1], timeout, memory_gb)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for result in pool.map(run, pairs):
            results.append(result)
            if progress is not None:
                progress(result)
    return results


def summary(results: list[PairResult]) -> dict[str, object]:
    """Totals: pairs by status, model types with at least one PASS, FAIL categories."""
    statuses = Counter(r.status for r in results)
    return {
        "pairs": len(results),
        "pass": statuses[PASS],
        "fail": statuses[FAIL],
        "skip": statuses[SKIP],
        "model_types_passing": len({r.model_type for r in results if r.status == PASS}),
        "fail_categories": dict(Counter(r.category for r in results if r.status == FAIL)),
    }


def to_json(results: list[PairResult]) -> str:
    """The matrix as JSON: the summary and one record per pair."""
    data = {"summary": summary(results), "pairs": [asdict(r) for r in results]}
    return json.dumps(data, indent=2) + "\n"


def to_markdown(results: list[PairResult]) -> str:
    """The matrix as a Markdown page: totals, then one row per pair."""
    totals = summary(results)
    lines = [
        "# onnxport coverage",
        "",
        "Generated by `onnxport coverage`: each pair is a tiny random model built from the model "
        "type's default config, exported and validated at two new shapes.",
        "",
        f"- pairs: {totals['pairs']} (PASS {totals['pass']}, FAIL {totals['fail']}, "
        f"SKIP {totals['skip']})",
        f"- model types with at least one PASS: {totals['model_types_passing']}",
        "",
        "| model type | task | status | category | reason | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        reason = r.reason.replace("|", "\\|")
        lines.append(
            f"| `{r.model_type}` | {r.task} | {r.status} | {r.category} | {reason} | {r.seconds} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # one pair, in a worker process: prints its result as JSON
    print(json.dumps(asdict(run_pair(sys.argv[1], sys.argv[2]))), flush=True)
