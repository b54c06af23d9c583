"""Export stage: checkpoint -> validated ONNX folder (needs the `exporters` extra).

load -> tasks -> spec (dummy inputs, modalities, seq2seq split, adapters) -> capture ->
postprocess (metadata, atomic staging) -> validate; `api.export` runs them in that order and
is what `onnxport.export` points to.
"""

from onnxport.extras import require

require("exporters", "Exporting")
