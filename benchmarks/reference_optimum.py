"""Run inside the reference tool's own environment: optimum-onnx's fp32, O2 and int8 MiniLM.

Called by benchmarks/minilm.py with the interpreter of the virtual environment it builds
(optimum-onnx pins Transformers < 4.58, which onnxport's environment cannot hold). Writes
reference_fp32.onnx, reference_O2.onnx and reference_int8.onnx into OUTPUT_DIR, each the
tool's own documented way, and prints one line per file.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path


def main(checkpoint: str, output: str) -> None:
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        export_dir = Path(tmp) / "fp32"
        main_export(checkpoint, export_dir, task="feature-extraction")
        shutil.copy2(export_dir / "model.onnx", out / "reference_fp32.onnx")

        optimized = Path(tmp) / "o2"
        optimizer = ORTOptimizer.from_pretrained(export_dir)
        optimizer.optimize(AutoOptimizationConfig.O2(), save_dir=optimized)
        shutil.copy2(optimized / "model_optimized.onnx", out / "reference_O2.onnx")

        quantized = Path(tmp) / "int8"
        quantizer = ORTQuantizer.from_pretrained(export_dir)
        config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True)
        quantizer.quantize(save_dir=quantized, quantization_config=config)
        shutil.copy2(quantized / "model_quantized.onnx", out / "reference_int8.onnx")
    for name in ("reference_fp32.onnx", "reference_O2.onnx", "reference_int8.onnx"):
        print(out / name)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
