"""Per-architecture adapters: only what the generic path cannot derive.

The encoder architectures of the first release (bert, distilbert, roberta, xlm-roberta,
albert, electra, deberta-v2, mpnet, camembert, modernbert) need none: the generic path
derives their inputs, outputs and example values. Adapter modules added here are imported
below so their `@register_adapter` runs.
"""

from onnxport.exporters.adapters import (  # noqa: F401  (each registers itself)
    decision_transformer,
    longformer,
    moonshine,
    paligemma,
    vits,
    xmod,
)
from onnxport.exporters.adapters.base import (
    ADAPTERS,
    AdapterRegistry,
    ExportAdapter,
    register_adapter,
)

__all__ = ["ADAPTERS", "AdapterRegistry", "ExportAdapter", "register_adapter"]
