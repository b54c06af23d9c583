"""Faster copies of an exported folder: optimize, quantize, the accuracy guard, benchmark.

Needs the `exporters` extra (onnx, onnxscript; torch for the benchmark's PyTorch baseline).
"""

from onnxport.extras import require

require("exporters", "Optimizing, quantizing and benchmarking")
