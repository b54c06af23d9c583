"""The import rules of the package, checked on the source (README: "How it is built").

Every `import` and `from ... import` of an onnxport module is read from the AST, at module level
and inside functions alike, and checked against the layers below. A wrong-way import fails
here rather than in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "onnxport"

# Shared modules at the package root, below every stage.
SHARED = {"errors", "_version", "layout", "logs", "extras", "tasks", "hub", "sessions"}
# What each part may import (besides itself and the standard library / third parties).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "_version": set(),
    "logs": set(),
    "layout": set(),
    "extras": {"errors"},
    "tasks": {"errors"},
    "hub": {"errors"},
    "testing": {"errors", "tasks"},
    "runtime": {"errors", "layout", "logs", "tasks", "hub", "_version", "sessions"},
    "sessions": {"errors"},
    "exporters": SHARED,
    "variants": SHARED | {"exporters", "runtime"},
    "serve": SHARED | {"runtime"},
    "tflite": SHARED | {"exporters"},
    "coverage": SHARED | {"exporters", "runtime", "testing"},
}
# The facade (`onnxport/__init__.py`) and the CLI may import anything.
FREE = {"__init__", "__main__", "cli"}


def _part(module: str) -> str:
    """`onnxport.runtime.base` -> `runtime`; `onnxport` -> `__init__`."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def _module_name(path: Path) -> str:
    relative = path.relative_to(SRC.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported onnxport module, line, inside a function) for every import in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, nested) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                if child.module == "onnxport":
                    # `from onnxport import X`: X is a submodule or a facade attribute.
                    for alias in child.names:
                        is_module = (SRC / alias.name).is_dir() or (
                            SRC / f"{alias.name}.py"
                        ).is_file()
                        found.append(
                            (
                                f"onnxport.{alias.name}" if is_module else "onnxport",
                                child.lineno,
                                nested,
                            )
                        )
                else:
                    found.append((child.module, child.lineno, nested))
            visit(child, inner)

    visit(tree, False)
    return [item for item in found if item[0] == "onnxport" or item[0].startswith("onnxport.")]


MODULES = sorted(SRC.rglob("*.py"))


def _is_type_checking_block(path: Path, line: int) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        ):
            end = node.end_lineno or node.lineno
            if node.lineno <= line <= end:
                return True
    return False


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_layers(path: Path) -> None:
    part = _part(_module_name(path))
    if part in FREE:
        return
    allowed = ALLOWED[part] | {part}
    wrong = []
    for module, line, nested in _imports(path):
        target = _part(module)
        if target == "__init__":
            # The facade only lazily, where `from_pretrained(export=True)` calls `export()`.
            if not (part == "runtime" and nested):
                wrong.append(f"line {line}: {module} (the facade) from {part}")
            continue
        if target not in allowed:
            wrong.append(f"line {line}: {module}")
    assert not wrong, f"{path.relative_to(SRC)} imports across the layers: {wrong}"


def test_no_stage_imports_the_cli() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{line}"
        for path in MODULES
        if _part(_module_name(path)) not in FREE
        for module, line, _ in _imports(path)
        if _part(module) == "cli"
    ]
    assert not offenders


def test_no_import_cycles_between_modules() -> None:
    """No cycle of modules importing each other, lazy imports included."""
    graph: dict[str, set[str]] = {}
    names = {_module_name(p) for p in MODULES}
    for path in MODULES:
        source = _module_name(path)
        if source == "onnxport":
            continue  # the facade points at everything, lazily, and nothing imports it back
        edges = set()
        for module, line, _ in _imports(path):
            if module == "onnxport" or _is_type_checking_block(path, line):
                continue
            # `from onnxport.runtime import X` imports the package `onnxport.runtime`.
            if module in names:
                edges.add(module)
        # A module imports its parent packages first; that is not a cycle of its own making.
        graph[source] = edges - {source}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, ()):
            if _is_parent(nxt, node):
                continue
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    assert not cycles, f"import cycles: {cycles}"


def _is_parent(package: str, module: str) -> bool:
    return module.startswith(package + ".")


def test_the_rules_catch_a_wrong_way_import(tmp_path: Path) -> None:
    """The checker itself: a runtime module importing the exporter is reported."""
    probe = SRC / "runtime" / "_probe_wrong_way.py"
    probe.write_text("from onnxport.exporters.spec import ExportSpec\n", encoding="utf-8")
    try:
        with pytest.raises(AssertionError, match="imports across the layers"):
            test_imports_follow_the_layers(probe)
    finally:
        probe.unlink()


def test_sessions_are_built_only_by_create_session() -> None:
    """`onnxruntime.InferenceSession(...)` is called in sessions.py alone (one error, one place)."""
    calls = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "InferenceSession":
                calls.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert [c for c in calls if not c.startswith("sessions.py:")] == []
