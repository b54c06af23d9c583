"""Ray Serve and Ray Data: answers equal the in-process pipeline's, bad input stays contained.

One local Ray instance (2 CPUs, loopback) serves this whole module; the tests run in one
xdist group so only one worker starts it. Request loops are bounded (fixed counts, timeouts).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import onnx
import pytest

from onnxport import pipeline
from onnxport.cli.demo import default_model_path
from onnxport.errors import RequestError, ServeError
from onnxport.serve.runner import MAX_INPUTS_PER_REQUEST, PipelineRunner, length_groups, to_json
from test_errors import assert_one_error_line, run_cli

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("ray") is None,
        reason="the serve extra is not installed: pip install 'onnxport[serve]'",
    ),
    pytest.mark.xdist_group("ray"),
]

TEXTS = [
    "I love this film.",
    "Dull.",
    "The plot was fine but the acting let it down badly, scene after scene.",
    "Ok",
    "What a wonderful day to watch a long and winding story unfold on screen!",
]


def approx_equal(got: Any, want: Any, tol: float = 1e-5) -> bool:
    """Same structure and strings; floats within `tol` (batched vs single runs of ORT)."""
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and got.keys() == want.keys()
            and all(approx_equal(got[k], want[k], tol) for k in want)
        )
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(approx_equal(g, w, tol) for g, w in zip(got, want, strict=True))
        )
    if isinstance(want, float):
        return isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=tol, abs_tol=tol)
    return bool(got == want)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def call(url: str, body: bytes | None = None, method: str = "POST") -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=body, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def predict(url: str, inputs: Any) -> tuple[int, Any]:
    return call(f"{url}/predict", json.dumps({"inputs": inputs}).encode())


@pytest.fixture(scope="module")
def text_classifier(exported) -> Path:
    return exported("bert", "text-classification")


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from onnxport import export

    out = tmp_path_factory.mktemp("minilm-serve") / "model"
    export(default_model_path(), out, task="feature-extraction", library="transformers")
    return out


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    import ray

    from onnxport.serve.cluster import connect

    # onnxport's own start-up path (and its settings for a busy machine), with 2 CPUs.
    assert connect(None, ServeError, num_cpus=2, object_store_memory=256 * 1024**2)
    yield
    ray.shutdown()


# --- checks that need no Ray --------------------------------------------------------------


def test_runner_refuses_bad_inputs_in_one_line(text_classifier: Path) -> None:
    runner = PipelineRunner(text_classifier)
    refused = {
        "int": (5, 422, "not int 5"),
        "empty": ("", 422, "not an empty string"),
        "none": (None, 422, "not NoneType"),
        "bad pair": ({"text": "a"}, 422, "text_pair"),
        "too long": ("word " * 5000, 413, "tokens long; this model takes at most"),
    }
    for name, (item, status, fragment) in refused.items():
        with pytest.raises(RequestError) as caught:
            runner.check(item)
        assert caught.value.status == status, name
        assert fragment in str(caught.value), name
        assert "\n" not in str(caught.value)
    with pytest.raises(RequestError) as caught:
        runner.split([])
    assert "empty list" in str(caught.value)
    with pytest.raises(RequestError) as caught:
        runner.split(["a"] * (MAX_INPUTS_PER_REQUEST + 1))
    assert caught.value.status == 413
    # One bad item in a batch fails alone; the others are answered.
    outcomes = runner.run(["good", 7, "fine"])
    assert [o.error is None for o in outcomes] == [True, False, True]
    reference = pipeline("text-classification", text_classifier)
    assert approx_equal(
        to_json([outcomes[0].value, outcomes[2].value]), to_json(reference(["good", "fine"]))
    )


def test_length_groups_bound_padding() -> None:
    lengths = [4, 20, 4, 18, 9, 9, 10, 7, 20, 3]
    groups = length_groups(lengths)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    for group in groups:
        sizes = [lengths[i] for i in group]
        assert len(sizes) * max(sizes) <= 1.25 * sum(sizes)
    assert len(groups) < len(lengths)  # similar lengths do share a batch
    assert length_groups([]) == []


def test_runner_unpads_batched_features(minilm: Path) -> None:
    # The pipeline pads a batch to its longest input; each answer must be its own length.
    runner = PipelineRunner(minilm)
    reference = pipeline("feature-extraction", minilm)
    values = [to_json(outcome.value) for outcome in runner.run(TEXTS)]
    for text, value in zip(TEXTS, values, strict=True):
        assert approx_equal(value, to_json(reference(text)))


def test_fill_mask_needs_the_mask_token(exported) -> None:
    runner = PipelineRunner(exported("bert", "fill-mask"))
    with pytest.raises(RequestError, match=r"needs the mask token \[MASK\]"):
        runner.check("no mask here")
    mask = runner.mask_token
    reference = pipeline("fill-mask", runner.model_dir)
    assert approx_equal(
        to_json(runner.run([f"a {mask} b"])[0].value), to_json(reference(f"a {mask} b"))
    )


@pytest.mark.parametrize(
    ("model_type", "task"), [("gpt2", "text-generation"), ("t5", "text2text-generation")]
)
def test_generation_answers_equal_the_pipeline(model_type: str, task: str, exported) -> None:
    folder = exported(model_type, task)
    runner = PipelineRunner(folder)
    reference = pipeline(task, folder)
    prompts = ["Hello there", "The weather today is", "A"]
    # Greedy: GPT-2's config asks its pipeline to sample, which no two runs would agree on.
    parameters = runner.check_parameters({"max_new_tokens": 6, "do_sample": False})
    outcomes = runner.run(prompts, parameters=parameters)
    for prompt, outcome in zip(prompts, outcomes, strict=True):
        assert outcome.error is None, outcome.error
        assert to_json(outcome.value) == to_json(reference(prompt, **parameters))
    refused = [
        {"max_new_tokens": 0},
        {"max_new_tokens": "5"},
        {"do_sample": 1},
        {"temperature": 2},
        [1],
    ]
    for bad in refused:
        with pytest.raises(RequestError) as caught:
            runner.check_parameters(bad)
        assert caught.value.status == 422
    if task == "text-generation":  # the prompt and the new tokens share the position table
        with pytest.raises(RequestError, match="with 512 new token"):
            runner.check("word " * 10, {"max_new_tokens": 512})


def test_unsupported_task_and_missing_folder_are_one_line(
    exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["serve", str(tmp_path / "nothing")], capsys)
    assert code == 2
    assert_one_error_line(err, "is not a folder")
    code, _, err = run_cli(["serve", str(exported("bert", "multiple-choice"))], capsys)
    assert code == 2
    assert_one_error_line(err, "multiple-choice model; serve and batch run")
    folder = exported("bert", "text-classification")
    code, _, err = run_cli(["serve", str(folder), "--file", "model_O9.onnx"], capsys)
    assert code == 2
    assert_one_error_line(err, "No ONNX file 'model_O9.onnx'")
    # A graph ONNX Runtime refuses fails before Ray starts, not as a replica's traceback.
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    graph = onnx.load(str(broken / "model.onnx"))
    graph.graph.node[0].op_type = "NoSuchOp"
    onnx.save(graph, str(broken / "model.onnx"))
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "a"}\n')
    for command in (
        ["serve", str(broken)],
        ["batch", str(broken), "--input", str(rows), "--column", "text", "--output",
         str(tmp_path / "out.parquet")],
    ):  # fmt: skip
        code, _, err = run_cli(command, capsys)
        assert code == 2
        assert_one_error_line(err, "ONNX Runtime cannot load")
    assert not (tmp_path / "out.parquet").exists()


# --- Ray Serve ----------------------------------------------------------------------------


class TestServe:
    @pytest.fixture(scope="class")
    def services(
        self, ray_instance: None, text_classifier: Path, minilm: Path, exported
    ) -> Iterator[dict[str, str]]:
        generator_dir = exported("gpt2", "text-generation")
        from ray import serve as ray_serve

        from onnxport import serve

        port = free_port()
        service = serve.start(
            text_classifier, port=port, route_prefix="/tc", cpus_per_replica=0.5, threads=1
        )
        assert service.task == "text-classification"
        # The Python API: the application object, run by Ray Serve itself.
        app = serve.deployment(minilm, cpus_per_replica=0.5, threads=1, max_batch_size=8)
        ray_serve.run(app, name="minilm", route_prefix="/minilm")
        generator = serve.deployment(generator_dir, cpus_per_replica=0.5, threads=1)
        ray_serve.run(generator, name="gpt2", route_prefix="/gpt2")
        root = f"http://127.0.0.1:{port}"
        yield {"tc": service.url, "minilm": f"{root}/minilm", "gpt2": f"{root}/gpt2"}
        ray_serve.shutdown()

    @pytest.mark.parametrize("name", ["tc", "minilm"])
    def test_concurrent_answers_equal_the_pipeline(
        self, name: str, services: dict[str, str], text_classifier: Path, minilm: Path
    ) -> None:
        folder = text_classifier if name == "tc" else minilm
        task = "text-classification" if name == "tc" else "feature-extraction"
        reference = pipeline(task, folder)
        # 50 requests at once: single strings and short lists, so batches mix both.
        requests: list[Any] = [
            TEXTS[i % len(TEXTS)] if i % 3 else TEXTS[: 1 + i % 4] for i in range(50)
        ]
        with ThreadPoolExecutor(max_workers=50) as pool:
            answers = list(pool.map(lambda inputs: predict(services[name], inputs), requests))
        for inputs, (status, body) in zip(requests, answers, strict=True):
            assert status == 200, body
            assert approx_equal(body, to_json(reference(inputs))), inputs

    def test_bad_requests_get_4xx_and_the_service_keeps_answering(
        self, services: dict[str, str], text_classifier: Path
    ) -> None:
        url = services["tc"]
        bad = [
            (call(f"{url}/predict", b"{not json"), 400, "not JSON"),
            (call(f"{url}/predict", b'{"input": "x"}'), 422, "'inputs'"),
            (call(f"{url}/predict", b'["x"]'), 422, "'inputs'"),
            (call(f"{url}/predict", b'{"inputs": "x", "top_k": 3}'), 422, "Unknown field"),
            (
                call(f"{url}/predict", b'{"inputs": "x", "parameters": {"max_new_tokens": 2}}'),
                422,
                "text-classification takes: none",
            ),
            (predict(url, 42), 422, "not int 42"),
            (predict(url, ["fine", {"a": 1}]), 422, "inputs[1]: "),
            (predict(url, []), 400, "empty list"),
            (predict(url, "word " * 5000), 413, "tokens long"),
            (predict(url, ["x"] * (MAX_INPUTS_PER_REQUEST + 1)), 413, "at most"),
            (call(f"{url}/predict", method="GET"), 405, "POST /predict"),
            (call(f"{url}/nowhere", method="GET"), 404, "No route"),
        ]
        for (status, body), want_status, fragment in bad:
            assert status == want_status, body
            assert set(body) == {"error"}
            assert fragment in body["error"], body
            assert "\n" not in body["error"]
            assert "Traceback" not in body["error"]
        reference = pipeline("text-classification", text_classifier)
        with ThreadPoolExecutor(max_workers=10) as pool:
            answers = list(pool.map(lambda text: predict(url, text), TEXTS * 2))
        for text, (status, body) in zip(TEXTS * 2, answers, strict=True):
            assert status == 200
            assert approx_equal(body, to_json(reference(text)))
        assert call(f"{url}/healthz", method="GET") == (
            200,
            {"status": "ok", "task": "text-classification", "model": "model"},
        )

    def test_generation_with_parameters(self, services: dict[str, str], exported) -> None:
        reference = pipeline("text-generation", exported("gpt2", "text-generation"))
        settings = {"max_new_tokens": 5, "do_sample": False}
        prompts = ["Hello there", "Once upon a time", "A", "The weather"]
        body = lambda p: json.dumps({"inputs": p, "parameters": settings}).encode()  # noqa: E731
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(
                pool.map(lambda p: call(f"{services['gpt2']}/predict", body(p)), prompts * 2)
            )
        for prompt, (status, answer) in zip(prompts * 2, answers, strict=True):
            assert status == 200, answer
            assert answer == to_json(reference(prompt, **settings))
        bad = json.dumps({"inputs": "x", "parameters": {"max_new_tokens": 9999}}).encode()
        status, answer = call(f"{services['gpt2']}/predict", bad)
        assert status == 422
        assert "'max_new_tokens' must be a whole number from 1 to 512" in answer["error"]

    def test_openapi_describes_the_routes(self, services: dict[str, str]) -> None:
        status, spec = call(f"{services['minilm']}/openapi.json", method="GET")
        assert status == 200
        assert set(spec["paths"]) == {"/predict", "/healthz", "/openapi.json"}
        body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"]["required"] == ["inputs"]
        assert "feature-extraction" in spec["info"]["title"]


@pytest.mark.slow  # 70 s of its own Ray start-up; TestServe serves the same app in-process
def test_serve_command_starts_answers_and_stops(text_classifier: Path, tmp_path: Path) -> None:
    """The real command in its own process (its own local Ray, HAProxy in front), then Ctrl-C."""
    port = free_port()
    env = {**os.environ, "RAY_ADDRESS": ""}
    command = ["serve", str(text_classifier), "--port", str(port), "--ingress", "haproxy"]
    process = subprocess.Popen(
        [sys.executable, "-m", "onnxport", *command],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            if any("Press Ctrl-C" in line for line in lines):
                break
            time.sleep(0.5)
        assert process.poll() is None, "".join(lines)
        status, body = predict(url, "I love this film.")
        assert status == 200
        reference = pipeline("text-classification", text_classifier)
        assert approx_equal(body, to_json(reference("I love this film.")))
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
        reader.join(timeout=10)
    output = "".join(lines)
    assert process.returncode == 0, output
    assert f"POST {url}/predict" in output
    assert "Traceback" not in output


def test_busy_port_is_one_line(text_classifier: Path) -> None:
    from onnxport import serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=f"Cannot listen on 127.0.0.1:{port}"):
            serve.start(text_classifier, port=port)


# --- Ray Data -----------------------------------------------------------------------------


def _rows(count: int) -> list[dict[str, Any]]:
    words = ["good", "bad", "film", "plot", "slow", "great", "acting", "music", "long"]
    return [
        {"id": i, "text": " ".join(words[(i * 7 + k) % len(words)] for k in range(1 + i % 11))}
        for i in range(count)
    ]


@pytest.mark.parametrize(
    "suffix",
    [".parquet", *(pytest.param(s, marks=pytest.mark.slow) for s in (".jsonl", ".csv"))],
)
def test_batch_outputs_equal_the_pipeline_in_order(
    suffix: str, ray_instance: None, text_classifier: Path, tmp_path: Path
) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    from onnxport.serve import batch

    rows = _rows(1000 if suffix != ".csv" else 100)
    bad_rows = {}
    if suffix == ".jsonl":  # a missing value and an over-long one: reported, never dropped
        bad_rows = {17: None, 600: "word " * 5000}
        for index, value in bad_rows.items():
            rows[index]["text"] = value
    source = tmp_path / f"rows{suffix}"
    frame = pd.DataFrame(rows)
    if suffix == ".jsonl":
        frame.to_json(source, orient="records", lines=True)
    elif suffix == ".parquet":
        frame.to_parquet(source)
    else:
        frame.to_csv(source, index=False)
    output = tmp_path / "out.parquet"
    result = batch.run(
        text_classifier, source, output, column="text", batch_size=64, actors=1, progress=False
    )
    assert result.rows == len(rows)
    assert result.failed_rows == len(bad_rows)
    assert [index for index, _ in result.failures] == sorted(bad_rows)
    table = pq.read_table(output).to_pylist()
    assert [row["id"] for row in table] == list(range(len(rows)))  # order kept
    good = [row for row in rows if row["id"] not in bad_rows]
    reference = to_json(pipeline("text-classification", text_classifier)([r["text"] for r in good]))
    answers = {row["id"]: row for row in table}
    for row, want in zip(good, reference, strict=True):
        written = answers[row["id"]]
        assert written["text"] == row["text"]
        assert written["error"] is None
        assert approx_equal(json.loads(written["output"]), want)
    for index in bad_rows:
        assert answers[index]["output"] is None
        assert answers[index]["error"]


def test_batch_mistakes_are_one_line_and_write_nothing(
    ray_instance: None, text_classifier: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in _rows(5)))
    output = tmp_path / "out.parquet"
    base = ["batch", str(text_classifier), "--input", str(source), "--output", str(output)]
    cases = [
        (["--column", "body"], "has no column 'body'; its columns: id, text"),
        (["--column", "text", "--batch-size", "0"], "--batch-size must be at least 1"),
    ]
    for extra, fragment in cases:
        code, _, err = run_cli([*base, *extra], capsys)
        assert code == 2
        assert_one_error_line(err, fragment)
    code, _, err = run_cli(
        ["batch", str(text_classifier), "--input", str(tmp_path / "rows.txt"), "--column", "t",
         "--output", str(output)], capsys,
    )  # fmt: skip
    assert code == 2
    assert_one_error_line(err, "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]
    output.write_text("keep me")
    code, _, err = run_cli([*base, "--column", "text"], capsys)
    assert code == 2
    assert_one_error_line(err, "exists; pass --force")
    assert output.read_text() == "keep me"
    code, out, err = run_cli([*base, "--column", "text", "--force", "--no-progress"], capsys)
    assert code == 0, err
    assert "Wrote 5 rows" in out
