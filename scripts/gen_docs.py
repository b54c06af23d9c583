"""Regenerate the README's supported tasks/architectures section (`make docs`).

`--check` exits 1 when the README is stale instead of writing it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from onnxport.coverage.support import markdown_tables

START, END = "<!-- support:start -->", "<!-- support:end -->"


def main() -> int:
    readme = Path(__file__).parents[1] / "README.md"
    text = readme.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    updated = f"{head}{START}\n{markdown_tables()}\n{END}{tail}"
    if "--check" in sys.argv:
        if updated != text:
            print("README.md is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    readme.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
