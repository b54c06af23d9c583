"""Options and positionals parse in any order, in every command.

Plain argparse stops filling positionals at the first option, so `onnxport quantize out/
--mode int8-dynamic out-q/` used to fail with "unrecognized arguments". Each command here is
parsed with its options before, between and after its positionals; all orders must give the
same namespace.
"""

from __future__ import annotations

import argparse

import pytest

from onnxport.cli.main import _legacy_argv, build_parser, main

# command words, positionals, options (each option with its value)
CASES: dict[str, tuple[list[str], list[str], list[list[str]]]] = {
    "export onnx": (
        ["export", "onnx"],
        ["out/"],
        [["--model", "./bert"], ["--task", "fill-mask"], ["--opset", "17"], ["--force"]],
    ),
    "export tflite": (
        ["export", "tflite"],
        ["out/"],
        [["--model", "./bert"], ["--sequence-length", "64"], ["--quantize", "int8"]],
    ),
    "optimize": (["optimize"], ["out/", "out-o2/"], [["-O", "2"], ["--min-cosine", "0.99"]]),
    "quantize": (
        ["quantize"],
        ["out/", "out-q/"],
        [["--mode", "int8-dynamic"], ["--min-cosine", "0.995"], ["--force"]],
    ),
    "benchmark": (
        ["benchmark"],
        ["out/"],
        [["--shapes", "1x8"], ["--blocks", "3"], ["--output", "report/"]],
    ),
    "inspect": (["inspect"], ["out/"], []),
    "serve": (["serve"], ["out/"], [["--replicas", "2"], ["--port", "8001"]]),
    "batch": (
        ["batch"],
        ["out/"],
        [["--input", "rows.jsonl"], ["--column", "text"], ["--output", "o.parquet"]],
    ),
    "demo": (["demo"], ["demo-out/"], []),
    "architectures": (["architectures"], [], [["--all"], ["--markdown"]]),
    "coverage": (["coverage"], [], [["--model-types", "bert"], ["--jobs", "2"]]),
}


def _orders(positionals: list[str], options: list[list[str]]) -> dict[str, list[str]]:
    flat = [token for option in options for token in option]
    orders = {"options after": positionals + flat, "options before": flat + positionals}
    if len(positionals) >= 2:
        half = options[: len(options) // 2 or 1]
        rest = options[len(options) // 2 or 1 :]
        orders["options between"] = (
            positionals[:1]
            + [t for o in half for t in o]
            + positionals[1:]
            + [t for o in rest for t in o]
        )
    elif positionals:
        orders["options around"] = (
            [t for o in options[:1] for t in o] + positionals + [t for o in options[1:] for t in o]
        )
    return orders


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(_legacy_argv(argv))


@pytest.mark.parametrize("command", sorted(CASES))
def test_options_and_positionals_in_any_order(command: str) -> None:
    words, positionals, options = CASES[command]
    parsed = {
        name: vars(_parse(words + argv)) for name, argv in _orders(positionals, options).items()
    }
    first = next(iter(parsed.values()))
    for name, namespace in parsed.items():
        assert namespace == first, f"{command}: {name} parses differently"
    if len(positionals) == 2:
        # The optional second positional is really taken (the reported bug).
        assert str(first["output"]).rstrip("/") == positionals[1].rstrip("/")


def test_the_reported_quantize_order_parses() -> None:
    namespace = _parse(["quantize", "out/", "--mode", "int8-dynamic", "out-q/"])
    assert str(namespace.model_dir) == "out"
    assert str(namespace.output) == "out-q"
    assert namespace.mode == "int8-dynamic"


def test_a_third_positional_is_still_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["quantize", "out/", "--mode", "fp16", "out-q/", "extra/"])
    assert info.value.code == 2
    assert "unrecognized arguments: extra/" in capsys.readouterr().err


def test_legacy_form_takes_options_after_the_output() -> None:
    namespace = _parse(["--model=./bert", "out/", "--task", "fill-mask"])
    assert namespace.command == "export"
    assert str(namespace.output) == "out"
    assert namespace.task == "fill-mask"
