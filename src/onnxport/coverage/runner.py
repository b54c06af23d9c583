"""Coverage matrix: every (model_type, task) pair Transformers defines, exported and validated.

Pairs run in worker processes, a few pairs per worker (imports are paid once per chunk): a
crash, a hang or a memory blow-up in one model's code fails that pair alone and the rest of
its chunk moves to a fresh worker (`--timeout` bounds each pair). A tiny random model is built
from the model type's default config (`onnxport.testing.tiny_model_for`), exported with the
generic path and validated at two shapes unlike the traced one. The result is PASS, FAIL (the
error type as category, and the first line of the reason) or SKIP (the pair cannot be built
offline: the config or model needs files, extra packages or remote code).

Only the tasks onnxport exports today are enumerated; new tasks join the matrix by joining
`onnxport.tasks.TASKS`.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from onnxport.errors import VariantError
from onnxport.tasks import TASKS, get_task

logger = logging.getLogger(__name__)

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
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

        misspelt = sorted(wanted - set(CONFIG_MAPPING_NAMES))
        if misspelt:
            raise VariantError(
                f"Unknown model type(s): {', '.join(misspelt)}. Run `onnxport architectures "
                "--all` for the model types Transformers defines."
            )
        headless = sorted(wanted - {m for m, _ in pairs})
        if headless and not pairs:
            raise VariantError(
                f"None of the chosen tasks has a head for: {', '.join(headless)}. "
                "Run `onnxport architectures --all` for each model type's tasks."
            )
        if headless:  # a long list need not be filtered by hand first
            logger.warning(
                "Skipping %s: none of the chosen tasks has a head for them.", ", ".join(headless)
            )
    return sorted(set(pairs))


def run_pair(model_type: str, task: str) -> PairResult:
    """Build, export and validate one pair in this process (what each worker runs)."""
    import torch

    from onnxport.errors import OnnxportError
    from onnxport.exporters.api import export
    from onnxport.testing import tiny_model_for

    start = time.perf_counter()
    torch.set_num_threads(1)
    try:
        model = tiny_model_for(model_type, task)
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


_MARK = "@@onnxport-pair "  # prefixes each result line a worker prints (libraries print too)
# How running out of address space shows in a worker's stderr (Python, C++, the loader).
_OUT_OF_MEMORY = ("MemoryError", "bad_alloc", "Cannot allocate memory", "failed to map segment")


def _run_chunk(
    pairs: list[tuple[str, str]], timeout: float, memory_gb: float, peer: bool = False
) -> list[PairResult]:
    """Run `pairs` one after another in one worker process; stop at the first crash.

    Returns a result per pair finished, plus one FAIL for a pair that crashed the worker or
    ran past `timeout`; the caller re-queues the pairs after it in a fresh worker. `peer`
    exports with Transformers' exporter instead (`onnxport.coverage.peer`).
    """
    entry = "onnxport.coverage.peer" if peer else "onnxport.coverage.runner"
    command = [sys.executable, "-m", entry, *[f"{m}::{t}" for m, t in pairs]]
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1"}

    def limit_memory() -> None:  # runs in the worker: a model too big fails alone, not the host
        import resource

        size = int(memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    results: list[PairResult] = []
    with tempfile.TemporaryFile("w+") as stderr:
        worker = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
            preexec_fn=limit_memory if memory_gb else None,
        )  # fmt: skip
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert worker.stdout is not None
            for line in worker.stdout:
                if line.startswith(_MARK):
                    lines.put(line[len(_MARK) :])
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        start = time.perf_counter()
        for model_type, task in pairs:
            # The first pair also pays for the worker's imports.
            limit = timeout + (60 if not results else 0)
            try:
                line = lines.get(timeout=limit)
            except queue.Empty:
                worker.kill()
                worker.wait()
                reason = f"over {timeout:.0f} s"
                results.append(PairResult(model_type, task, FAIL, "timeout", reason, _since(start)))
                break
            if line is None:
                worker.wait()
                stderr.seek(0)
                text = stderr.read()
                tail = (text.strip().splitlines() or [""])[-1][:300]
                if worker.returncode < 0:
                    reason = f"killed by signal {-worker.returncode} (out of memory?) {tail}"
                elif memory_gb and any(sign in text for sign in _OUT_OF_MEMORY):
                    reason = f"over the {memory_gb:g} GB memory limit: {tail}"
                else:
                    reason = tail or "no output"
                results.append(
                    PairResult(model_type, task, FAIL, "crash", reason.strip(), _since(start))
                )
                break
            results.append(PairResult(**json.loads(line)))
            start = time.perf_counter()
        if worker.poll() is None:
            worker.wait(timeout=60)
    return results


def run_matrix(
    pairs: list[tuple[str, str]],
    *,
    jobs: int = 1,
    timeout: float = 600,
    memory_gb: float = 8,
    chunk: int = 8,
    progress: Callable[[PairResult], None] | None = None,
    peer: bool = False,
) -> list[PairResult]:
    """Run every pair, `jobs` workers at a time, each worker taking up to `chunk` pairs.

    A worker pays a few seconds of imports once per chunk instead of once per pair; a pair
    that crashes or hangs its worker fails alone, and the rest of its chunk moves on to a
    fresh worker. `peer` runs them through Transformers' exporter instead of onnxport's.
    """
    pending = collections.deque(pairs)
    results: list[PairResult] = []
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if not pending:
                    return
                batch = [pending.popleft() for _ in range(min(chunk, len(pending)))]
            done = _run_chunk(batch, timeout, memory_gb, peer)
            with lock:
                pending.extendleft(reversed(batch[len(done) :]))
                results.extend(done)
                if progress is not None:
                    for result in done:
                        progress(result)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for future in [pool.submit(work) for _ in range(max(1, jobs))]:
            future.result()
    return sorted(results, key=lambda r: (r.model_type, r.task))


_TASK_MODALITY = {
    "image-classification": "vision", "object-detection": "vision",
    "semantic-segmentation": "vision", "depth-estimation": "vision",
    "keypoint-detection": "vision", "pose-estimation": "vision", "masked-im": "vision",
    "image-to-image": "vision", "retrieval": "multimodal", "text-to-audio": "audio",
    "image-feature-extraction": "vision", "audio-classification": "audio",
    "audio-frame-classification": "audio", "audio-xvector": "audio", "ctc": "audio",
    "automatic-speech-recognition": "audio", "zero-shot-image-classification": "multimodal",
    "zero-shot-object-detection": "multimodal",
}  # fmt: skip
_INPUT_MODALITY = {
    "pixel_values": "vision", "input_values": "audio", "input_features": "audio",
    "input_ids": "text",
}  # fmt: skip


def pair_modality(model_type: str, task: str) -> str:
    """text, vision, audio, multimodal or other: the task's, or the bare model's main input."""
    if task in _TASK_MODALITY:
        return _TASK_MODALITY[task]
    if task != "feature-extraction":
        return "text"
    import transformers

    name = get_task(task).model_classes().get(model_type, "")
    try:
        main = getattr(getattr(transformers, name, None), "main_input_name", None)
    except Exception:  # the class needs a package not installed here (torchaudio, ...)
        return "other"
    return _INPUT_MODALITY.get(main, "other") if isinstance(main, str) else "other"


def summary(results: list[PairResult]) -> dict[str, object]:
    """Totals: pairs by status, passing model types and pairs by modality, FAIL categories."""
    statuses = Counter(r.status for r in results)
    by_modality: dict[str, dict[str, int]] = {}
    for r in results:
        counts = by_modality.setdefault(pair_modality(r.model_type, r.task), Counter())
        counts[r.status] += 1
    passing = {r.model_type for r in results if r.status == PASS}
    return {
        "pairs": len(results),
        "pass": statuses[PASS],
        "fail": statuses[FAIL],
        "skip": statuses[SKIP],
        "model_types": len({r.model_type for r in results}),
        "model_types_passing": len(passing),
        "by_modality": {k: dict(v) for k, v in sorted(by_modality.items())},
        "fail_categories": dict(Counter(r.category for r in results if r.status == FAIL)),
        "hours": round(sum(r.seconds for r in results) / 3600, 2),
    }


def to_json(results: list[PairResult]) -> str:
    """The matrix as JSON: the summary, then one record per pair on its own line."""
    head = json.dumps({"summary": summary(results)}, indent=2)[:-2]
    rows = ",\n".join("    " + json.dumps(asdict(r)) for r in results)
    return f'{head},\n  "pairs": [\n{rows}\n  ]\n}}\n'


def load(path: Path) -> list[PairResult]:
    """Pairs from a JSON file written by `to_json`."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return [PairResult(**row) for row in data["pairs"]]


