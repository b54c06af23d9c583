"""TFLite target: LiteRT conversion at static shapes, validated in its interpreter."""

from onnxport.tflite.convert import (
    QUANTIZE_MODES,
    TFLITE_CONFIG,
    TFLITE_FILE,
    TFLiteResult,
    check_available,
    export_tflite,
)

__all__ = [
    "QUANTIZE_MODES",
    "TFLITE_CONFIG",
    "TFLITE_FILE",
    "TFLiteResult",
    "check_available",
    "export_tflite",
]
