"""The Ray Serve replica behind `onnxport serve`: one ONNX Runtime session, batched calls.

This module imports Ray at the top, so only `onnxport.serve.app.deployment()` imports it (after
checking that the `serve` extra is installed). Routing is a few explicit branches on a
Starlette request rather than a FastAPI app: the API has three routes, and every error must be
one line of JSON, not FastAPI's validation documents.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from onnxport.errors import RequestError
from onnxport.serve.runner import (
    INPUT_KINDS,
    INPUT_SCHEMAS,
    MAX_INPUTS_PER_REQUEST,
    PARAMETERS,
    Outcome,
    PipelineRunner,
    dumps,
)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class ModelServer:
    """Answers `POST /predict`, `GET /healthz` and `GET /openapi.json` for one exported folder."""

    def __init__(
        self,
        model_dir: str,
        max_batch_size: int,
        batch_wait_ms: float,
        threads: int | None = None,
        file_name: str | None = None,
    ) -> None:
        from onnxport.logs import quiet_worker

        quiet_worker()
        self.runner = PipelineRunner(model_dir, threads=threads, file_name=file_name)
        self.name = Path(model_dir).name
        batcher: Any = self._run_batch  # serve.batch adds these setters; its stubs omit them
        batcher.set_max_batch_size(max_batch_size)
        batcher.set_batch_wait_timeout_s(batch_wait_ms / 1000)

    async def __call__(self, request: Request) -> Response:
        """Route one HTTP request; every failure is a 4xx with `{"error": "<one line>"}`."""
        root = request.scope.get("root_path", "")
        path = request.url.path[len(root) :] if request.url.path.startswith(root) else "/"
        path = "/" + path.strip("/")
        if path == "/healthz" and request.method == "GET":
            return JSONResponse({"status": "ok", "task": self.runner.task, "model": self.name})
        if path == "/openapi.json" and request.method == "GET":
            return JSONResponse(openapi(self.runner.task, self.name))
        if path == "/predict":
            if request.method != "POST":
                return _error(405, 'Use POST /predict with a JSON body {"inputs": ...}.')
            return await self._predict(await request.body())
        return _error(
            404, f"No route {request.method} {path}: use POST /predict, GET /healthz or "
            "GET /openapi.json."
        )  # fmt: skip

    async def _predict(self, body: bytes) -> Response:
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            return _error(400, f'The body is not JSON ({err}); send {{"inputs": ...}}.')
        if not isinstance(payload, dict) or "inputs" not in payload:
            return _error(422, "The body must be a JSON object with 'inputs': {\"inputs\": ...}.")
        extra = sorted(set(payload) - {"inputs", "parameters"})
        if extra:
            return _error(422, f"Unknown field(s) {', '.join(extra)}; send 'inputs'.")
        inputs = payload["inputs"]
        try:
            parameters = self.runner.check_parameters(payload.get("parameters"))
            items, was_list = self.runner.split(inputs)
            checked = []
            for index, item in enumerate(items):
                try:
                    checked.append(self.runner.check(item, parameters))
                except RequestError as err:
                    where = f"inputs[{index}]: " if was_list else ""
                    raise RequestError(f"{where}{err}", status=err.status) from err
        except RequestError as err:
            return _error(err.status, str(err))
        key = tuple(sorted(parameters.items()))
        outcomes = await asyncio.gather(*(self._run_batch((item, key)) for item in checked))
        for index, outcome in enumerate(outcomes):
            if outcome.error is not None:
                where = f"inputs[{index}]: " if was_list else ""
                return _error(outcome.error.status, f"{where}{outcome.error}")
        answer = self.runner.answer(inputs, [o.value for o in outcomes])
        return Response(dumps(answer), media_type="application/json")

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _run_batch(self, requests: list[tuple[Any, tuple[Any, ...]]]) -> list[Outcome]:
        # The model runs in a worker thread so this replica keeps accepting (and checking)
        # requests meanwhile; they form the next batch.
        return await asyncio.to_thread(self._run_grouped, requests)

    def _run_grouped(self, requests: list[tuple[Any, tuple[Any, ...]]]) -> list[Outcome]:
        """Run a batch, one pipeline call per distinct set of parameters."""
        outcomes: list[Outcome | None] = [None] * len(requests)
        groups: dict[tuple[Any, ...], list[int]] = {}
        for index, (_, key) in enumerate(requests):
            groups.setdefault(key, []).append(index)
        for key, indices in groups.items():
            items = [requests[i][0] for i in indices]
            done = self.runner.run(items, checked=True, parameters=dict(key))
            for index, outcome in zip(indices, done, strict=True):
                outcomes[index] = outcome
        return [o or Outcome(error=RequestError("not run")) for o in outcomes]


def openapi(task: str, name: str) -> dict[str, Any]:
    """A short OpenAPI 3.1 description of the three routes, with this task's input schema."""
    item = INPUT_SCHEMAS[INPUT_KINDS[task]]
    allowed = PARAMETERS.get(task, {})
    parameters = {
        "parameters": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                name: {"type": "boolean"}
                if bounds is None
                else {"type": "integer", "minimum": bounds[0], "maximum": bounds[1]}
                for name, bounds in allowed.items()
            },
        }
    } if allowed else {}  # fmt: skip
    inputs = {"oneOf": [item, {"type": "array", "items": item, "maxItems": MAX_INPUTS_PER_REQUEST}]}
    error = {
        "description": "One-line reason",
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": f"onnxport: {name} ({task})", "version": "1"},
        "paths": {
            "/predict": {
                "post": {
                    "summary": f"Run the {task} pipeline; answers what the pipeline returns.",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["inputs"],
                                    "properties": {"inputs": inputs, **parameters},
                                    "additionalProperties": False,
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {"description": "The pipeline's output as JSON"},
                        "400": {**error, "description": "The body is not JSON"},
                        "413": {**error, "description": "An input or the list is too long"},
                        "422": {**error, "description": "The inputs are not what the task takes"},
                    },
                }
            },
            "/healthz": {
                "get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}
            },
            "/openapi.json": {
                "get": {"summary": "This description", "responses": {"200": {"description": "ok"}}}
            },
        },
    }