def packaged_results() -> list[PairResult]:
    """The matrix shipped with onnxport (written by `make coverage`); empty if none."""
    path = Path(__file__).parents[1] / "data" / "coverage.json"
    return load(path) if path.is_file() else []


def to_markdown(results: list[PairResult]) -> str:
    """The matrix as a Markdown page: totals, by modality, FAIL categories, then each pair."""
    totals: dict[str, Any] = summary(results)
    lines = [
        "# onnxport coverage",
        "",
        "Generated by `onnxport coverage` (`make coverage`; the same data ships as "
        "`src/onnxport/data/coverage.json` and `onnxport architectures` reads it). Each pair is "
        "a tiny random model built from the model type's default config (sub-configs shrunk "
        "too), exported with the generic path and validated against PyTorch at two shapes "
        "unlike the traced one. SKIP: the tiny model cannot be built offline (extra packages, "
        "remote code, a config that needs files).",
        "",
        f"- pairs: {totals['pairs']} (PASS {totals['pass']}, FAIL {totals['fail']}, "
        f"SKIP {totals['skip']})",
        f"- model types: {totals['model_types']}, with at least one PASS: "
        f"{totals['model_types_passing']}",
        f"- worker time: {totals['hours']} h",
        "",
        "| modality | PASS | FAIL | SKIP |",
        "|---|---|---|---|",
    ]
    for name, counts in totals["by_modality"].items():
        lines.append(
            f"| {name} | {counts.get(PASS, 0)} | {counts.get(FAIL, 0)} | {counts.get(SKIP, 0)} |"
        )
    lines += ["", "| FAIL category | pairs |", "|---|---|"]
    categories = sorted(totals["fail_categories"].items(), key=lambda kv: (-kv[1], kv[0]))
    lines += [f"| {name} | {count} |" for name, count in categories]
    lines += [
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


if __name__ == "__main__":  # a worker: runs each MODEL_TYPE::TASK given, one result per line
    for argument in sys.argv[1:]:
        name, task_name = argument.split("::", 1)
        print(_MARK + json.dumps(asdict(run_pair(name, task_name))), flush=True)
