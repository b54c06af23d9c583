"""Regenerate the README's generated sections (`make docs`).

They are the supported tasks and architectures, and the architectures whose export
onnxruntime-genai runs.

`--check` exits 1 when the README is stale instead of writing it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from onnxport.coverage.support import markdown_tables
from onnxport.exporters.genai import architectures_markdown

BLOCKS: dict[str, Callable[[], str]] = {
    "support": markdown_tables,
    "genai": architectures_markdown,
}


def fill(text: str, name: str, content: str) -> str:
    """`text` with the block between `<!-- name:start -->` and `<!-- name:end -->` replaced."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{content}\n{end}{tail}"


def main() -> int:
    readme = Path(__file__).parents[1] / "README.md"
    text = readme.read_text(encoding="utf-8")
    updated = text
    for name, generate in BLOCKS.items():
        updated = fill(updated, name, generate())
    if "--check" in sys.argv:
        if updated != text:
            print("README.md is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    readme.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
